//! SQL for `sessions`, and actix-session's `SessionStore` over it: server-side sessions on
//! whichever database the service uses, so logout really ends a session (a copied cookie
//! stops working) and no extra service is needed.
//!
//! The cookie carries a random 64-character id; the table stores its SHA-256, so a read of
//! the database does not hand out live sessions.
//!
//! Two expiries: `expires_at` slides with every request (the idle expiry, actix-session's
//! TTL), `ends_at` is fixed when the row is created (at login, which renews the session:
//! login + `session_max_age`). Rows are read only while both are ahead, so a session that is
//! used all the time still ends.
//!
//! `update` never re-creates a row that is gone: a request that loaded a session, whose row
//! was then deleted (logout elsewhere, "Log out other sessions"), must not bring it back when
//! it writes its flash message or CSRF token.

use crate::domain::ids::UserId;
use std::collections::HashMap;

use actix_session::storage::{
    generate_session_key, LoadError, SaveError, SessionKey, SessionStore, UpdateError,
};
use actix_web::cookie::time::Duration;
use sha2::{Digest, Sha256};

use super::{on_read, on_write, Store};
use crate::domain::time_util;

fn id_hash(key: &SessionKey) -> String {
    session_id_hash(key.as_ref())
}

/// The stored form of a session id (as carried, decrypted, by the session cookie).
pub fn session_id_hash(session_id: &str) -> String {
    hex::encode(Sha256::digest(session_id.as_bytes()))
}

/// The session-state entry holding the signed-in account (`web::session` writes it).
pub const ACCOUNT_ID_KEY: &str = "account_id";

/// Whose session `state` is: its values are JSON text, so the account id 42 is `"42"`.
fn account_of(state: &HashMap<String, String>) -> Option<i64> {
    state.get(ACCOUNT_ID_KEY).and_then(|v| v.parse().ok())
}

fn expiry(ttl: &Duration) -> i64 {
    time_util::now_ms() + ttl.whole_milliseconds() as i64
}

impl Store {
    async fn session_load(&self, hash: &str) -> Result<Option<String>, sqlx::Error> {
        let now = time_util::now_ms();
        on_read!(self, pool => {
            sqlx::query_scalar::<_, String>(
                "select state from sessions where id_hash = $1 and expires_at > $2 and ends_at > $2",
            )
            .bind(hash)
            .bind(now)
            .fetch_optional(pool)
            .await
        })
    }

    /// A new session row (a new id: first write of a session, or a login's renewal).
    async fn session_insert(
        &self,
        hash: &str,
        state: &str,
        account_id: Option<i64>,
        expires_at: i64,
        ends_at: i64,
    ) -> Result<(), sqlx::Error> {
        on_write!(self, pool => {
            sqlx::query(
                "insert into sessions (id_hash, state, account_id, expires_at, ends_at) values ($1, $2, $3, $4, $5)",
            )
            .bind(hash)
            .bind(state)
            .bind(account_id)
            .bind(expires_at)
            .bind(ends_at)
            .execute(pool)
            .await
            .map(|_| ())
        })
    }

    /// New state for a live row; a deleted row stays deleted.
    async fn session_update(
        &self,
        hash: &str,
        state: &str,
        account_id: Option<i64>,
        expires_at: i64,
    ) -> Result<(), sqlx::Error> {
        on_write!(self, pool => {
            sqlx::query("update sessions set state = $1, account_id = $2, expires_at = $3 where id_hash = $4")
                .bind(state)
                .bind(account_id)
                .bind(expires_at)
                .bind(hash)
                .execute(pool)
                .await
                .map(|_| ())
        })
    }

    /// "Log out other sessions": deletes every session of `account_id` except the one whose
    /// id hashes to `keep`. Returns how many ended.
    pub async fn delete_other_sessions(
        &self,
        account_id: UserId,
        keep: &str,
    ) -> Result<u64, sqlx::Error> {
        on_write!(self, pool => {
            sqlx::query("delete from sessions where account_id = $1 and id_hash <> $2")
                .bind(account_id)
                .bind(keep)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
    }

    async fn session_touch(&self, hash: &str, expires_at: i64) -> Result<(), sqlx::Error> {
        on_write!(self, pool => {
            sqlx::query("update sessions set expires_at = $1 where id_hash = $2")
                .bind(expires_at)
                .bind(hash)
                .execute(pool)
                .await
                .map(|_| ())
        })
    }

    async fn session_delete(&self, hash: &str) -> Result<(), sqlx::Error> {
        on_write!(self, pool => {
            sqlx::query("delete from sessions where id_hash = $1").bind(hash).execute(pool).await.map(|_| ())
        })
    }

    /// Drops expired sessions; run periodically.
    pub async fn purge_expired_sessions(&self) -> Result<u64, sqlx::Error> {
        on_write!(self, pool => {
            sqlx::query("delete from sessions where expires_at <= $1 or ends_at <= $1")
                .bind(time_util::now_ms())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
    }
}

/// actix-session storage backed by [`Store`]; sessions end `max_age` after they were created
/// at the latest.
#[derive(Clone)]
pub struct DbSessionStore {
    pub store: Store,
    pub max_age: std::time::Duration,
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let state = self
            .store
            .session_load(&id_hash(key))
            .await
            .map_err(|e| LoadError::Other(e.into()))?;
        state
            .map(|s| serde_json::from_str(&s).map_err(|e| LoadError::Deserialization(e.into())))
            .transpose()
    }

    async fn save(
        &self,
        state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, SaveError> {
        let body = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let key = generate_session_key();
        let ends_at = time_util::now_ms() + self.max_age.as_millis() as i64;
        self.store
            .session_insert(
                &id_hash(&key),
                &body,
                account_of(&state),
                expiry(ttl),
                ends_at,
            )
            .await
            .map_err(|e| SaveError::Other(e.into()))?;
        Ok(key)
    }

    async fn update(
        &self,
        key: SessionKey,
        state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let body =
            serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        self.store
            .session_update(&id_hash(&key), &body, account_of(&state), expiry(ttl))
            .await
            .map_err(|e| UpdateError::Other(e.into()))?;
        Ok(key)
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        Ok(self.store.session_touch(&id_hash(key), expiry(ttl)).await?)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        Ok(self.store.session_delete(&id_hash(key)).await?)
    }
}
