-- Teams (issue 18). Kept column-for-column in step with ../sqlite.
--
-- An `accounts` row already owns balance, keys, usage, rollups, leases and reservations, and
-- every money statement is keyed by its id: that row IS the workspace (so the money paths
-- are untouched). A person signs in as the account they signed up with (its email and
-- password; its id is the person's id, `user_id` below) and is a member, with a role, of
-- their own workspace and of any they were invited to.

-- The workspace's name, shown in the layout's switcher. Existing ones are named after
-- their owner's email.
alter table accounts add column name text not null default '';
update accounts set name = email;

-- Who belongs to which workspace, as what. Every existing account owns its own workspace.
create table workspace_members (
    account_id  bigint  not null references accounts(id),
    user_id     bigint  not null references accounts(id),
    role        text    not null check (role in ('owner', 'admin', 'developer', 'viewer')),
    created_at  bigint  not null,
    primary key (account_id, user_id)
);
create index workspace_members_user on workspace_members(user_id);
insert into workspace_members (account_id, user_id, role, created_at)
    select id, id, 'owner', created_at from accounts;

-- Invitations: a one-time link (only its SHA-256 is stored, like every token), for one
-- email and role, expiring after 7 days, revocable; `accepted_by` once used.
create table invitations (
    id          bigint generated always as identity primary key,
    account_id  bigint  not null references accounts(id),
    email       text    not null,
    role        text    not null check (role in ('owner', 'admin', 'developer', 'viewer')),
    token_hash  text    not null unique,
    invited_by  bigint  not null references accounts(id),
    created_at  bigint  not null,
    expires_at  bigint  not null,
    accepted_at bigint,
    accepted_by bigint  references accounts(id),
    revoked_at  bigint
);
create index invitations_account on invitations(account_id, created_at);

-- The audit log: append-only (the trigger below refuses updates; rows go only by age, in
-- the retention job). Written in the transaction of the change it records. Never a token,
-- password or secret. `actor_kind`: 'user' (actor_id: the person's id), 'management_key'
-- (actor_id: management_keys.id), 'cli', 'system'; `actor_label` is the email or key name at
-- that time (history outlives people and keys). `details`: JSON text (a key edit's
-- field-level diff, a role, an amount).
create table audit_events (
    id           bigint generated always as identity primary key,
    account_id   bigint  not null,
    at           bigint  not null,
    actor_kind   text    not null check (actor_kind in ('user', 'management_key', 'cli', 'system')),
    actor_id     bigint,
    actor_label  text    not null,
    action       text    not null,
    target_kind  text,
    target_id    bigint,
    target_label text,
    details      text    not null default '{}',
    client_addr  text,
    user_agent   text
);
create index audit_events_account on audit_events(account_id, id);
create index audit_events_target on audit_events(account_id, target_kind, target_id, id);
create index audit_events_at on audit_events(at);
create function audit_events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_events is append-only';
end;
$$;
create trigger audit_events_append_only before update on audit_events
    for each row execute function audit_events_append_only();

-- Who made a key and who made each secret (a roll): the offboarding view lists what a
-- leaving member created or rolled. Existing keys were made by their account's one person.
alter table api_keys add column created_by bigint;
update api_keys set created_by = account_id;
alter table key_secrets add column created_by bigint;
update key_secrets set created_by = (select k.account_id from api_keys k where k.id = key_secrets.key_id);
