-- no-transaction
-- Pages of raw rows walk newest first by (started_at, id), with the cursor a row value
-- (issue 28): a date range is a range of this index, whatever the table's size, and the
-- walk matches the day partitions' order. Built concurrently: on a large usage table a
-- plain build would block the gateway's writes for its whole duration.
create index concurrently if not exists usage_account_time on usage(account_id, started_at, id);
