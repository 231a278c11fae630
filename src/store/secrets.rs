//! SQL for `app_secrets`: secrets generated once and shared by every process.

use super::{on_write, Result, Store};

impl Store {
    /// Returns the stored value for `name`, storing `candidate` first if there is none.
    /// Concurrent first starts agree on one value: the insert is a no-op if another won.
    pub async fn get_or_init_secret(&self, name: &str, candidate: &str) -> Result<(String, bool)> {
        let inserted = on_write!(self, pool => {
            sqlx::query("insert into app_secrets (name, value) values ($1, $2) on conflict (name) do nothing")
                .bind(name)
                .bind(candidate)
                .execute(pool)
                .await?
                .rows_affected()
        });
        let value = on_write!(self, pool => {
            sqlx::query_scalar::<_, String>("select value from app_secrets where name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?
        });
        Ok((value, inserted == 1))
    }
}
