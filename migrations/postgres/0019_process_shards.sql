-- Several gateway processes on one database (issue 11): a usage batch touches no row that
-- another process's batch also touches, so batches of different processes never queue on
-- each other's row locks (held until each commit's WAL flush).
--
-- 1. A leased hold's charge is settled against the lease row only: `charged` counts what
--    the process's batches charged against the slice and the account row has not been told
--    yet. The account's `balance` and `reserved` both still include it, so `balance -
--    reserved` (what can be leased or reserved) is exact at every moment; what a reader
--    shows is `balance - sum(charged)` and `reserved - sum(charged)` over the account's
--    leases (store::accounts::NET_BALANCE). The charges are folded into the account row
--    whenever a transaction holds it anyway: a lease top-up, a give-back, the release of a
--    dead process's leases (store::lease_book).
alter table leases add column charged bigint not null default 0;
create index leases_account on leases(account_id);

-- 2. The daily rollups gain a `shard`: each process adds to rows of its own shard (a small
--    number it holds an advisory lock on while it runs), so two processes never update the
--    same rollup row. Every reader already sums over rows.
alter table usage_daily add column shard bigint not null default 0;
alter table usage_daily drop constraint usage_daily_pk;
alter table usage_daily add constraint usage_daily_pk
    primary key (account_id, day, key_id, key_name, model, provider, region, status, shard);
alter table usage_daily_keys add column shard bigint not null default 0;
alter table usage_daily_keys drop constraint usage_daily_keys_pk;
alter table usage_daily_keys add constraint usage_daily_keys_pk
    primary key (account_id, day, key_name, shard);
