-- Request rows as day partitions (issue 28): `usage` becomes range-partitioned by
-- `started_at` (unix ms), one partition per UTC day named `usage_YYYYMMDD`, so retention
-- drops whole days (`drop table`: no DELETE, no bloat, no long lock) and a page of one
-- period reads only that period's partitions. The server creates partitions a week ahead
-- (`Store::ensure_usage_partitions`, at start and hourly, under an advisory lock so two
-- processes never race); `usage_default` catches a row no partition covers (it stays empty
-- in practice; retention deletes from it by rows).
--
-- A partitioned table's unique keys must hold the partition key: the primary key becomes
-- (id, started_at) and the generation id's uniqueness (generation_id, started_at); a
-- request's row has one start, so a generation id is still recorded once. Ids keep coming
-- from one sequence, continued from the old table's, so they stay unique and in write
-- order. SQLite has no partitions: its 0025 is empty.
--
-- Upgrading copies the rows in one transaction (writes wait for it: about a minute per
-- 10 million rows on the benchmark machine); take it at a quiet hour.
alter table usage rename to usage_unpartitioned;
alter index usage_pkey rename to usage_unpartitioned_pkey;
alter index usage_generation_id_key rename to usage_unpartitioned_generation_id_key;
alter index if exists usage_account_time rename to usage_unpartitioned_account_time;
alter index if exists usage_key_time rename to usage_unpartitioned_key_time;
alter index if exists usage_key_refusals rename to usage_unpartitioned_key_refusals;

create sequence usage_row_id as bigint;
select setval('usage_row_id', coalesce((select max(id) from usage_unpartitioned), 0) + 1, false);

create table usage (
    id                bigint  not null default nextval('usage_row_id'),
    generation_id     text    not null,
    account_id        bigint  not null,
    key_id            bigint  not null,
    key_name          text    not null,
    requested_model   text    not null,
    resolved_model    text,
    provider          text,
    region            text,
    prompt_tokens     bigint  not null default 0,
    completion_tokens bigint  not null default 0,
    total_tokens      bigint  not null default 0,
    cost              bigint  not null default 0,
    status            text    not null,
    http_status       bigint  not null,
    error_code        text,
    streamed          bigint  not null default 0,
    latency_ms        bigint  not null,
    started_at        bigint  not null,
    completed_at      bigint  not null,
    secret_last4      text
) partition by range (started_at);
alter sequence usage_row_id owned by usage.id;

create table usage_default partition of usage default;

-- A partition for every day that has rows, and for today and the week ahead.
do $$
declare
    today bigint := floor(extract(epoch from now()) / 86400)::bigint;
    d bigint;
begin
    for d in
        select distinct started_at / 86400000 from usage_unpartitioned where started_at >= 0
        union
        select generate_series(today, today + 7)
    loop
        execute format('create table %I partition of usage for values from (%s) to (%s)',
            'usage_' || to_char(to_timestamp(d * 86400) at time zone 'UTC', 'YYYYMMDD'),
            d * 86400000, (d + 1) * 86400000);
    end loop;
end $$;

insert into usage (id, generation_id, account_id, key_id, key_name, requested_model, resolved_model,
                   provider, region, prompt_tokens, completion_tokens, total_tokens, cost, status,
                   http_status, error_code, streamed, latency_ms, started_at, completed_at, secret_last4)
select id, generation_id, account_id, key_id, key_name, requested_model, resolved_model,
       provider, region, prompt_tokens, completion_tokens, total_tokens, cost, status,
       http_status, error_code, streamed, latency_ms, started_at, completed_at, secret_last4
from usage_unpartitioned;
drop table usage_unpartitioned;

alter table usage add constraint usage_pkey primary key (id, started_at);
alter table usage add constraint usage_generation_id_key unique (generation_id, started_at);
create index usage_account_time on usage(account_id, started_at, id);
create index usage_key_time on usage(account_id, key_id, started_at, id);
create index usage_key_refusals on usage(key_id, id) where status <> 'ok';
