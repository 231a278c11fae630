//! SQL for `workspace_members` and `invitations`: who belongs to which workspace, as what,
//! and the one-time links that bring people in. Every change writes its audit event in the
//! same transaction. "At least one owner" is checked inside the transaction that would break
//! it, after locking the workspace's row (PostgreSQL), or under SQLite's one writer.

use sqlx::FromRow;

use super::audit::{insert_audit, AuditEvent};
use super::{on_read, on_write, Result, Store, StoreError};
use crate::domain::audit::{Action, Actor, Target};
use crate::domain::team::{Role, UserId, WorkspaceId};
use crate::domain::{time_util, Email, KeyId, TokenHash};

pub(crate) const INSERT_OWNER: &str = "insert into workspace_members (account_id, user_id, role, \
    created_at) values ($1, $1, 'owner', $2)";

/// An invitation lives this long: 7 days.
pub const INVITATION_LIFETIME_MS: i64 = 7 * 86_400_000;

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

#[derive(Debug, Clone, FromRow)]
pub struct InvitationRow {
    pub id: i64,
    pub account_id: WorkspaceId,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl InvitationRow {
    pub fn is_open(&self, now: i64) -> bool {
        self.accepted_at.is_none() && self.revoked_at.is_none() && now < self.expires_at
    }
}

/// Why an invitation cannot be accepted (each a message for the person holding the link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, used, revoked or expired: one answer, so a link reveals nothing.
    NotOpen,
    /// Signed in with another email than the one invited.
    WrongEmail,
}

/// What the offboarding view lists for one member.
#[derive(Debug, Clone, FromRow)]
pub struct OffboardKey {
    pub id: KeyId,
    pub name: String,
    /// `created`, `rolled` or both (`created, rolled`).
    pub how: String,
}

const INVITATION_COLUMNS: &str =
    "id, account_id, email, role, created_at, expires_at, accepted_at, revoked_at";

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

    /// Stores an invitation (the token's hash only). Any open invitation of the same email
    /// to this workspace is revoked: the newest link is the one that works.
    pub async fn create_invitation(
        &self,
        ws: WorkspaceId,
        email: &Email,
        role: Role,
        token: &TokenHash,
        actor: &Actor,
        invited_by: UserId,
    ) -> Result<i64> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("update invitations set revoked_at = $1 where account_id = $2 and email = $3 \
                         and accepted_at is null and revoked_at is null")
                .bind(now).bind(ws).bind(email.as_str()).execute(&mut *tx).await?;
            let id: i64 = sqlx::query_scalar(
                "insert into invitations (account_id, email, role, token_hash, invited_by, created_at, expires_at) \
                 values ($1, $2, $3, $4, $5, $6, $7) returning id",
            )
            .bind(ws)
            .bind(email.as_str())
            .bind(role.as_str())
            .bind(&token.0)
            .bind(invited_by)
            .bind(now)
            .bind(now + INVITATION_LIFETIME_MS)
            .fetch_one(&mut *tx)
            .await?;
            let ev = AuditEvent::new(ws, actor, Action::MemberInvited)
                .target(Target { kind: "invitation", id: Some(id), label: email.as_str().to_owned() })
                .details(serde_json::json!({"role": role.as_str()}));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(id)
        })
    }

    /// The workspace's invitations not yet accepted, revoked or expired.
    pub async fn open_invitations(&self, ws: WorkspaceId) -> Result<Vec<InvitationRow>> {
        let sql = format!(
            "select {INVITATION_COLUMNS} from invitations where account_id = $1 and accepted_at is null \
             and revoked_at is null and expires_at > $2 order by id desc"
        );
        Ok(on_read!(self, pool => {
            sqlx::query_as(&sql).bind(ws).bind(time_util::now_ms()).fetch_all(pool).await?
        }))
    }

    /// Revokes an open invitation of this workspace; `NotFound` otherwise.
    pub async fn revoke_invitation(&self, ws: WorkspaceId, id: i64, actor: &Actor) -> Result<()> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let email: String = sqlx::query_scalar(
                "update invitations set revoked_at = $1 where id = $2 and account_id = $3 \
                 and accepted_at is null and revoked_at is null returning email",
            )
            .bind(now)
            .bind(id)
            .bind(ws)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            let ev = AuditEvent::new(ws, actor, Action::InvitationRevoked)
                .target(Target { kind: "invitation", id: Some(id), label: email });
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(())
        })
    }

    /// The invitation behind a link, whatever its state (the page says what it is).
    pub async fn invitation_by_token(
        &self,
        token: &TokenHash,
    ) -> Result<Option<(InvitationRow, String)>> {
        let sql = format!(
            "select i.{}, a.name as workspace from invitations i join accounts a on a.id = i.account_id \
             where i.token_hash = $1",
            INVITATION_COLUMNS.replace(", ", ", i.")
        );
        #[derive(FromRow)]
        struct WithName {
            #[sqlx(flatten)]
            inv: InvitationRow,
            workspace: String,
        }
        let row: Option<WithName> = on_read!(self, pool => {
            sqlx::query_as(&sql).bind(&token.0).fetch_optional(pool).await?
        });
        Ok(row.map(|r| (r.inv, r.workspace)))
    }

    /// Accepts an invitation for the signed-in person: one use, before it expires, for the
    /// email it was sent to. A person already a member keeps their role.
    pub async fn accept_invitation(
        &self,
        token: &TokenHash,
        user: UserId,
        email: &str,
        actor: &Actor,
    ) -> Result<std::result::Result<WorkspaceId, Refusal>> {
        let now = time_util::now_ms();
        let sql = format!("select {INVITATION_COLUMNS} from invitations where token_hash = $1");
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let inv: Option<InvitationRow> = sqlx::query_as(&sql).bind(&token.0).fetch_optional(&mut *tx).await?;
            let Some(inv) = inv.filter(|i| i.is_open(now)) else {
                return Ok(Err(Refusal::NotOpen));
            };
            if !inv.email.eq_ignore_ascii_case(email) {
                return Ok(Err(Refusal::WrongEmail));
            }
            let used = sqlx::query("update invitations set accepted_at = $1, accepted_by = $2 where id = $3 and accepted_at is null")
                .bind(now).bind(user).bind(inv.id).execute(&mut *tx).await?.rows_affected();
            if used != 1 {
                return Ok(Err(Refusal::NotOpen));
            }
            let joined = sqlx::query(
                "insert into workspace_members (account_id, user_id, role, created_at) values ($1, $2, $3, $4) \
                 on conflict (account_id, user_id) do nothing",
            )
            .bind(inv.account_id)
            .bind(user)
            .bind(inv.role.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if joined == 1 {
                let ev = AuditEvent::new(inv.account_id, actor, Action::MemberJoined)
                    .target(member_target(user, email))
                    .details(serde_json::json!({"role": inv.role.as_str()}));
                insert_audit!(&mut *tx, &ev);
            }
            tx.commit().await?;
            Ok(Ok(inv.account_id))
        })
    }
}
