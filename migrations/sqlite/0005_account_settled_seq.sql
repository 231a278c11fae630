-- The number of the last usage batch that settled a charge of this account, written by that
-- batch (which updates this row anyway). The gateway reads it with the key row, so the
-- in-memory hold book (SQLite, src/gateway/holds.rs) knows which settled charges its read
-- includes. It replaces the global `ledger_seq` row, which every batch had to write: one more
-- page per commit on SQLite, one row every batch of every process locked on PostgreSQL.
alter table accounts add column settled_seq bigint not null default 0;
-- `ledger_seq` is no longer written, but stays until a later migration: processes of the
-- previous version, still running during a rolling upgrade on PostgreSQL, write it.
