-- Usage pages at scale (issue 4).
--
-- 1. The daily rollup gains every dimension the Usage filters offer (key name as recorded,
--    provider, region, status), so totals and the chart for any filter with whole UTC days
--    are sums over the rollup, never a scan of raw rows. The key name is part of the key
--    (not overwritten on conflict) so a renamed key's history sums exactly like the raw
--    rows it came from. NULL provider/region are stored as ''. WITHOUT ROWID: the table is
--    the primary-key b-tree, so a range of days is read in one sequential pass.
--    Rebuilt from the raw rows, which are the source of truth.
create table usage_daily_v2 (
    account_id        bigint not null,
    day               bigint not null,
    key_id            bigint not null,
    key_name          text   not null,
    model             text   not null,
    provider          text   not null default '',
    region            text   not null default '',
    status            text   not null default 'ok',
    requests          bigint not null default 0,
    errors            bigint not null default 0,
    prompt_tokens     bigint not null default 0,
    completion_tokens bigint not null default 0,
    cost              bigint not null default 0,
    primary key (account_id, day, key_id, key_name, model, provider, region, status)
) without rowid;

insert into usage_daily_v2 (account_id, day, key_id, key_name, model, provider, region, status,
                            requests, errors, prompt_tokens, completion_tokens, cost)
select account_id, started_at / 86400000, key_id, key_name, coalesce(resolved_model, requested_model),
       coalesce(provider, ''), coalesce(region, ''), status,
       count(*), sum(case when status <> 'ok' then 1 else 0 end),
       sum(prompt_tokens), sum(completion_tokens), sum(cost)
from usage
group by account_id, started_at / 86400000, key_id, key_name, coalesce(resolved_model, requested_model),
         coalesce(provider, ''), coalesce(region, ''), status;

drop table usage_daily;
alter table usage_daily_v2 rename to usage_daily;

-- One key's days (the "filtered by key name" view), and the distinct names for the filter.
create index usage_daily_key_name on usage_daily(account_id, key_name, day);

-- 2. A narrower rollup by day and key name only, for the views that filter by nothing
--    else (the unfiltered page, a key, a date range; the chart's bars; the home page): about
--    one row per key and day, so "all time" is a few thousand rows, not tens of thousands.
create table usage_daily_keys (
    account_id        bigint not null,
    day               bigint not null,
    key_name          text   not null,
    requests          bigint not null default 0,
    errors            bigint not null default 0,
    prompt_tokens     bigint not null default 0,
    completion_tokens bigint not null default 0,
    cost              bigint not null default 0,
    primary key (account_id, day, key_name)
) without rowid;

insert into usage_daily_keys (account_id, day, key_name, requests, errors, prompt_tokens, completion_tokens, cost)
select account_id, day, key_name, sum(requests), sum(errors), sum(prompt_tokens), sum(completion_tokens), sum(cost)
from usage_daily
group by account_id, day, key_name;

create index usage_daily_keys_name on usage_daily_keys(account_id, key_name, day);

-- 3. Raw rows: pages by key name carry started_at in the index, so a date range is checked
--    without visiting the table while walking newest-first by id.
drop index usage_account_key;
create index usage_account_key_id on usage(account_id, key_name, id, started_at);
