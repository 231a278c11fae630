//! PostgreSQL's shared per-key rate limits (`key_rate_minutes`, `key_in_flight`): counted
//! in the database so that several processes together keep a key's limit, not each its own.
//! SQLite (one process) keeps the same limits in memory (`gateway::rate_limit`).
//! They run on the `counters` pool, whose commits do not wait for the WAL flush
//! (`synchronous_commit = off`): a database crash can lose the last fraction of a second of
//! counts (a minute's count restarts lower; a lost in-flight decrement holds a slot until its
//! process ends), never money, which stays on the durable pool.

use super::{PgStore, Result};

impl PgStore {
    /// Counts a request in the key's current minute if fewer than `limit` were admitted:
    /// the count after it, or None (refused). One statement, atomic across processes.
    pub async fn count_request(&self, key_id: i64, minute: i64, limit: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "insert into key_rate_minutes (key_id, minute, requests) values ($1, $2, 1) \
             on conflict (key_id, minute) do update set requests = key_rate_minutes.requests + 1 \
             where key_rate_minutes.requests < $3 returning requests",
        )
        .bind(key_id)
        .bind(minute)
        .bind(limit)
        .fetch_optional(&self.counters)
        .await?)
    }

    /// Takes one of the key's `limit` in-flight slots, if one is free across every process
    /// (the key's transaction-scoped advisory lock orders concurrent takers).
    pub async fn take_slot(&self, key_id: i64, limit: i64) -> Result<bool> {
        let mut tx = self.counters.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        let busy: i64 = sqlx::query_scalar(
            "select cast(coalesce(sum(in_flight), 0) as bigint) from key_in_flight where key_id = $1",
        )
        .bind(key_id)
        .fetch_one(&mut *tx)
        .await?;
        if busy >= limit {
            return Ok(false);
        }
        sqlx::query(
            "insert into key_in_flight (key_id, instance_id, in_flight) values ($1, $2, 1) \
             on conflict (key_id, instance_id) do update set in_flight = key_in_flight.in_flight + 1",
        )
        .bind(key_id)
        .bind(self.instance)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn give_slot(&self, key_id: i64) -> Result<()> {
        sqlx::query(
            "update key_in_flight set in_flight = in_flight - 1 \
             where key_id = $1 and instance_id = $2 and in_flight > 0",
        )
        .bind(key_id)
        .bind(self.instance)
        .execute(&self.counters)
        .await?;
        Ok(())
    }

    /// A dead process's requests are no longer in flight (`sweep_dead_instances`).
    pub(super) async fn drop_in_flight_of(&self, instance: i64) -> Result<()> {
        sqlx::query("delete from key_in_flight where instance_id = $1")
            .bind(instance)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Minutes before `minute` are over (run by the sweeper).
    pub async fn sweep_rate_minutes(&self, minute: i64) -> Result<u64> {
        Ok(
            sqlx::query("delete from key_rate_minutes where minute < $1")
                .bind(minute)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
