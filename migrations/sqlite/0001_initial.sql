-- LowRouter Keys schema (SQLite). Kept column-for-column in step with ../postgres.
-- Conventions: money is integer micro-credits (1 credit = 1,000,000); instants are unix
-- milliseconds UTC; booleans are avoided in favour of small state strings.

create table accounts (
    id            integer primary key,
    email         text    not null unique,
    password_hash text    not null,
    -- Settled balance. `reserved` is held by requests in flight; what can be spent is
    -- balance - reserved, and neither may go below zero.
    balance       bigint  not null default 0 check (balance >= 0),
    reserved      bigint  not null default 0 check (reserved >= 0),
    created_at    bigint  not null
);

create table api_keys (
    id            integer primary key,
    account_id    bigint  not null references accounts(id),
    name          text    not null,
    -- SHA-256 (hex) of the token; the token itself is never stored.
    token_hash    text    not null unique,
    token_prefix  text    not null,
    token_last4   text    not null,
    -- Comma-separated model IDs; empty means every model.
    models        text    not null default '',
    region        text,
    daily_limit   bigint,
    monthly_limit bigint,
    expires_at    bigint,
    -- 'active' | 'disabled' | 'revoked' (final). Expiry is derived from expires_at.
    status        text    not null default 'active' check (status in ('active', 'disabled', 'revoked')),
    created_at    bigint  not null,
    revoked_at    bigint,
    last_used_at  bigint,
    -- Spend counters for limits, including amounts reserved by requests in flight.
    -- spend_day is the UTC day number, spend_month the month number the counters belong to;
    -- a counter from an older bucket counts as zero.
    spend_day     bigint  not null default 0,
    day_spend     bigint  not null default 0,
    spend_month   bigint  not null default 0,
    month_spend   bigint  not null default 0
);
-- A name is unique among an account's keys that are not revoked.
create unique index api_keys_live_name on api_keys(account_id, name) where status <> 'revoked';
create index api_keys_account on api_keys(account_id, created_at);

-- Worst-case costs held by requests in flight. A row outliving its request (crash) is
-- released by the sweeper; see store::ledger.
create table reservations (
    id          text    primary key,
    account_id  bigint  not null,
    key_id      bigint  not null,
    amount      bigint  not null,
    day         bigint  not null,
    month       bigint  not null,
    created_at  bigint  not null
);
create index reservations_created on reservations(created_at);

-- One row per authenticated gateway request. Never prompt or response content.
create table usage (
    id                integer primary key,
    generation_id     text    not null unique,
    account_id        bigint  not null,
    key_id            bigint  not null,
    -- The key's name when the request ran: history outlives the key.
    key_name          text    not null,
    requested_model   text    not null,
    resolved_model    text,
    provider          text,
    region            text,
    prompt_tokens     bigint  not null default 0,
    completion_tokens bigint  not null default 0,
    total_tokens      bigint  not null default 0,
    cost              bigint  not null default 0,
    -- 'ok' | 'client_error' | 'upstream_error'
    status            text    not null,
    http_status       bigint  not null,
    error_code        text,
    streamed          bigint  not null default 0,
    latency_ms        bigint  not null,
    started_at        bigint  not null,
    completed_at      bigint  not null
);
-- Newest-first pages (keyset on id), per key name, and date ranges.
create index usage_account_id on usage(account_id, id);
create index usage_account_key on usage(account_id, key_name, id);
create index usage_account_started on usage(account_id, started_at);

-- Per-day rollup maintained with every usage batch: totals and the chart read this, not
-- the raw rows.
create table usage_daily (
    account_id        bigint not null,
    day               bigint not null,
    key_id            bigint not null,
    key_name          text   not null,
    model             text   not null,
    requests          bigint not null default 0,
    errors            bigint not null default 0,
    prompt_tokens     bigint not null default 0,
    completion_tokens bigint not null default 0,
    cost              bigint not null default 0,
    primary key (account_id, day, key_id, model)
);

-- Server-side sessions: the cookie holds only a random id; we store its SHA-256.
create table sessions (
    id_hash    text   primary key,
    state      text   not null,
    expires_at bigint not null
);
create index sessions_expires on sessions(expires_at);

-- Generated secrets shared by every process on this database (the session signing key).
create table app_secrets (
    name  text primary key,
    value text not null
);
