//! SQL for the workspaces people make (`accounts` rows of kind `team`, migration 0018):
//! create (zero credits, at most `CREATE_LIMIT` live ones per person), rename, and the soft
//! delete that revokes everything that could act for the workspace, in one transaction with
//! its audit event.

use serde_json::json;

use super::super::audit::{insert_audit, AuditEvent};
use super::super::{on_read, on_write, Result, Store, StoreError};
use crate::domain::audit::{Action, Actor, Target};
use crate::domain::team::{reserved_email, UserId, WorkspaceId, WorkspaceName};
use crate::domain::{time_util, Credits};

/// The person already has the most live workspaces they may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMany;

/// A personal workspace (the account someone signs in with) is never deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Personal;

/// What a deletion revoked and removed (the audit event's details and the page's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub name: String,
    pub keys: u64,
    pub management_keys: u64,
    pub invitations: u64,
    pub members: u64,
    /// The balance left: gone with the workspace.
    pub credits: Credits,
}

fn workspace_target(ws: WorkspaceId, name: &str) -> Target {
    Target {
        kind: "workspace",
        id: Some(ws.0),
        label: name.to_owned(),
    }
}

/// In a transaction `$tx`: runs `$sql` (`$1` the workspace, `$2` now) and counts the rows.
macro_rules! count_rows {
    ($tx:ident, $sql:literal, $ws:expr, $now:expr) => {
        sqlx::query($sql)
            .bind($ws)
            .bind($now)
            .execute(&mut *$tx)
            .await?
            .rows_affected()
    };
}

impl Store {
    /// Makes a workspace owned by `creator`, with zero credits (never the sign-up grant),
    /// unless they already have `limit` live ones they made. The creator's row is locked
    /// first, so two creations of one person cannot both pass the count.
    pub async fn create_workspace(
        &self,
        creator: UserId,
        name: &WorkspaceName,
        limit: i64,
        actor: &Actor,
    ) -> Result<std::result::Result<WorkspaceId, TooMany>> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("update accounts set name = name where id = $1")
                .bind(creator)
                .execute(&mut *tx)
                .await?;
            let made: i64 = sqlx::query_scalar(
                "select count(*) from accounts where created_by = $1 and kind = 'team' and deleted_at is null",
            )
            .bind(creator)
            .fetch_one(&mut *tx)
            .await?;
            if made >= limit {
                return Ok(Err(TooMany));
            }
            let id: WorkspaceId = sqlx::query_scalar(
                "insert into accounts (email, password_hash, balance, created_at, email_verified_at, name, kind, created_by) \
                 values ($1, '!', 0, $2, $2, $3, 'team', $4) returning id",
            )
            .bind(reserved_email())
            .bind(now)
            .bind(name.as_str())
            .bind(creator)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "insert into workspace_members (account_id, user_id, role, created_at) values ($1, $2, 'owner', $3)",
            )
            .bind(id)
            .bind(creator)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let ev = AuditEvent::new(id, actor, Action::WorkspaceCreated)
                .target(workspace_target(id, name.as_str()));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(Ok(id))
        })
    }

    /// Renames a live workspace; `NotFound` for a deleted one. An unchanged name changes
    /// nothing and records nothing.
    pub async fn rename_workspace(
        &self,
        ws: WorkspaceId,
        name: &WorkspaceName,
        actor: &Actor,
    ) -> Result<()> {
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            // `set name = name` locks the row and returns the name before the change.
            let old: String = sqlx::query_scalar(
                "update accounts set name = name where id = $1 and deleted_at is null returning name",
            )
            .bind(ws)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            if old == name.as_str() {
                return Ok(());
            }
            sqlx::query("update accounts set name = $1 where id = $2")
                .bind(name.as_str())
                .bind(ws)
                .execute(&mut *tx)
                .await?;
            let ev = AuditEvent::new(ws, actor, Action::WorkspaceRenamed)
                .target(workspace_target(ws, name.as_str()))
                .details(json!({"changes": {"name": {"from": old, "to": name.as_str()}}}));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Deletes a team workspace (soft: the row stays, with its usage history): every API
    /// key and management key revoked, open invitations revoked, webhook endpoints deleted
    /// and their pending deliveries dropped (nothing more is sent), every membership
    /// removed (each member's next request no longer reaches it), and the row marked, with
    /// its audit event, in one transaction. Key rows are locked before the
    /// account row, as everywhere. `NotFound` when already deleted (or unknown).
    pub async fn delete_workspace(
        &self,
        ws: WorkspaceId,
        actor: &Actor,
    ) -> Result<std::result::Result<Deleted, Personal>> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let kind: String = sqlx::query_scalar("select kind from accounts where id = $1 and deleted_at is null")
                .bind(ws)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            if kind != "team" {
                return Ok(Err(Personal));
            }
            let keys = count_rows!(tx,
                "update api_keys set status = 'revoked', revoked_at = $2 where account_id = $1 and status <> 'revoked'",
                ws, now);
            // Conditional: of two concurrent deletions, the second finds nothing to delete.
            let (name, credits): (String, Credits) = sqlx::query_as(concat!(
                "update accounts set deleted_at = $2 where id = $1 and deleted_at is null returning name, cast(balance - ",
                crate::store::accounts::unfolded!("accounts.id"),
                " as bigint)"
            ))
            .bind(ws)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            let management_keys = count_rows!(tx,
                "update management_keys set revoked_at = $2 where account_id = $1 and revoked_at is null",
                ws, now);
            let invitations = count_rows!(tx,
                "update invitations set revoked_at = $2 where account_id = $1 and accepted_at is null and revoked_at is null",
                ws, now);
            crate::store::webhooks::drop_workspace_webhooks!(tx, ws, now);
            let members = sqlx::query("delete from workspace_members where account_id = $1")
                .bind(ws)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let deleted = Deleted {
                name,
                keys,
                management_keys,
                invitations,
                members,
                credits,
            };
            let ev = AuditEvent::new(ws, actor, Action::WorkspaceDeleted)
                .target(workspace_target(ws, &deleted.name))
                .details(json!({
                    "keys_revoked": keys,
                    "management_keys_revoked": management_keys,
                    "invitations_revoked": invitations,
                    "members_removed": members,
                    "credits_forfeited": deleted.credits.to_string(),
                }));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(Ok(deleted))
        })
    }
}

impl Store {
    /// Every workspace's id (deleted ones too: their history stays), in order: the
    /// operator's usage export walks them.
    pub async fn workspace_ids(&self) -> Result<Vec<WorkspaceId>> {
        Ok(on_read!(self, pool => {
            sqlx::query_scalar::<_, WorkspaceId>("select id from accounts order by id")
                .fetch_all(pool)
                .await?
        }))
    }
}
