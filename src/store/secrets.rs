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

impl Store {
    /// 16 random bytes generated once per deployment under `name` (hex in `app_secrets`),
    /// the same for every process on this database.
    pub async fn deployment_key16(&self, name: &str) -> Result<[u8; 16]> {
        let mut candidate = [0u8; 16];
        rand::RngExt::fill(
            &mut rand::rand_core::UnwrapErr(rand::rngs::SysRng),
            &mut candidate[..],
        );
        let (stored, _) = self
            .get_or_init_secret(name, &hex::encode(candidate))
            .await?;
        let bytes = hex::decode(stored.trim())
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok());
        bytes.ok_or_else(|| {
            sqlx::Error::Decode(format!("app_secrets {name} is not 16 bytes of hex").into()).into()
        })
    }
}
