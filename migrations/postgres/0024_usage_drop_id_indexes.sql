-- The indexes by id and by key name that 0022 and 0023 replace: every index costs each
-- usage insert, on the gateway's write path. Dropping one is a catalog change (a brief lock).
drop index if exists usage_account_id;
drop index if exists usage_account_key_id;
drop index if exists usage_account_keyid;
drop index if exists usage_account_started;
