//! The outbox worker's SQL (`alerts::outbox`): which endpoints have due rows, an
//! endpoint's lease (its lane), the rows claimed under it, each attempt recorded with the
//! endpoint's health (the circuit breaker), and the rows given up after their 24 hours.
//!
//! Every step that hands work to one process is a conditional update of one row, the same
//! SQL on both backends: a lease is taken only where none is live, a row only while it is
//! still pending and due. So two processes never hold one endpoint's lane, and never send
//! the same attempt; a process that dies leaves its lease and rows due again at the lease's
//! end.

use sqlx::FromRow;

use crate::store::{on_read, on_write, Result, Store};

/// A delivery claimed under a [`Lease`], with what it needs to send it.
#[derive(Clone, FromRow)]
pub struct DueDelivery {
    pub id: i64,
    /// When it was due (its claim checks that this has not moved meanwhile).
    pub due_at: i64,
    pub attempts: i64,
    pub created_at: i64,
    pub url: String,
    pub secret: String,
    pub payload: String,
}

/// An endpoint's lane, held by one worker until `until` (or until released): the rows it
/// claims under it are its own until then too.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub endpoint_id: i64,
    pub until: i64,
    /// Failed attempts in a row when it was taken: from the breaker's threshold on, the
    /// lane claims one row (a probe).
    pub failures: i64,
}

/// What one attempt came to.
pub struct Attempt<'a> {
    pub delivered: bool,
    /// Given up: no more attempts.
    pub failed_for_good: bool,
    pub next_attempt_at: i64,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<&'a str>,
}

impl Store {
    /// Up to `limit` endpoints with a row due at `now` whose lane is free (no live lease)
    /// and that are not paused, of live workspaces, the longest waiting first: each
    /// endpoint once however many rows it has, so a flooded one takes one turn like any
    /// other. One pass over live endpoints, each a probe of the pending rows' index.
    pub async fn due_endpoints(&self, now: i64, limit: i64) -> Result<Vec<i64>> {
        Ok(on_read!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "select id from (select w.id, (select min(d.next_attempt_at) from webhook_deliveries d \
                 where d.endpoint_id = w.id and d.state = 'pending') as due_at \
                 from webhook_endpoints w join accounts a on a.id = w.account_id \
                 where w.deleted_at is null and a.deleted_at is null \
                 and (w.claimed_until is null or w.claimed_until <= $1) \
                 and (w.paused_until is null or w.paused_until <= $1)) as e \
                 where due_at <= $1 order by due_at, id limit $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Takes an endpoint's lane until `until`, unless another worker holds it, it is
    /// paused, or it was deleted meanwhile (None).
    pub async fn lease_endpoint(
        &self,
        endpoint: i64,
        now: i64,
        until: i64,
    ) -> Result<Option<Lease>> {
        let failures = on_write!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "update webhook_endpoints set claimed_until = $2 where id = $1 and deleted_at is null \
                 and (claimed_until is null or claimed_until <= $3) \
                 and (paused_until is null or paused_until <= $3) returning failures",
            )
            .bind(endpoint)
            .bind(until)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(failures.map(|failures| Lease {
            endpoint_id: endpoint,
            until,
            failures,
        }))
    }

    /// Claims up to `limit` of the leased endpoint's rows due at `now`, oldest first, until
    /// the lease's end: each by a conditional update (still pending and due), so a row is
    /// never sent twice at once whatever else runs.
    pub async fn claim_deliveries(
        &self,
        lease: &Lease,
        now: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>> {
        let due = on_read!(self, pool => {
            sqlx::query_as::<_, DueDelivery>(
                "select d.next_attempt_at as due_at, d.id, d.attempts, d.created_at, w.url, w.secret, e.payload \
                 from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id \
                 join alert_events e on e.id = d.event_id \
                 where d.endpoint_id = $1 and d.state = 'pending' and d.next_attempt_at <= $2 \
                 order by d.next_attempt_at, d.id limit $3",
            )
            .bind(lease.endpoint_id)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let mut claimed = Vec::with_capacity(due.len());
        for d in due {
            let took = on_write!(self, pool => {
                sqlx::query(
                    "update webhook_deliveries set next_attempt_at = $1 where id = $2 \
                     and state = 'pending' and next_attempt_at = $3",
                )
                .bind(lease.until)
                .bind(d.id)
                .bind(d.due_at)
                .execute(pool)
                .await?
                .rows_affected()
            });
            if took == 1 {
                claimed.push(d);
            }
        }
        Ok(claimed)
    }

    /// Ends a lease (if it is still this one: an expired lease may be another's now).
    pub async fn release_endpoint(&self, lease: &Lease) -> Result<()> {
        on_write!(self, pool => {
            sqlx::query("update webhook_endpoints set claimed_until = null where id = $1 and claimed_until = $2")
                .bind(lease.endpoint_id)
                .bind(lease.until)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records an attempt of row `id`, claimed under `lease`, with the endpoint's health,
    /// in one transaction. The row changes only while it is still pending and this lease's
    /// (a deleted endpoint's or workspace's dropped row stays dropped). A delivery resets
    /// the endpoint's failures in a row and ends any pause; a failure counts one more, and
    /// `pause(failures)` (the breaker's policy) says until when the endpoint waits, if at
    /// all. The failures in a row after this attempt.
    pub async fn record_attempt(
        &self,
        lease: &Lease,
        id: i64,
        a: &Attempt<'_>,
        pause: impl Fn(i64) -> Option<i64>,
    ) -> Result<i64> {
        let state = if a.delivered {
            "delivered"
        } else if a.failed_for_good {
            "failed"
        } else {
            "pending"
        };
        let now = crate::domain::time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "update webhook_deliveries set state = $1, attempts = attempts + 1, \
                 next_attempt_at = $2, last_attempt_at = $3, last_status = $4, \
                 last_latency_ms = $5, last_error = $6 \
                 where id = $7 and state = 'pending' and next_attempt_at = $8",
            )
            .bind(state)
            .bind(a.next_attempt_at)
            .bind(now)
            .bind(a.status)
            .bind(a.latency_ms)
            .bind(a.error)
            .bind(id)
            .bind(lease.until)
            .execute(&mut *tx)
            .await?;
            let failures = if a.delivered {
                sqlx::query("update webhook_endpoints set failures = 0, paused_until = null where id = $1")
                    .bind(lease.endpoint_id)
                    .execute(&mut *tx)
                    .await?;
                0
            } else {
                let failures = sqlx::query_scalar::<_, i64>(
                    "update webhook_endpoints set failures = failures + 1 where id = $1 returning failures",
                )
                .bind(lease.endpoint_id)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(0);
                if let Some(until) = pause(failures) {
                    sqlx::query("update webhook_endpoints set paused_until = $2 where id = $1")
                        .bind(lease.endpoint_id)
                        .bind(until)
                        .execute(&mut *tx)
                        .await?;
                }
                failures
            };
            tx.commit().await?;
            Ok(failures)
        })
    }

    /// Gives up pending rows made before `before` that no one holds at `now`: those of a
    /// paused endpoint, which no attempt gives up. The count.
    pub async fn give_up_deliveries(&self, before: i64, now: i64) -> Result<u64> {
        Ok(on_write!(self, pool => {
            sqlx::query(
                "update webhook_deliveries set state = 'failed', last_error = 'gave up after 24 hours' \
                 where state = 'pending' and next_attempt_at <= $2 and created_at < $1",
            )
            .bind(before)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }
}
