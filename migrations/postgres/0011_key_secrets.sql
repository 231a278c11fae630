-- Key lifecycle (issue 15): a key's secrets. Every secret a key ever had is a row here: the
-- current one (`rolled_at` null) and, during a rotation, the previous one, which works until
-- it is retired. The gateway reads the secret by `token_hash` (unique index) joined with its
-- key and account: one indexed read per request finds the secret, its retirement state and
-- its quarantine, with no cache (see store::key_secrets).
--
-- api_keys keeps token_hash/token_prefix/token_last4 of the *current* secret, updated by a
-- roll in the same transaction: the pages show them, and a previous version still serving
-- during a rolling upgrade keeps authenticating current secrets through them.
--
-- Retirement of a previous secret: `retired_at` once retired (now, by a later roll, or first
-- seen retired by a request); else at `retires_at` (the deadline, or the chosen time); else,
-- with `quiet_ms`, once now - max(rolled_at, last_used_at) >= quiet_ms, evaluated by each
-- request, so no background job is needed.
-- `last_used_at` is advanced by the usage batch (no write per request).
-- A quarantined secret (reported as leaked) refuses requests; `quarantine_url` is where it
-- was found (sanitised: http(s), no control characters, at most 2 KiB).
create table key_secrets (
    id             bigint generated always as identity primary key,
    key_id         bigint  not null references api_keys(id),
    token_hash     text    not null unique,
    token_prefix   text    not null,
    token_last4    text    not null,
    created_at     bigint  not null,
    rolled_at      bigint,
    retires_at     bigint,
    quiet_ms       bigint,
    retired_at     bigint,
    quarantined_at bigint,
    quarantine_url text,
    last_used_at   bigint,
    -- Where its last request came from, coarsened: network (/24, /48) and user agent
    -- product token (domain::client_hint); written with last_used_at by the usage batch.
    last_client    text
);
create index key_secrets_key on key_secrets(key_id);

insert into key_secrets (key_id, token_hash, token_prefix, token_last4, created_at, last_used_at)
    select id, token_hash, token_prefix, token_last4, created_at, last_used_at from api_keys;

-- Which secret served a usage row (its last four characters); null for rows from before.
alter table usage add column secret_last4 text;

-- Usage by key id (links from the Keys pages follow the key, not its current name).
create index usage_account_keyid on usage(account_id, key_id, id);
