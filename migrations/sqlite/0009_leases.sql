-- Budget leases: PostgreSQL only (src/store/lease_book.rs); SQLite keeps holds in the
-- process's hold book. The table is here so both schemas stay column-for-column in step.
create table leases (
    id          integer primary key,
    instance_id bigint  not null,
    account_id  bigint  not null,
    key_id      bigint  not null,
    day         bigint  not null,
    month       bigint  not null,
    amount      bigint  not null,
    created_at  bigint  not null
);
create index leases_instance on leases(instance_id);
