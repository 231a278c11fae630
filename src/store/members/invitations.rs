//! SQL for `invitations` (and `invitation_addresses`, migration 0027): the one-time links
//! that bring people into a workspace, and the budgets that bound how many are made.
//!
//! Budgets count rows of the last 24 hours, revoked and accepted ones included (no code
//! deletes an invitation), so revoking and inviting again never resets one, and every
//! process counts the same rows. Lock order of a new invitation: the address's row in
//! `invitation_addresses` (an upsert), then the inviter's and the workspace's `accounts`
//! rows in id order (as every transaction that locks several accounts does); so concurrent
//! invitations that share an address, an inviter or a workspace are counted one after the
//! other, and none waits for a row another holds first.

use std::time::Duration;

use sqlx::FromRow;

use super::super::audit::{insert_audit, AuditEvent};
use super::super::{on_read, on_write, Result, Store, StoreError};
use super::member_target;
use crate::domain::audit::{Action, Actor, Target};
use crate::domain::team::{InvitationBudget, Role, UserId, WorkspaceId};
use crate::domain::{time_util, Email, TokenHash};

/// An invitation lives this long: 7 days.
pub const INVITATION_LIFETIME_MS: i64 = 7 * 86_400_000;
/// The budgets' window.
const DAY_MS: i64 = 86_400_000;

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

/// The invitation behind a link, with what its page shows about it.
#[derive(Debug, Clone, FromRow)]
pub struct InvitationLink {
    #[sqlx(flatten)]
    pub invitation: InvitationRow,
    /// The workspace's name: chosen by its members, so shown as a quotation.
    pub workspace: String,
    /// The email of the person who invited.
    pub inviter: String,
}

/// An invitation to store: `email` invited to `workspace` as `role` by `invited_by`, its
/// link's token hashed.
#[derive(Debug, Clone, Copy)]
pub struct NewInvitation<'a> {
    pub workspace: WorkspaceId,
    pub email: &'a Email,
    pub role: Role,
    pub token: &'a TokenHash,
    pub invited_by: UserId,
}

/// Why an invitation cannot be accepted (each a message for the person holding the link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, used, revoked or expired: one answer, so a link reveals nothing.
    NotOpen,
    /// Signed in with another email than the one invited.
    WrongEmail,
}

/// Which budget of [`InvitationBudget`] a refused invitation found spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Inviter,
    Workspace,
    Address,
}

/// A refused invitation: the budget that is spent, its size, and when the oldest of the
/// invitations it counts leaves the window (one can be made then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub spent: Spent,
    pub limit: u32,
    pub wait: Duration,
}

const INVITATION_COLUMNS: &str =
    "id, account_id, email, role, created_at, expires_at, accepted_at, revoked_at";

/// For each budget, the `limit`-th newest invitation of the window among those it counts:
/// where there is one, that budget is spent until it leaves the window. Binds: inviter,
/// workspace, address, the window's start, then each budget's `limit - 1`.
const NTH_NEWEST: &str = "select \
    (select created_at from invitations where invited_by = $1 and created_at > $4 \
     order by created_at desc limit 1 offset $5), \
    (select created_at from invitations where account_id = $2 and created_at > $4 \
     order by created_at desc limit 1 offset $6), \
    (select created_at from invitations where email = $3 and created_at > $4 \
     order by created_at desc limit 1 offset $7)";

/// The first spent budget, if any, from [`NTH_NEWEST`]'s row.
fn spent(
    nth: (Option<i64>, Option<i64>, Option<i64>),
    budget: InvitationBudget,
    now: i64,
) -> Option<OverBudget> {
    [
        (Spent::Inviter, nth.0, budget.per_inviter),
        (Spent::Workspace, nth.1, budget.per_workspace),
        (Spent::Address, nth.2, budget.per_address),
    ]
    .into_iter()
    .find_map(|(spent, at, limit)| {
        let wait = u64::try_from(at? + DAY_MS - now).unwrap_or(0).max(1000);
        Some(OverBudget {
            spent,
            limit: limit.max(1),
            wait: Duration::from_millis(wait),
        })
    })
}

impl Store {
    /// Stores an invitation (the token's hash only) within `budget`; nothing is stored when
    /// a budget is spent. Any open invitation of the same email to this workspace is
    /// revoked: the newest link is the one that works (the revoked row still counts).
    pub async fn create_invitation(
        &self,
        new: &NewInvitation<'_>,
        budget: InvitationBudget,
        actor: &Actor,
    ) -> Result<std::result::Result<i64, OverBudget>> {
        let NewInvitation {
            workspace: ws,
            email,
            role,
            token,
            invited_by,
        } = *new;
        let now = time_util::now_ms();
        // Locked in id order (once, when the inviter invites from their own workspace).
        let mut accounts = vec![ws, WorkspaceId(invited_by.0)];
        accounts.sort_unstable_by_key(|w| w.0);
        accounts.dedup();
        let offset = |limit: u32| i64::from(limit.max(1)) - 1;
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "insert into invitation_addresses (email, last_invited_at) values ($1, $2) \
                 on conflict (email) do update set last_invited_at = excluded.last_invited_at",
            )
            .bind(email.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            for id in &accounts {
                sqlx::query("update accounts set name = name where id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let nth: (Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(NTH_NEWEST)
                .bind(invited_by)
                .bind(ws)
                .bind(email.as_str())
                .bind(now - DAY_MS)
                .bind(offset(budget.per_inviter))
                .bind(offset(budget.per_workspace))
                .bind(offset(budget.per_address))
                .fetch_one(&mut *tx)
                .await?;
            if let Some(over) = spent(nth, budget, now) {
                tx.rollback().await?;
                return Ok(Err(over));
            }
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
            Ok(Ok(id))
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

    /// The invitation behind a link, whatever its state (the page says what it is), with
    /// its workspace's name and its inviter's email.
    pub async fn invitation_by_token(&self, token: &TokenHash) -> Result<Option<InvitationLink>> {
        let sql = format!(
            "select i.{}, a.name as workspace, p.email as inviter from invitations i \
             join accounts a on a.id = i.account_id join accounts p on p.id = i.invited_by \
             where i.token_hash = $1",
            INVITATION_COLUMNS.replace(", ", ", i.")
        );
        Ok(on_read!(self, pool => {
            sqlx::query_as(&sql).bind(&token.0).fetch_optional(pool).await?
        }))
    }

    /// Accepts an invitation for the signed-in person: one use, before it expires, for the
    /// email it was sent to. A person already a member keeps their role. Whether the person
    /// has proven that email is the caller's to check (`service::email_gate`).
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
