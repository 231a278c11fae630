//! Readiness: the database answers, and its schema is the one this binary expects.

use super::{on_read, Engine, Result, Store};

impl Store {
    /// Whether every migration this binary carries is applied (one trivial read, which also
    /// shows the database answers).
    pub async fn migrations_applied(&self) -> Result<bool> {
        let expected = match &self.engine {
            Engine::Sqlite { .. } => sqlx::migrate!("./migrations/sqlite")
                .iter()
                .map(|m| m.version)
                .max(),
            Engine::Postgres { .. } => sqlx::migrate!("./migrations/postgres")
                .iter()
                .map(|m| m.version)
                .max(),
        };
        let applied = on_read!(self, pool => {
            sqlx::query_scalar::<_, Option<i64>>(
                "select max(version) from _sqlx_migrations where success",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(applied >= expected)
    }
}
