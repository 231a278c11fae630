-- Alerts (issue 19). Kept column-for-column in step with ../sqlite.
-- Everything is keyed by `account_id`: the workspace (issue: teams) keeps that id.

-- A workspace's alert settings; no row means the defaults below.
-- spike: a key's spend in the last hour above `spike_floor` (micro-credits) and above
-- `spike_factor` x its median hour of the past 14 days. `balance_below`: alert when the
-- balance falls below it (NULL: never). `email_digest`: 0 or 1.
create table alert_settings (
    account_id     bigint  primary key references accounts(id),
    spike_floor    bigint  not null default 1000000 check (spike_floor >= 0),
    spike_factor   bigint  not null default 10 check (spike_factor >= 1),
    balance_below  bigint  check (balance_below >= 0),
    email_digest   bigint  not null default 0 check (email_digest in (0, 1)),
    last_digest_at bigint
);

-- Per key: disable the key when a spend spike is found (0 or 1).
alter table api_keys add column auto_disable_on_spike bigint not null default 0 check (auto_disable_on_spike in (0, 1));

-- What happened. `dedupe` makes each event happen once: an insert that finds its
-- (account, dedupe) is a no-op (`limit:<key>:day:<day>:80`, `spike:<key>:<hour>`, …), so
-- several processes evaluating the same batch, or a batch evaluated twice, alert once.
-- `public_id` (`evt_…`) is the event id receivers dedupe by. `payload`: the JSON body delivered (fixed at creation: retries send the same bytes).
create table alert_events (
    id          bigint generated always as identity primary key,
    public_id   text    not null unique,
    account_id  bigint  not null references accounts(id),
    key_id      bigint,
    kind        text    not null,
    dedupe      text    not null,
    payload     text    not null,
    created_at  bigint  not null,
    read_at     bigint,
    emailed_at  bigint,
    unique (account_id, dedupe)
);
create index alert_events_account on alert_events(account_id, id);

-- Webhook endpoints. `secret` signs payloads (HMAC-SHA256): it must be kept to sign, so it
-- is stored as is, shown once at creation. `events`: comma-separated kinds.
create table webhook_endpoints (
    id          bigint generated always as identity primary key,
    account_id  bigint  not null references accounts(id),
    url         text    not null,
    secret      text    not null,
    events      text    not null,
    created_at  bigint  not null,
    deleted_at  bigint
);
create index webhook_endpoints_account on webhook_endpoints(account_id, id);

-- The outbox: one row per (event, endpoint), written with the event. A worker claims due
-- rows (`next_attempt_at` moved forward: a claim that dies with its process is retried
-- after the claim's time), delivers, and records the attempt. At-least-once.
create table webhook_deliveries (
    id              bigint generated always as identity primary key,
    endpoint_id     bigint  not null references webhook_endpoints(id),
    event_id        bigint  not null references alert_events(id),
    account_id      bigint  not null,
    state           text    not null default 'pending' check (state in ('pending', 'delivered', 'failed')),
    attempts        bigint  not null default 0,
    next_attempt_at bigint  not null,
    created_at      bigint  not null,
    last_attempt_at bigint,
    last_status     bigint,
    last_latency_ms bigint,
    last_error      text,
    unique (endpoint_id, event_id)
);
create index webhook_deliveries_due on webhook_deliveries(state, next_attempt_at);
create index webhook_deliveries_endpoint on webhook_deliveries(endpoint_id, id);

-- The client networks each key was used from (`domain::client_hint`'s network): a network
-- not in here is new. A key's first network is its baseline, not an alert.
create table key_networks (
    key_id        bigint not null,
    network       text   not null,
    first_seen_at bigint not null,
    primary key (key_id, network)
);
