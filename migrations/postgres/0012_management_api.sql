-- The management API (issue 16). Kept column-for-column in step with ../sqlite.

-- Management keys (`lr-mk-…`): same token format and storage as API keys (SHA-256 of the
-- token, display prefix and last four; never the token). They belong to the account (the
-- workspace, once workspaces exist) and carry who made them: `created_by` is the account
-- that created it on the dashboard, NULL when made by the CLI (`created_via` says which).
-- `read_only`: 0 or 1 (list and get only). Revoking is final (`revoked_at`).
create table management_keys (
    id            bigint generated always as identity primary key,
    public_id     text    not null unique,
    account_id    bigint  not null references accounts(id),
    created_by    bigint  references accounts(id),
    created_via   text    not null check (created_via in ('dashboard', 'cli')),
    name          text    not null,
    token_hash    text    not null unique,
    token_prefix  text    not null,
    token_last4   text    not null,
    read_only     bigint  not null default 0 check (read_only in (0, 1)),
    expires_at    bigint,
    created_at    bigint  not null,
    revoked_at    bigint,
    last_used_at  bigint
);
create index management_keys_account on management_keys(account_id, created_at);

-- Keys' public ids (`key_` + 24 base62 characters): what the API names a key by, never the
-- sequence. New keys get one at insert; existing ones here (a UUID's hex is fine: the id is opaque),
-- and rows inserted meanwhile by a previous version at every start
-- (`Store::backfill_public_ids`), hence nullable. NULLs are distinct in a unique index.
alter table api_keys add column public_id text;
update api_keys set public_id = 'key_' || replace(cast(gen_random_uuid() as text), '-', '') where public_id is null;
create unique index api_keys_public_id on api_keys(public_id);

-- Per-key rate limits: requests per minute and requests in flight; NULL is no limit.
alter table api_keys add column rpm_limit bigint;
alter table api_keys add column concurrency_limit bigint;

-- `Idempotency-Key` on POST /api/v1/keys: one row per (account, key) for 24 hours. The
-- row commits in the create's transaction, so a retry finds either nothing (the create
-- never happened) or the key it made (`key_id`), never a second key. `request_hash` is
-- SHA-256 of the body: the same idempotency key with another body is refused.
create table idempotency_keys (
    account_id      bigint  not null references accounts(id),
    idempotency_key text    not null,
    request_hash    text    not null,
    key_id          bigint  not null references api_keys(id),
    created_at      bigint  not null,
    primary key (account_id, idempotency_key)
);
create index idempotency_keys_created on idempotency_keys(created_at);

-- Per-key rate limits shared by every process (PostgreSQL; SQLite's one process keeps them
-- in memory, the tables are here so both schemas stay in step). `key_rate_minutes`: requests
-- admitted per key per UTC minute (unix minute number), counted by one conditional upsert
-- that admits while `requests < rpm_limit`; old minutes are swept. `key_in_flight`: requests
-- in flight per key per process (the process's instance id, as on leases), so a dead
-- process's count is dropped with its other holds; admitting takes the key's advisory lock,
-- sums the rows and adds one while the sum is below `concurrency_limit`.
create table key_rate_minutes (
    key_id    bigint not null,
    minute    bigint not null,
    requests  bigint not null,
    primary key (key_id, minute)
);
create table key_in_flight (
    key_id       bigint not null,
    instance_id  bigint not null,
    in_flight    bigint not null check (in_flight >= 0),
    primary key (key_id, instance_id)
);
