//! SQL for `workspace_members`: who belongs to which workspace, as what; the one-time links
//! that bring people in (`invitations`) are in `members/invitations.rs`. Every change writes
//! its audit event in the same transaction. "At least one owner" is checked inside the transaction that would break
//! it, after locking the workspace's row (PostgreSQL), or under SQLite's one writer.

pub mod invitations;

use sqlx::FromRow;

use super::audit::{insert_audit, AuditEvent};
use super::{on_read, on_write, Result, Store, StoreError};
use crate::domain::audit::{Action, Actor, Target};
use crate::domain::team::{Role, UserId, WorkspaceId};
use crate::domain::KeyId;

pub use invitations::{InvitationLink, InvitationRow, NewInvitation, OverBudget, Refusal, Spent};

pub(crate) const INSERT_OWNER: &str = "insert into workspace_members (account_id, user_id, role, \
    created_at) values ($1, $1, 'owner', $2)";

/// A workspace a person belongs to, for the switcher.
#[derive(Debug, Clone, FromRow)]
pub struct MembershipRow {
    pub account_id: WorkspaceId,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
}

/// A member as the Members page shows them.
#[derive(Debug, Clone, FromRow)]
pub struct MemberRow {
    pub user_id: UserId,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub created_at: i64,
}

/// What the offboarding view lists for one member.
#[derive(Debug, Clone, FromRow)]
pub struct OffboardKey {
    pub id: KeyId,
    pub name: String,
    /// `created`, `rolled` or both (`created, rolled`).
    pub how: String,
}

fn member_target(user: UserId, email: &str) -> Target {
    Target {
        kind: "member",
        id: Some(user.0),
        label: email.to_owned(),
    }
}

/// In a member change's transaction `$tx`: takes the workspace row's lock (a no-op update:
/// owner changes of one workspace serialise, so "at least one owner" holds) and reads the
/// member's email and role; `NotFound` when `$user` is not a member of `$ws`.
macro_rules! lock_member {
    ($tx:ident, $ws:expr, $user:expr) => {{
        sqlx::query("update accounts set name = name where id = $1")
            .bind($ws)
            .execute(&mut *$tx)
            .await?;
        let found: (String, String) = sqlx::query_as(
            "select a.email, m.role from workspace_members m join accounts a on a.id = m.user_id \
             where m.account_id = $1 and m.user_id = $2",
        )
        .bind($ws)
        .bind($user)
        .fetch_optional(&mut *$tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        found
    }};
}

/// In a member change's transaction `$tx`, after the change: `Conflict` (and the change is
/// rolled back with the transaction) when `$ws` would be left without an owner.
macro_rules! keep_an_owner {
    ($tx:ident, $ws:expr) => {{
        let owners: i64 = sqlx::query_scalar(
            "select count(*) from workspace_members where account_id = $1 and role = 'owner'",
        )
        .bind($ws)
        .fetch_one(&mut *$tx)
        .await?;
        if owners == 0 {
            return Err(StoreError::Conflict);
        }
    }};
}

impl Store {
    /// The person's role in the workspace, None when not a member. Read on every dashboard
    /// request, so a removal takes effect on the member's next request.
    pub async fn role_of(&self, ws: WorkspaceId, user: UserId) -> Result<Option<Role>> {
        let role: Option<String> = on_read!(self, pool => {
            sqlx::query_scalar("select role from workspace_members where account_id = $1 and user_id = $2")
                .bind(ws)
                .bind(user)
                .fetch_optional(pool)
                .await?
        });
        Ok(role.and_then(|r| Role::parse(&r)))
    }

    /// Every live workspace the person belongs to, by name (a deleted one has no members
    /// left; the filter says so again).
    pub async fn memberships(&self, user: UserId) -> Result<Vec<MembershipRow>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as(
                "select m.account_id, a.name, m.role from workspace_members m \
                 join accounts a on a.id = m.account_id where m.user_id = $1 and a.deleted_at is null \
                 order by a.name, a.id",
            )
            .bind(user)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn members(&self, ws: WorkspaceId) -> Result<Vec<MemberRow>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as(
                "select m.user_id, a.email, m.role, m.created_at from workspace_members m \
                 join accounts a on a.id = m.user_id where m.account_id = $1 order by m.created_at, a.email",
            )
            .bind(ws)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Gives a member another role. `Conflict` when that would leave no owner.
    pub async fn change_role(
        &self,
        ws: WorkspaceId,
        user: UserId,
        role: Role,
        actor: &Actor,
    ) -> Result<()> {
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let (email, old) = lock_member!(tx, ws, user);
            sqlx::query("update workspace_members set role = $1 where account_id = $2 and user_id = $3")
                .bind(role.as_str())
                .bind(ws)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            keep_an_owner!(tx, ws);
            let ev = AuditEvent::new(ws, actor, Action::MemberRoleChanged)
                .target(member_target(user, &email))
                .details(serde_json::json!({"changes": {"role": {"from": old, "to": role.as_str()}}}));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Removes a member (or a member leaves: `actor` is then themselves), and revokes the
    /// management keys they own here (hand one over first to keep it). `Conflict` when
    /// they are the last owner. Their sessions stop reaching this workspace at once: every
    /// dashboard request reads [`Store::role_of`].
    pub async fn remove_member(&self, ws: WorkspaceId, user: UserId, actor: &Actor) -> Result<()> {
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let (email, role) = lock_member!(tx, ws, user);
            sqlx::query("delete from workspace_members where account_id = $1 and user_id = $2")
                .bind(ws)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            keep_an_owner!(tx, ws);
            super::management_keys::revoke_owned_management_keys!(tx, ws, user, actor);
            let ev = AuditEvent::new(ws, actor, Action::MemberRemoved)
                .target(member_target(user, &email))
                .details(serde_json::json!({"role": role}));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(())
        })
    }

    /// What a (former) member made: live keys they created or rolled, and live management
    /// keys they created. The offboarding view offers to roll each.
    /// Whether `user` is or was a member of `ws` (a current row, or any member event of the
    /// workspace's audit log about them). Pages about a person answer 404 otherwise, so a
    /// person's id never shows their email to another workspace.
    pub async fn was_member(&self, ws: WorkspaceId, user: UserId) -> Result<bool> {
        let n: i64 = on_read!(self, pool => {
            sqlx::query_scalar(
                "select (select count(*) from workspace_members where account_id = $1 and user_id = $2) \
                 + (select count(*) from audit_events where account_id = $1 and target_kind = 'member' \
                    and target_id = $2)",
            )
            .bind(ws)
            .bind(user)
            .fetch_one(pool)
            .await?
        });
        Ok(n > 0)
    }

    pub async fn offboarding(
        &self,
        ws: WorkspaceId,
        user: UserId,
    ) -> Result<(
        Vec<OffboardKey>,
        Vec<super::management_keys::ManagementKeyRow>,
    )> {
        if !self.was_member(ws, user).await? {
            return Err(StoreError::NotFound);
        }
        let keys: Vec<OffboardKey> = on_read!(self, pool => {
            sqlx::query_as(
                "select k.id, k.name, \
                 case when k.created_by = $2 and exists (select 1 from key_secrets s where s.key_id = k.id \
                      and s.created_by = $2 and s.token_hash <> (select f.token_hash from key_secrets f \
                      where f.key_id = k.id order by f.id limit 1)) then 'created, rolled' \
                      when k.created_by = $2 then 'created' else 'rolled' end as how \
                 from api_keys k where k.account_id = $1 and k.status <> 'revoked' \
                 and (k.created_by = $2 or exists (select 1 from key_secrets s where s.key_id = k.id and s.created_by = $2)) \
                 order by k.id",
            )
            .bind(ws)
            .bind(user)
            .fetch_all(pool)
            .await?
        });
        let mks = self
            .list_management_keys(ws)
            .await?
            .into_iter()
            .filter(|m| m.created_by == Some(user.0) && m.revoked_at.is_none())
            .collect();
        Ok((keys, mks))
    }
}
