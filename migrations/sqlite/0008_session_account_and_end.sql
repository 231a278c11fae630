-- Sessions learn whose they are and when they must end (issue 12, item 9).
-- account_id: the signed-in account (null for an anonymous session), so "Log out other
-- sessions" can delete an account's other rows. Written from the session state on each save.
-- ends_at: the absolute end (unix ms), login + session_max_age, however active the session
-- is; expires_at stays the sliding idle expiry. A session is live while both are ahead.
alter table sessions add column account_id bigint;
alter table sessions add column ends_at bigint not null default 0;
-- Sessions from before: their owner from their state (values are JSON text: "42"), and a
-- full lifetime of the default 7 days from now.
update sessions set
    account_id = cast(json_extract(state, '$.account_id') as integer),
    ends_at = cast(strftime('%s', 'now') as integer) * 1000 + 7 * 86400000;
create index sessions_account on sessions(account_id);
