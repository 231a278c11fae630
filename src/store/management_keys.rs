//! SQL for `management_keys`: the `lr-mk-` tokens of the management API. Stored like API
//! keys: the token's SHA-256, its display prefix and last four, never the token.

use crate::domain::ids::WorkspaceId;
use sqlx::FromRow;

use super::audit::{insert_audit, AuditEvent};
use super::{on_read, on_write, Result, Store, StoreError};
use crate::domain::audit::{Action, Actor, Target};
use crate::domain::public_id::ManagementKeyPublicId;
use crate::domain::time_util;
use crate::domain::token::{masked, ManagementToken, TokenHash};

const COLUMNS: &str = "id, public_id, account_id, created_by, created_via, name, token_prefix, \
    token_last4, read_only, expires_at, created_at, revoked_at, last_used_at";

/// Where a management key was made: the `created_via` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatedVia {
    /// By `created_by` on the Management keys page.
    Dashboard(i64),
    /// By `lowrouter management-key create` (the audit actor "cli").
    Cli,
}

/// The stored `created_via`, decoded by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Dashboard,
    Cli,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown created_via {0:?}")]
pub struct UnknownVia(String);

impl TryFrom<String> for Via {
    type Error = UnknownVia;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "dashboard" => Ok(Via::Dashboard),
            "cli" => Ok(Via::Cli),
            _ => Err(UnknownVia(s)),
        }
    }
}

/// What a management key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// A new management key's name, access and expiry (parsed at the edge).
#[derive(Debug, Clone)]
pub struct NewManagementKey {
    /// Checked by `domain::key_name::parse_name`.
    pub name: String,
    pub access: Access,
    /// The instant it stops working.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
pub struct ManagementKeyRow {
    pub id: i64,
    pub public_id: String,
    pub account_id: WorkspaceId,
    pub created_by: Option<i64>,
    #[sqlx(try_from = "String")]
    pub created_via: Via,
    pub name: String,
    pub token_prefix: String,
    pub token_last4: String,
    pub read_only: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// Whether a management key authenticates now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagementKeyState {
    Active,
    Expired,
    Revoked,
}

impl ManagementKeyRow {
    pub fn state(&self, now_ms: i64) -> ManagementKeyState {
        if self.revoked_at.is_some() {
            ManagementKeyState::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now_ms) {
            ManagementKeyState::Expired
        } else {
            ManagementKeyState::Active
        }
    }

    pub fn access(&self) -> Access {
        if self.read_only != 0 {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        }
    }

    pub fn masked(&self) -> String {
        masked(&self.token_prefix, &self.token_last4)
    }
}

fn management_target(id: i64, name: &str) -> Target {
    Target {
        kind: "management_key",
        id: Some(id),
        label: name.to_owned(),
    }
}

/// `last_used_at` is written at most once a minute per key, not once per request.
const LAST_USED_GRAIN_MS: i64 = 60_000;

impl Store {
    pub async fn create_management_key(
        &self,
        account_id: WorkspaceId,
        via: CreatedVia,
        new: &NewManagementKey,
        token: &ManagementToken,
        actor: &Actor,
    ) -> Result<ManagementKeyRow> {
        let (created_by, created_via) = match via {
            CreatedVia::Dashboard(by) => (Some(by), "dashboard"),
            CreatedVia::Cli => (None, "cli"),
        };
        let sql = format!(
            "insert into management_keys (public_id, account_id, created_by, created_via, name, token_hash, \
             token_prefix, token_last4, read_only, expires_at, created_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning {COLUMNS}"
        );
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query_as::<_, ManagementKeyRow>(&sql)
                .bind(ManagementKeyPublicId::generate().as_str())
                .bind(account_id)
                .bind(created_by)
                .bind(created_via)
                .bind(&new.name)
                .bind(&token.hash().0)
                .bind(token.display_prefix())
                .bind(token.last_four())
                .bind(i64::from(new.access == Access::ReadOnly))
                .bind(new.expires_at)
                .bind(time_util::now_ms())
                .fetch_one(&mut *tx)
                .await?;
            let ev = AuditEvent::new(account_id, actor, Action::ManagementKeyCreated)
                .target(management_target(row.id, &row.name))
                .details(serde_json::json!({
                    "read_only": new.access == Access::ReadOnly,
                    "expires_at": new.expires_at.map(time_util::format_rfc3339),
                }));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(row)
        })
    }

    /// Every management key of the account, newest first (revoked ones included).
    pub async fn list_management_keys(
        &self,
        account_id: WorkspaceId,
    ) -> Result<Vec<ManagementKeyRow>> {
        let sql =
            format!("select {COLUMNS} from management_keys where account_id = $1 order by id desc");
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, ManagementKeyRow>(&sql).bind(account_id).fetch_all(pool).await?
        }))
    }

    /// Revokes for good; another account's key is `NotFound`. The next request with it fails
    /// (every management request reads the key row).
    pub async fn revoke_management_key(
        &self,
        account_id: WorkspaceId,
        id: &ManagementKeyPublicId,
        actor: &Actor,
    ) -> Result<String> {
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let (row_id, name) = sqlx::query_as::<_, (i64, String)>(
                "update management_keys set revoked_at = $1 where public_id = $2 and account_id = $3 \
                 and revoked_at is null returning id, name",
            )
            .bind(time_util::now_ms())
            .bind(id.as_str())
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            let ev = AuditEvent::new(account_id, actor, Action::ManagementKeyDeleted)
                .target(management_target(row_id, &name));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(name)
        })
    }

    /// Gives a live management key a new token: same row, public id, name and access; the
    /// old token stops working with this commit (management keys have no grace period).
    /// Another account's key, or a revoked one, is `NotFound`.
    pub async fn roll_management_key(
        &self,
        account_id: WorkspaceId,
        id: &ManagementKeyPublicId,
        token: &ManagementToken,
        actor: &Actor,
    ) -> Result<ManagementKeyRow> {
        let sql = format!(
            "update management_keys set token_hash = $1, token_prefix = $2, token_last4 = $3 \
             where public_id = $4 and account_id = $5 and revoked_at is null returning {COLUMNS}"
        );
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query_as::<_, ManagementKeyRow>(&sql)
                .bind(&token.hash().0)
                .bind(token.display_prefix())
                .bind(token.last_four())
                .bind(id.as_str())
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let ev = AuditEvent::new(account_id, actor, Action::ManagementKeyRolled)
                .target(management_target(row.id, &row.name));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(row)
        })
    }

    /// The management key with this token hash, whatever its state (the caller decides); a
    /// deleted workspace's keys are none.
    pub async fn management_key_by_hash(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<ManagementKeyRow>> {
        let sql = format!(
            "select {COLUMNS} from management_keys where token_hash = $1 \
             and account_id in (select id from accounts where deleted_at is null)"
        );
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, ManagementKeyRow>(&sql).bind(&hash.0).fetch_optional(pool).await?
        }))
    }

    /// Records a use, at most once a minute per key (a write per request would make every
    /// management read a write).
    pub async fn touch_management_key(&self, key: &ManagementKeyRow, now_ms: i64) -> Result<()> {
        if key
            .last_used_at
            .is_some_and(|t| now_ms - t < LAST_USED_GRAIN_MS)
        {
            return Ok(());
        }
        on_write!(self, pool => {
            sqlx::query("update management_keys set last_used_at = $1 where id = $2")
                .bind(now_ms)
                .bind(key.id)
                .execute(pool)
                .await
                .map(|_| ())?
        });
        Ok(())
    }
}
