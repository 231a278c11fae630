//! The gateway's one read per request: a secret by its hash, with its key and the key's
//! account (`key_secrets` joined with `api_keys` and `accounts`).

use sqlx::FromRow;

use super::super::key_secrets::Lifecycle;
use super::super::{sqlite_direct, Engine, Result, Store};
use super::{KeyModels, KeyRow, KeyStatus};
use crate::domain::token::TokenHash;
use crate::domain::{Credits, KeyId, WorkspaceId};

/// A key as the gateway sees it: the key row, the secret the request presented and its
/// account's balance, in one read.
#[derive(Debug, Clone, FromRow)]
pub struct GatewayKey {
    #[sqlx(flatten)]
    pub key: KeyRow,
    /// Net of the account's unfolded lease charges (`store::accounts::unfolded!`).
    pub balance: Credits,
    pub reserved: Credits,
    /// The last usage batch that settled a charge of the account, as this read saw it (see
    /// `gateway::holds`).
    pub settled_seq: i64,
    #[sqlx(flatten)]
    pub secret: GatewaySecret,
}

/// The secret a gateway request presented (`key_secrets`): which one, and whether it works.
#[derive(Debug, Clone, FromRow)]
pub struct GatewaySecret {
    pub secret_id: i64,
    pub secret_last4: String,
    pub secret_rolled_at: Option<i64>,
    pub secret_retires_at: Option<i64>,
    pub secret_quiet_ms: Option<i64>,
    pub secret_retired_at: Option<i64>,
    pub secret_quarantined_at: Option<i64>,
    pub secret_quarantine_url: Option<String>,
    pub secret_last_used_at: Option<i64>,
}

impl GatewaySecret {
    pub fn life(&self) -> Lifecycle {
        Lifecycle {
            rolled_at: self.secret_rolled_at,
            retires_at: self.secret_retires_at,
            quiet_ms: self.secret_quiet_ms,
            retired_at: self.secret_retired_at,
            last_used_at: self.secret_last_used_at,
        }
    }
}

/// The gateway's read: a secret with its key and the key's account, without its `where`.
/// A deleted workspace's keys are no keys (its deletion revokes them too; the join refuses
/// a key a request made while the deletion committed).
macro_rules! gateway_key_select {
    ($($extra:literal)?) => {
        concat!(
            "select k.id, k.account_id, k.name, k.token_prefix, k.token_last4, k.models, \
            k.region, k.daily_limit, k.monthly_limit, k.expires_at, k.status, k.created_at, \
            k.revoked_at, k.last_used_at, k.spend_day, k.day_spend, k.spend_month, k.month_spend, \
            k.public_id, k.rpm_limit, k.concurrency_limit, cast(a.balance - ",
            $crate::store::accounts::unfolded!("a.id"),
            " as bigint) as balance, cast(a.reserved - ",
            $crate::store::accounts::unfolded!("a.id"),
            " as bigint) as reserved, a.settled_seq, \
            s.id as secret_id, s.token_last4 as secret_last4, s.rolled_at as secret_rolled_at, \
            s.retires_at as secret_retires_at, s.quiet_ms as secret_quiet_ms, \
            s.retired_at as secret_retired_at, s.quarantined_at as secret_quarantined_at, \
            s.quarantine_url as secret_quarantine_url, s.last_used_at as secret_last_used_at, \
            k.disable_after_days, k.idle_from",
            $($extra,)?
            " from key_secrets s join api_keys k on k.id = s.key_id \
            join accounts a on a.id = k.account_id and a.deleted_at is null"
        )
    };
}

/// The secret by its hash (unique index), with its key and the key's account: the gateway's
/// one read per request.
const GATEWAY_KEY_SQL: &str = concat!(gateway_key_select!(), " where s.token_hash = $1");

/// PostgreSQL: [`GATEWAY_KEY_SQL`] for the hashes of several requests at once
/// ([`super::group_read`]); each row names its hash.
pub(super) const GATEWAY_KEYS_SQL: &str = concat!(
    gateway_key_select!(", s.token_hash as secret_hash"),
    " where s.token_hash = any($1)"
);

/// [`GATEWAY_KEY_SQL`]'s columns, in order, for the in-thread SQLite read.
fn gateway_key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GatewayKey> {
    Ok(GatewayKey {
        key: KeyRow {
            id: KeyId(r.get(0)?),
            account_id: WorkspaceId(r.get(1)?),
            name: r.get(2)?,
            token_prefix: r.get(3)?,
            token_last4: r.get(4)?,
            models: KeyModels::from_stored(r.get(5)?),
            region: r.get(6)?,
            daily_limit: r.get::<_, Option<i64>>(7)?.map(Credits::from_micros),
            monthly_limit: r.get::<_, Option<i64>>(8)?.map(Credits::from_micros),
            expires_at: r.get(9)?,
            status: KeyStatus::try_from(r.get::<_, String>(10)?).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, e.into())
            })?,
            created_at: r.get(11)?,
            revoked_at: r.get(12)?,
            last_used_at: r.get(13)?,
            spend_day: r.get(14)?,
            day_spend: Credits::from_micros(r.get(15)?),
            spend_month: r.get(16)?,
            month_spend: Credits::from_micros(r.get(17)?),
            public_id: r.get(18)?,
            rpm_limit: r.get(19)?,
            concurrency_limit: r.get(20)?,
            disable_after_days: r.get(33)?,
            idle_from: r.get(34)?,
            // Not read on the hot path: the gateway never asks who made a key.
            created_by: None,
        },
        balance: Credits::from_micros(r.get(21)?),
        reserved: Credits::from_micros(r.get(22)?),
        settled_seq: r.get(23)?,
        secret: GatewaySecret {
            secret_id: r.get(24)?,
            secret_last4: r.get(25)?,
            secret_rolled_at: r.get(26)?,
            secret_retires_at: r.get(27)?,
            secret_quiet_ms: r.get(28)?,
            secret_retired_at: r.get(29)?,
            secret_quarantined_at: r.get(30)?,
            secret_quarantine_url: r.get(31)?,
            secret_last_used_at: r.get(32)?,
        },
    })
}

impl Store {
    /// The gateway's one read per request: the key by token hash, with its account's balance.
    /// SQLite: on the calling thread, which it blocks ([`Store::gateway_key_blocking`]);
    /// PostgreSQL: shared with the reads of concurrent requests ([`super::group_read`]).
    pub async fn gateway_key(&self, hash: &TokenHash) -> Result<Option<GatewayKey>> {
        match &self.engine {
            Engine::Sqlite { file, .. } => Self::gateway_key_blocking(file, hash),
            Engine::Postgres {
                pool, key_reads, ..
            } => key_reads.read(pool, hash).await,
        }
    }

    /// PostgreSQL: the read of one request alone (see [`super::group_read`] for when).
    pub(super) async fn gateway_key_alone(
        pool: &sqlx::PgPool,
        hash: &TokenHash,
    ) -> Result<Option<GatewayKey>> {
        Ok(sqlx::query_as::<_, GatewayKey>(GATEWAY_KEY_SQL)
            .bind(&hash.0)
            .fetch_optional(pool)
            .await?)
    }

    /// SQLite: the gateway's key read, blocking the calling thread (a runtime worker) on
    /// purpose: one indexed read on this thread's own read-only connection takes
    /// microseconds and never waits for the writer (WAL), whereas a hop to sqlx's connection
    /// thread and back cost more than the rest of the request (see `sqlite_direct`).
    fn gateway_key_blocking(
        file: &sqlite_direct::SqliteFile,
        hash: &TokenHash,
    ) -> Result<Option<GatewayKey>> {
        Ok(sqlite_direct::query_one_blocking(
            &file.path,
            GATEWAY_KEY_SQL,
            &hash.0,
            gateway_key_from_row,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::Actor;
    use crate::domain::key_form::KeySpec;
    use crate::domain::{ApiToken, Email};

    /// The in-thread SQLite read maps columns by position, a second copy of sqlx's mapping by
    /// name: both must read the same key, secret and account, column for column. Every
    /// nullable column is set, so a swapped or missed position shows.
    #[tokio::test]
    async fn the_in_thread_read_and_sqlx_agree_on_every_column() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("parity.db").display());
        let store = Store::connect(&url).await.unwrap();
        let email = Email::parse("parity@example.com").unwrap();
        let user = store
            .create_account(&email, "x", Credits::from_micros(7_000_000))
            .await
            .unwrap();
        let spec = KeySpec {
            name: "parity".into(),
            models: vec!["openai/gpt-4o".into(), "lowrouter/echo".into()],
            region: Some("eu-west".into()),
            daily_limit: Some(Credits::from_micros(1_000_000)),
            monthly_limit: Some(Credits::from_micros(9_000_000)),
            expires_on: Some(time::macros::date!(2099 - 12 - 31)),
            rpm_limit: Some(60),
            concurrency_limit: Some(4),
            disable_after_days: Some(30),
        };
        let token = ApiToken::generate();
        let actor = Actor::user(user.0, email.as_str());
        store
            .create_key(user.personal_workspace(), &spec, &token, &actor)
            .await
            .unwrap();
        let Engine::Sqlite { write, file, .. } = &store.engine else {
            unreachable!("a SQLite store")
        };
        for sql in [
            "update api_keys set last_used_at = 11, spend_day = 12, day_spend = 13, \
             spend_month = 14, month_spend = 15, idle_from = 16, revoked_at = 17",
            "update key_secrets set rolled_at = 21, retires_at = 22, quiet_ms = 23, \
             retired_at = 24, quarantined_at = 25, quarantine_url = 'https://example.com/l', \
             last_used_at = 26",
            "update accounts set reserved = 31, settled_seq = 32",
        ] {
            sqlx::query(sql).execute(write).await.unwrap();
        }
        let by_sqlx: GatewayKey = sqlx::query_as(GATEWAY_KEY_SQL)
            .bind(&token.hash().0)
            .fetch_one(write)
            .await
            .unwrap();
        let in_thread = Store::gateway_key_blocking(file, &token.hash())
            .unwrap()
            .expect("found");
        assert_eq!(format!("{in_thread:?}"), format!("{by_sqlx:?}"));
        assert_eq!(
            in_thread.secret.secret_quiet_ms,
            Some(23),
            "values were set"
        );
    }
}
