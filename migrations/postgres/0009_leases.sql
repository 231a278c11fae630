-- Budget leases (PostgreSQL; see src/store/lease_book.rs). A gateway process takes a slice
-- of a key's and its account's headroom in one transaction: the slice is added to the key's
-- day/month counters and to the account's `reserved`, exactly like a reservation, and
-- recorded here. The process then serves holds from the slice in memory. `amount` is the part
-- of the slice not yet charged: each usage batch lowers it by what it charged, a return
-- lowers it by what it gives back. A dead process's leases are released by the liveness sweep
-- (its `instance_id` lock is free), like its reservations; they are never released by age.
create table leases (
    id          bigint generated always as identity primary key,
    instance_id bigint  not null,
    account_id  bigint  not null,
    key_id      bigint  not null,
    day         bigint  not null,
    month       bigint  not null,
    amount      bigint  not null,
    created_at  bigint  not null
);
create index leases_instance on leases(instance_id);
