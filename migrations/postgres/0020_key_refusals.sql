-- no-transaction
-- A key's last refusal (the Keys pages and the API show it beside its last success): a
-- partial index of the refused rows only. Refusals are bounded per key (the gateway's
-- refusal budget), so the index stays small and a served request's insert never touches
-- it. Built concurrently: on a large usage table a plain build would block the gateway's
-- writes for its whole duration.
create index concurrently if not exists usage_key_refusals on usage(key_id, id) where status <> 'ok';
