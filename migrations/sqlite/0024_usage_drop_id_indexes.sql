-- Kept in step with PostgreSQL's 0024 (see there).
drop index if exists usage_account_id;
drop index if exists usage_account_key_id;
drop index if exists usage_account_keyid;
drop index if exists usage_account_started;
