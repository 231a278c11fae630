-- Kept in step with PostgreSQL's 0022 (see there): pages of raw rows walk newest first by
-- (started_at, id), so a date range is a range of this index.
create index if not exists usage_account_time on usage(account_id, started_at, id);
