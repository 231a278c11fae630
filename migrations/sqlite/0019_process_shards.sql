-- Kept column-for-column in step with PostgreSQL's 0019 (see there). SQLite serves one
-- process: its leases table stays empty and its rollups use shard 0 only. SQLite cannot
-- change a primary key, so the rollups are rebuilt with the shard in theirs.
alter table leases add column charged bigint not null default 0;
create index leases_account on leases(account_id);

create table usage_daily_v3 (
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
    shard             bigint not null default 0,
    primary key (account_id, day, key_id, key_name, model, provider, region, status, shard)
) without rowid;
insert into usage_daily_v3 (account_id, day, key_id, key_name, model, provider, region, status,
                            requests, errors, prompt_tokens, completion_tokens, cost, shard)
select account_id, day, key_id, key_name, model, provider, region, status,
       requests, errors, prompt_tokens, completion_tokens, cost, 0
from usage_daily;
drop table usage_daily;
alter table usage_daily_v3 rename to usage_daily;
create index usage_daily_key_name on usage_daily(account_id, key_name, day);

create table usage_daily_keys_v2 (
    account_id        bigint not null,
    day               bigint not null,
    key_name          text   not null,
    requests          bigint not null default 0,
    errors            bigint not null default 0,
    prompt_tokens     bigint not null default 0,
    completion_tokens bigint not null default 0,
    cost              bigint not null default 0,
    shard             bigint not null default 0,
    primary key (account_id, day, key_name, shard)
) without rowid;
insert into usage_daily_keys_v2 (account_id, day, key_name, requests, errors, prompt_tokens,
                                 completion_tokens, cost, shard)
select account_id, day, key_name, requests, errors, prompt_tokens, completion_tokens, cost, 0
from usage_daily_keys;
drop table usage_daily_keys;
alter table usage_daily_keys_v2 rename to usage_daily_keys;
create index usage_daily_keys_name on usage_daily_keys(account_id, key_name, day);
