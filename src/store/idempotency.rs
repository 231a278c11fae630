//! `Idempotency-Key` on `POST /api/v1/keys`: `idempotency_keys` rows, written in the same
//! transaction as the key they created (so both `api_keys` and this table: the one place
//! where the create spans two tables).

use super::keys::{insert_new_key, NewKey};
use super::{conflict_on_unique, on_read, on_write, Result, Store, StoreError};
use crate::domain::ids::{KeyId, WorkspaceId};
use crate::domain::key_form::KeySpec;
use crate::domain::{time_util, ApiToken};

/// How long a retry is recognised.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3_600_000;

/// What a create with an idempotency key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new key (its row id).
    New(KeyId),
    /// An earlier request with this idempotency key and the same body created this key
    /// (its row id): nothing was created now.
    Replay(KeyId),
    /// An earlier request used this idempotency key with another body.
    Mismatch,
}

type Earlier = Option<(String, KeyId)>;

impl Store {
    /// Creates the key unless this account used `idempotency_key` in the last 24 hours.
    /// `request_hash` identifies the body. `Conflict`: the name is taken (and no earlier
    /// request with this idempotency key made it).
    pub async fn create_key_once(
        &self,
        account_id: WorkspaceId,
        spec: &KeySpec,
        token: &ApiToken,
        idempotency_key: &str,
        request_hash: &str,
        actor: &crate::domain::audit::Actor,
    ) -> Result<Created> {
        let new = NewKey::new(account_id, spec, token, actor);
        let outcome: Result<std::result::Result<KeyId, Earlier>> = on_write!(self, pool => {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query("delete from idempotency_keys where account_id = $1 and idempotency_key = $2 and created_at < $3")
                    .bind(account_id)
                    .bind(idempotency_key)
                    .bind(new.now - IDEMPOTENCY_WINDOW_MS)
                    .execute(&mut *tx)
                    .await?;
                let earlier: Earlier = sqlx::query_as("select request_hash, key_id from idempotency_keys where account_id = $1 and idempotency_key = $2")
                    .bind(account_id)
                    .bind(idempotency_key)
                    .fetch_optional(&mut *tx)
                    .await?;
                if earlier.is_some() {
                    tx.commit().await?;
                    return Ok(Err(earlier));
                }
                let id: KeyId = insert_new_key!(tx, new);
                sqlx::query("insert into idempotency_keys (account_id, idempotency_key, request_hash, key_id, created_at) values ($1, $2, $3, $4, $5)")
                    .bind(account_id)
                    .bind(idempotency_key)
                    .bind(request_hash)
                    .bind(id)
                    .bind(new.now)
                    .execute(&mut *tx)
                    .await
                    .map_err(conflict_on_unique)?;
                tx.commit().await?;
                Ok(Ok(id))
            }.await
        });
        let earlier = match outcome {
            Ok(Ok(id)) => return Ok(Created::New(id)),
            Ok(Err(earlier)) => earlier,
            // A concurrent request with the same idempotency key (or the same name) won the
            // race: if it was ours, it is a replay.
            Err(StoreError::Conflict) => self.earlier(account_id, idempotency_key, new.now).await?,
            Err(e) => return Err(e),
        };
        match earlier {
            Some((hash, id)) if hash == request_hash => Ok(Created::Replay(id)),
            Some(_) => Ok(Created::Mismatch),
            None => Err(StoreError::Conflict),
        }
    }

    async fn earlier(
        &self,
        account_id: WorkspaceId,
        idempotency_key: &str,
        now: i64,
    ) -> Result<Earlier> {
        Ok(on_read!(self, pool => {
            sqlx::query_as("select request_hash, key_id from idempotency_keys where account_id = $1 and idempotency_key = $2 and created_at >= $3")
                .bind(account_id)
                .bind(idempotency_key)
                .bind(now - IDEMPOTENCY_WINDOW_MS)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Forgets idempotency keys past their window (run by the sweeper).
    pub async fn sweep_idempotency_keys(&self) -> Result<u64> {
        let cutoff = time_util::now_ms() - IDEMPOTENCY_WINDOW_MS;
        Ok(on_write!(self, pool => {
            sqlx::query("delete from idempotency_keys where created_at < $1")
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}
