-- Which process holds a reservation (PostgreSQL). Each process keeps a session advisory lock
-- on its instance id; when the lock can be taken, the process is gone and its holds are
-- released at once (see src/store/ledger.rs). Unused on SQLite (0).
alter table reservations add column instance_id bigint not null default 0;
