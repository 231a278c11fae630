-- Workspaces people create (issue 18, second part). Kept column-for-column in step with
-- ../postgres.
--
-- A workspace is an `accounts` row (migration 0013). Until now every row was also a person:
-- the account someone signed up with, their personal workspace. A workspace created with
-- "New workspace" is a row that nobody signs in with. Decision: the row keeps the NOT NULL
-- unique `email` and `password_hash` columns (making `email` NULL-able is a table rebuild
-- on SQLite) and says what it is in `kind`:
--   'personal'  the account a person signed up with (every existing row);
--   'team'      created by a person (`created_by`); its email is a reserved, undeliverable
--               `workspace-<random>@workspace.invalid` (RFC 2606: .invalid never resolves),
--               its password hash '!' is no PHC string, so no password verifies against it,
--               and the login reads only 'personal' rows: nobody can ever sign in as it.
-- A team workspace starts with zero credits (never the sign-up grant) and a person may own
-- at most a bounded number of live ones they created (`domain::team::CREATE_LIMIT`).
alter table accounts add column kind text not null default 'personal' check (kind in ('personal', 'team'));
alter table accounts add column created_by bigint references accounts(id);
-- Deleting a team workspace is a soft delete: its keys, management keys and invitations are
-- revoked, its memberships removed and this set, in one transaction with its audit event;
-- usage history stays for the record. The gateway's key read and the management API's key
-- read join a live account only, so a deleted workspace's tokens fail at once. A personal
-- workspace is never deleted.
alter table accounts add column deleted_at bigint;
create index accounts_created_by on accounts(created_by);
