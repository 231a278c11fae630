//! SQL for `accounts`.

use sqlx::FromRow;

use super::{conflict_on_unique, email_tokens, on_read, on_write, Result, Store, StoreError};
use crate::domain::{time_util, Credits, Email, TokenHash};

#[derive(Debug, Clone, FromRow)]
pub struct AccountRow {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub balance: i64,
    pub reserved: i64,
    /// When the account proved its email address; `None` only for an account that signed
    /// up with `require_email_verification` on and has not yet opened its link.
    pub email_verified_at: Option<i64>,
}

/// The columns of [`AccountRow`].
const ACCOUNT_COLUMNS: &str = "id, email, password_hash, balance, reserved, email_verified_at";

impl AccountRow {
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    /// What can be spent now: settled balance minus what requests in flight hold.
    pub fn available(&self) -> Credits {
        Credits::from_micros(self.balance - self.reserved)
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
    ) -> Result<i64> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "insert into accounts (email, password_hash, balance, created_at, email_verified_at) \
                 values ($1, $2, $3, $4, $4) returning id",
            )
            .bind(email.as_str())
            .bind(password_hash)
            .bind(grant.micros())
            .bind(now)
            .fetch_one(pool)
            .await
            .map_err(conflict_on_unique)
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
    ) -> Result<i64> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let id = sqlx::query_scalar::<_, i64>(
                "insert into accounts (email, password_hash, balance, created_at) values ($1, $2, 0, $3) returning id",
            )
            .bind(email.as_str())
            .bind(password_hash)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict_on_unique)?;
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

    pub async fn account_by_email(&self, email: &Email) -> Result<Option<AccountRow>> {
        let sql = format!("select {ACCOUNT_COLUMNS} from accounts where email = $1");
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, AccountRow>(&sql)
            .bind(email.as_str())
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn account(&self, id: i64) -> Result<AccountRow> {
        let sql = format!("select {ACCOUNT_COLUMNS} from accounts where id = $1");
        on_read!(self, pool => {
            sqlx::query_as::<_, AccountRow>(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound)
        })
    }

    /// Adds credits; returns the new settled balance.
    pub async fn grant_credits(&self, email: &Email, amount: Credits) -> Result<Credits> {
        on_write!(self, pool => {
            sqlx::query_scalar::<_, i64>("update accounts set balance = balance + $1 where email = $2 returning balance")
                .bind(amount.micros())
                .bind(email.as_str())
                .fetch_optional(pool)
                .await?
                .map(Credits::from_micros)
                .ok_or(StoreError::NotFound)
        })
    }
}
