-- no-transaction
-- One key's rows by time (a key-name filter resolves to key ids first, from the rollup).
create index concurrently if not exists usage_key_time on usage(account_id, key_id, started_at, id);
