//! Actions on a key's pending previous secret (after a Roll): Retire now, and Extend
//! (capped per secret, each audited).

use super::{
    insert_audit, Action, Actor, AuditEvent, KeyId, Result, Store, StoreError, Target, WorkspaceId,
};
use crate::domain::time_util;
use crate::store::on_write;

/// In the transaction `$tx`: the name of key `$key` of `$ws` (for its audit event);
/// `NotFound` (returned from the enclosing body) when it is another account's or missing.
macro_rules! key_name_in {
    ($tx:ident, $key:expr, $ws:expr) => {
        sqlx::query_scalar::<_, String>(
            "select name from api_keys where id = $1 and account_id = $2",
        )
        .bind($key)
        .bind($ws)
        .fetch_optional(&mut *$tx)
        .await?
        .ok_or(StoreError::NotFound)?
    };
}

impl Store {
    /// Retires the key's pending previous secret now. `NotFound` when there is none.
    pub async fn retire_previous(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        actor: &Actor,
    ) -> Result<()> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let name = key_name_in!(tx, key_id, account_id);
            let done = sqlx::query(
                "update key_secrets set retired_at = $1 where key_id = $2 and rolled_at is not null \
                 and retired_at is null",
            )
            .bind(now)
            .bind(key_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound);
            }
            let ev = AuditEvent::new(account_id, actor, Action::SecretRetired)
                .target(Target::key(key_id, &name));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Pushes the pending previous secret's deadline `by_ms` later (from now if it had none
    /// or it has passed), at most `max` times per secret, with its audit event.
    /// `NotFound` when there is no pending previous secret; `Conflict` when it was extended
    /// `max` times already.
    pub async fn extend_previous(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        by_ms: i64,
        max: i64,
        actor: &Actor,
    ) -> Result<()> {
        let now = time_util::now_ms();
        let Some(prev) = self
            .key_secrets(account_id, key_id)
            .await?
            .into_iter()
            .find(|s| !s.is_current())
        else {
            return Err(StoreError::NotFound);
        };
        let retires_at = prev
            .retires_at
            .unwrap_or(now)
            .max(now)
            .saturating_add(by_ms);
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let name = key_name_in!(tx, key_id, account_id);
            let extensions: Option<i32> = sqlx::query_scalar(
                "update key_secrets set retires_at = $1, extensions = extensions + 1 \
                 where id = $2 and key_id = $3 and retired_at is null and extensions < $4 \
                 returning extensions",
            )
            .bind(retires_at)
            .bind(prev.id)
            .bind(key_id)
            .bind(max)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(extensions) = extensions else {
                let retired: Option<Option<i64>> =
                    sqlx::query_scalar("select retired_at from key_secrets where id = $1")
                        .bind(prev.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                return Err(match retired {
                    Some(None) => StoreError::Conflict,
                    _ => StoreError::NotFound,
                });
            };
            let ev = AuditEvent::new(account_id, actor, Action::SecretExtended)
                .target(Target::key(key_id, &name))
                .details(serde_json::json!({
                    "secret": prev.masked(),
                    "retires_at": time_util::format_rfc3339(retires_at),
                    "extensions": extensions,
                }));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(())
        })
    }
}
