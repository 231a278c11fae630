-- Kept in step with PostgreSQL's 0023 (see there): one key's rows by time.
create index if not exists usage_key_time on usage(account_id, key_id, started_at, id);
