-- Kept in step with PostgreSQL's 0020 (see there): a partial index of refused rows, for a
-- key's last refusal.
create index if not exists usage_key_refusals on usage(key_id, id) where status <> 'ok';
