//! SQL for `management_keys`: the `lr-mk-` tokens of the management API. Stored like API
//! keys: the token's SHA-256, its display prefix and last four, never the token.

use crate::domain::ids::{UserId, WorkspaceId};
use crate::domain::team::Role;
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

/// In a member's removal transaction `$tx`: revokes every live management key `$user` owns
/// in `$ws`, each with its audit event (`$actor` removed them). A key acts for its owner,
/// so it cannot outlive their membership; hand it over first to keep it.
macro_rules! revoke_owned_management_keys {
    ($tx:ident, $ws:expr, $user:expr, $actor:expr) => {{
        let revoked: Vec<(i64, String)> = sqlx::query_as(
            "update management_keys set revoked_at = $1 where account_id = $2 and created_by = $3 \
             and revoked_at is null returning id, name",
        )
        .bind($crate::domain::time_util::now_ms())
        .bind($ws)
        .bind($user)
        .fetch_all(&mut *$tx)
        .await?;
        for (id, name) in &revoked {
            let ev = $crate::store::audit::AuditEvent::new(
                $ws,
                $actor,
                $crate::domain::audit::Action::ManagementKeyDeleted,
            )
            .target($crate::store::management_keys::management_target(*id, name))
            .details(serde_json::json!({"reason": "its owner left the workspace"}));
            $crate::store::audit::insert_audit!(&mut *$tx, &ev);
        }
    }};
}
pub(crate) use revoke_owned_management_keys;

/// The `update … returning` of a management key's roll.
pub(crate) fn roll_sql() -> String {
    format!(
        "update management_keys set token_hash = $1, token_prefix = $2, token_last4 = $3 \
         where public_id = $4 and account_id = $5 and revoked_at is null returning {COLUMNS}"
    )
}

/// In the transaction `$tx`: gives the live management key `$id` of `$ws` the token
/// `$token`, with its audit event; evaluates to its row, `None` when there is no such live
/// key. The old token stops with the commit.
macro_rules! roll_management_key_in {
    ($tx:ident, $ws:expr, $id:expr, $token:expr, $actor:expr) => {{
        let row = sqlx::query_as::<_, $crate::store::management_keys::ManagementKeyRow>(
            &$crate::store::management_keys::roll_sql(),
        )
        .bind(&$token.hash().0)
        .bind($token.display_prefix())
        .bind($token.last_four())
        .bind($id.as_str())
        .bind($ws)
        .fetch_optional(&mut *$tx)
        .await?;
        if let Some(row) = &row {
            let ev = $crate::store::audit::AuditEvent::new(
                $ws,
                $actor,
                $crate::domain::audit::Action::ManagementKeyRolled,
            )
            .target($crate::store::management_keys::management_target(
                row.id, &row.name,
            ));
            $crate::store::audit::insert_audit!(&mut *$tx, &ev);
        }
        row
    }};
}
pub(crate) use roll_management_key_in;

pub(crate) fn management_target(id: i64, name: &str) -> Target {
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

    /// Hands a live management key of `from` over to `to`, who must be an admin or owner
    /// of the workspace now (the roles that may make one). From then on it acts for `to`.
    /// `NotFound`: no such live key of `from`; `Conflict`: `to` may not own one.
    pub async fn hand_over_management_key(
        &self,
        account_id: WorkspaceId,
        id: &ManagementKeyPublicId,
        from: UserId,
        to: UserId,
        actor: &Actor,
    ) -> Result<String> {
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let heir: Option<(String, String)> = sqlx::query_as(
                "select a.email, m.role from workspace_members m join accounts a on a.id = m.user_id \
                 where m.account_id = $1 and m.user_id = $2",
            )
            .bind(account_id)
            .bind(to)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((email, role)) = heir else {
                return Err(StoreError::Conflict);
            };
            if !matches!(Role::parse(&role), Some(Role::Admin | Role::Owner)) {
                return Err(StoreError::Conflict);
            }
            let (row_id, name) = sqlx::query_as::<_, (i64, String)>(
                "update management_keys set created_by = $1 where public_id = $2 and account_id = $3 \
                 and created_by = $4 and revoked_at is null returning id, name",
            )
            .bind(to)
            .bind(id.as_str())
            .bind(account_id)
            .bind(from)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            let ev = AuditEvent::new(account_id, actor, Action::ManagementKeyHandedOver)
                .target(management_target(row_id, &name))
                .details(serde_json::json!({"to": email}));
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
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let row = roll_management_key_in!(tx, account_id, id, token, actor)
                .ok_or(StoreError::NotFound)?;
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
