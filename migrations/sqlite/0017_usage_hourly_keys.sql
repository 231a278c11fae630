-- Spend per key per UTC hour, for the alerts' spike check (issue 19): the last hour against
-- the median hour of the 14 days before, read from at most ~340 rows instead of every usage
-- row of those 14 days. Written by the alert evaluator from the batches it is fed (off the
-- request path; each process adds its own share, so the sums cover every process).
-- Kept in step with the other backend's migration of the same number.
create table usage_hourly_keys (
    account_id  bigint  not null,
    key_id      bigint  not null,
    hour        bigint  not null,
    cost        bigint  not null default 0,
    primary key (key_id, hour)
);
-- The history so far, from the usage rows (instants are unix ms; an hour is ms / 3600000).
insert into usage_hourly_keys (account_id, key_id, hour, cost)
    select account_id, key_id, started_at / 3600000, sum(cost) from usage
    group by account_id, key_id, started_at / 3600000;
