//! SQL for `accounts`. Workspaces people create, rename and delete: `accounts/workspaces.rs`.

pub mod workspaces;

use sqlx::FromRow;

use super::audit::{insert_audit, AuditEvent};
use super::{
    conflict_on_unique, email_tokens, members, on_read, on_write, Result, Store, StoreError,
};
use crate::domain::audit::{Action, Actor};
use crate::domain::team::{UserId, WorkspaceId, WorkspaceKind};
use crate::domain::{time_util, Credits, Email, TokenHash};

#[derive(Debug, Clone, FromRow)]
pub struct AccountRow {
    pub id: WorkspaceId,
    pub email: String,
    pub password_hash: String,
    pub balance: Credits,
    pub reserved: Credits,
    /// When the account proved its email address; `None` only for an account that signed
    /// up with `require_email_verification` on and has not yet opened its link.
    pub email_verified_at: Option<i64>,
    /// The workspace's name (this row is the workspace too: migration 0013).
    pub name: String,
    /// A person's own workspace, or one made with "New workspace" (migration 0018).
    #[sqlx(try_from = "String")]
    pub kind: WorkspaceKind,
}

/// What the account's usage batches charged against leases and the account row has not
/// been told yet (migration 0019: folded in by the next lease transaction): a reader's
/// balance and reserved are the row's minus this, so every read is exact. Always 0 on SQLite.
macro_rules! unfolded {
    ($account:literal) => {
        concat!(
            "(select coalesce(sum(l.charged), 0) from leases l where l.account_id = ",
            $account,
            ")"
        )
    };
}
pub(crate) use unfolded;

/// The columns of [`AccountRow`].
const ACCOUNT_COLUMNS: &str = concat!(
    "id, email, password_hash, cast(balance - ",
    unfolded!("accounts.id"),
    " as bigint) as balance, cast(reserved - ",
    unfolded!("accounts.id"),
    " as bigint) as reserved, email_verified_at, name, kind"
);

impl AccountRow {
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    /// What can be spent now: settled balance minus what requests in flight hold.
    pub fn available(&self) -> Credits {
        self.balance.saturating_sub(self.reserved)
    }
}

impl Store {
    /// Creates an account with its sign-up grant, its email counted as verified (email
    /// verification off, or an operator's `user create`). `Conflict` if the email is taken.
    pub async fn create_account(
        &self,
        email: &Email,
        password_hash: &str,
        grant: Credits,
    ) -> Result<UserId> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let id = sqlx::query_scalar::<_, UserId>(
                "insert into accounts (email, password_hash, balance, created_at, email_verified_at, name) \
                 values ($1, $2, $3, $4, $4, $1) returning id",
            )
            .bind(email.as_str())
            .bind(password_hash)
            .bind(grant.micros())
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict_on_unique)?;
            sqlx::query(members::INSERT_OWNER).bind(id).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Creates an account whose email is not verified yet, without credits (the sign-up
    /// grant comes with verification: `Store::verify_email`), together with the token of the
    /// link to mail it, in one transaction. `Conflict` if the email is taken.
    pub async fn create_unverified_account(
        &self,
        email: &Email,
        password_hash: &str,
        token: &TokenHash,
    ) -> Result<UserId> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let id = sqlx::query_scalar::<_, UserId>(
                "insert into accounts (email, password_hash, balance, created_at, name) values ($1, $2, 0, $3, $1) returning id",
            )
            .bind(email.as_str())
            .bind(password_hash)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict_on_unique)?;
            sqlx::query(members::INSERT_OWNER).bind(id).bind(now).execute(&mut *tx).await?;
            sqlx::query(email_tokens::INSERT_TOKEN)
                .bind(&token.0)
                .bind(id)
                .bind(now)
                .bind(now + email_tokens::TOKEN_LIFETIME_MS)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    /// The person who signs in with this email: only personal rows (a team workspace's
    /// reserved address is nobody's).
    pub async fn account_by_email(&self, email: &Email) -> Result<Option<AccountRow>> {
        let sql = format!(
            "select {ACCOUNT_COLUMNS} from accounts where email = $1 and kind = 'personal'"
        );
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, AccountRow>(&sql)
            .bind(email.as_str())
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn account(&self, id: WorkspaceId) -> Result<AccountRow> {
        let sql = format!("select {ACCOUNT_COLUMNS} from accounts where id = $1");
        on_read!(self, pool => {
            sqlx::query_as::<_, AccountRow>(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound)
        })
    }

    /// Adds credits to a live workspace (by its id, or its founding owner's email); returns
    /// the new settled balance (`NotFound` for a deleted one). The grant and its audit event commit together.
    pub async fn grant_credits(
        &self,
        to: &GrantTo,
        amount: Credits,
        actor: &Actor,
    ) -> Result<Credits> {
        let (id, email) = match to {
            GrantTo::Workspace(id) => (id.0, ""),
            GrantTo::Email(e) => (0, e.as_str()),
        };
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let (account_id, balance) = sqlx::query_as::<_, (WorkspaceId, i64)>(concat!(
                "update accounts set balance = balance + $1 where (id = $2 or email = $3) \
                 and deleted_at is null returning id, cast(balance - ",
                unfolded!("accounts.id"),
                " as bigint)"
            ))
            .bind(amount.micros())
            .bind(id)
            .bind(email)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            let ev = AuditEvent::new(account_id, actor, Action::CreditsGranted)
                .details(serde_json::json!({ "amount": amount.to_string() }));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(Credits::from_micros(balance))
        })
    }
}

/// Where `credits grant` puts the credits.
#[derive(Debug, Clone)]
pub enum GrantTo {
    Workspace(WorkspaceId),
    /// The workspace this person founded (their own), as before workspaces.
    Email(Email),
}
