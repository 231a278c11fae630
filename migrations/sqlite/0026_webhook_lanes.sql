-- Webhook fairness (security issue, items 2 and 6). Kept column-for-column in step with
-- ../postgres.
--
-- Each endpoint is a lane of its own (`alerts::outbox`): a worker leases the endpoint
-- (`claimed_until`, a conditional update, so two processes never both hold it; a lease
-- that dies with its process ends by itself) and delivers at most two of its rows under
-- the lease, so a slow or flooded receiver holds two deliveries, never the whole worker.
-- `failures` counts consecutive failed attempts; from the fifth on the endpoint is paused
-- until `paused_until` (the circuit breaker: its rows are not claimed meanwhile, and the
-- next one tried is a probe). Both live in the database, so they hold across processes.
alter table webhook_endpoints add column claimed_until bigint;
alter table webhook_endpoints add column failures bigint not null default 0 check (failures >= 0);
alter table webhook_endpoints add column paused_until bigint;

-- An endpoint's earliest pending row (which endpoints are due, and in what order) and its
-- next rows to claim: one probe of a small index of pending rows only.
create index webhook_deliveries_pending on webhook_deliveries(endpoint_id, next_attempt_at) where state = 'pending';

-- Rows still pending for endpoints already deleted (a deleted workspace's endpoints, before
-- its deletion dropped them; or a delivery in flight when its endpoint was deleted): dropped.
update webhook_deliveries set state = 'failed', last_error = 'endpoint deleted'
where state = 'pending'
  and endpoint_id in (select id from webhook_endpoints where deleted_at is not null);
