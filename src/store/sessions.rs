//! SQL for `sessions`, and actix-session's `SessionStore` over it: server-side sessions on
//! whichever database the service uses, so logout really ends a session (a copied cookie
//! stops working) and no extra service is needed.
//!
//! The cookie carries a random 64-character id; the table stores its SHA-256, so a read of
//! the database does not hand out live sessions.

use std::collections::HashMap;

use actix_session::storage::{
    generate_session_key, LoadError, SaveError, SessionKey, SessionStore, UpdateError,
};
use actix_web::cookie::time::Duration;
use sha2::{Digest, Sha256};

use super::{on_read, on_write, Store};
use crate::domain::time_util;

fn id_hash(key: &SessionKey) -> String {
    hex::encode(Sha256::digest(key.as_ref().as_bytes()))
}

fn expiry(ttl: &Duration) -> i64 {
    time_util::now_ms() + ttl.whole_milliseconds() as i64
}

impl Store {
    async fn session_load(&self, hash: &str) -> Result<Option<String>, sqlx::Error> {
        on_read!(self, pool => {
            sqlx::query_scalar::<_, String>("select state from sessions where id_hash = $1 and expires_at > $2")
                .bind(hash)
                .bind(time_util::now_ms())
                .fetch_optional(pool)
                .await
        })
    }

    async fn session_upsert(
        &self,
        hash: &str,
        state: &str,
        expires_at: i64,
    ) -> Result<(), sqlx::Error> {
        on_write!(self, pool => {
            sqlx::query(
                "insert into sessions (id_hash, state, expires_at) values ($1, $2, $3) \
                 on conflict (id_hash) do update set state = excluded.state, expires_at = excluded.expires_at",
            )
            .bind(hash)
            .bind(state)
            .bind(expires_at)
            .execute(pool)
            .await
            .map(|_| ())
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
            sqlx::query("delete from sessions where expires_at <= $1")
                .bind(time_util::now_ms())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
    }
}

/// actix-session storage backed by [`Store`].
#[derive(Clone)]
pub struct DbSessionStore(pub Store);

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let state = self
            .0
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
        self.0
            .session_upsert(&id_hash(&key), &body, expiry(ttl))
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
        self.0
            .session_upsert(&id_hash(&key), &body, expiry(ttl))
            .await
            .map_err(|e| UpdateError::Other(e.into()))?;
        Ok(key)
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        Ok(self.0.session_touch(&id_hash(key), expiry(ttl)).await?)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        Ok(self.0.session_delete(&id_hash(key)).await?)
    }
}
