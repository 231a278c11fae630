-- Usage at scale (issue 28): every total, chart and ranking is answered by a rollup whose
-- size follows the answer (days × what is grouped), never by raw rows, so that raw rows can
-- be removed after `usage_retention_days` without changing any figure anywhere.
-- Kept column-for-column in step with SQLite's 0021 (SQLite rebuilds tables; so does this, for one text).
--
-- 1. `usage_daily` gains the reason (`error_code`, '' for none) in its key, so the reason
--    filter is answered by rollups too. Rebuilt from the raw rows: one pass, at upgrade. This
--    is the last migration that may read raw rows for history: from here on they may have
--    been removed by retention, and the rollups are the record.
create table usage_daily_v4 (
    account_id        bigint not null,
    day               bigint not null,
    key_id            bigint not null,
    key_name          text   not null,
    model             text   not null,
    provider          text   not null default '',
    region            text   not null default '',
    status            text   not null default 'ok',
    error_code        text   not null default '',
    requests          bigint not null default 0,
    errors            bigint not null default 0,
    prompt_tokens     bigint not null default 0,
    completion_tokens bigint not null default 0,
    cost              bigint not null default 0,
    shard             bigint not null default 0,
    primary key (account_id, day, key_id, key_name, model, provider, region, status, error_code, shard)
);
insert into usage_daily_v4 (account_id, day, key_id, key_name, model, provider, region, status, error_code,
                            requests, errors, prompt_tokens, completion_tokens, cost, shard)
select account_id, started_at / 86400000, key_id, key_name, coalesce(resolved_model, ''),
       coalesce(provider, ''), coalesce(region, ''), status, coalesce(error_code, ''),
       count(*), sum(case when status <> 'ok' then 1 else 0 end),
       sum(prompt_tokens), sum(completion_tokens), sum(cost), 0
from usage
group by account_id, started_at / 86400000, key_id, key_name, coalesce(resolved_model, ''),
         coalesce(provider, ''), coalesce(region, ''), status, coalesce(error_code, '');
drop table usage_daily;
alter table usage_daily_v4 rename to usage_daily;
create index usage_daily_key_name on usage_daily(account_id, key_name, day);
create index usage_daily_key_id on usage_daily(account_id, key_id, day);

-- 2. `usage_daily_keys` (one row per key and day) gains the key's id: a key's own figures
--    (its page, `/key`, the Usage page filtered by key) read its few rows by id.
create table usage_daily_keys_v3 (
    account_id        bigint not null,
    day               bigint not null,
    key_id            bigint not null,
    key_name          text   not null,
    requests          bigint not null default 0,
    errors            bigint not null default 0,
    prompt_tokens     bigint not null default 0,
    completion_tokens bigint not null default 0,
    cost              bigint not null default 0,
    shard             bigint not null default 0,
    primary key (account_id, day, key_id, key_name, shard)
);
insert into usage_daily_keys_v3 (account_id, day, key_id, key_name, requests, errors, prompt_tokens,
                                 completion_tokens, cost, shard)
select account_id, day, key_id, key_name, sum(requests), sum(errors), sum(prompt_tokens),
       sum(completion_tokens), sum(cost), shard
from usage_daily
group by account_id, day, key_id, key_name, shard;
drop table usage_daily_keys;
alter table usage_daily_keys_v3 rename to usage_daily_keys;
create index usage_daily_keys_name on usage_daily_keys(account_id, key_name, day);
create index usage_daily_keys_id on usage_daily_keys(account_id, key_id, day);

-- 3. `usage_daily_workspace`: the workspace's day by every dimension but the key. The
--    views that filter by no key (the unfiltered page, a status, a model, Home, the
--    balance page's spend) read about a hundred rows a day, whatever the number of keys.
create table usage_daily_workspace (
    account_id        bigint not null,
    day               bigint not null,
    model             text   not null,
    provider          text   not null default '',
    region            text   not null default '',
    status            text   not null default 'ok',
    error_code        text   not null default '',
    requests          bigint not null default 0,
    errors            bigint not null default 0,
    prompt_tokens     bigint not null default 0,
    completion_tokens bigint not null default 0,
    cost              bigint not null default 0,
    shard             bigint not null default 0,
    primary key (account_id, day, model, provider, region, status, error_code, shard)
);
insert into usage_daily_workspace (account_id, day, model, provider, region, status, error_code,
                                   requests, errors, prompt_tokens, completion_tokens, cost, shard)
select account_id, day, model, provider, region, status, error_code, sum(requests), sum(errors),
       sum(prompt_tokens), sum(completion_tokens), sum(cost), shard
from usage_daily
group by account_id, day, model, provider, region, status, error_code, shard;
