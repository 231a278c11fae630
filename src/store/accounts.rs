//! SQL for `accounts`.

use sqlx::FromRow;

use super::{conflict_on_unique, on_read, on_write, Result, Store, StoreError};
use crate::domain::{time_util, Credits, Email};

#[derive(Debug, Clone, FromRow)]
pub struct AccountRow {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub balance: i64,
    pub reserved: i64,
}

impl AccountRow {
    /// What can be spent now: settled balance minus what requests in flight hold.
    pub fn available(&self) -> Credits {
        Credits::from_micros(self.balance - self.reserved)
    }
}

impl Store {
    /// Creates an account with its sign-up grant. `Conflict` if the email is taken.
    pub async fn create_account(
        &self,
        email: &Email,
        password_hash: &str,
        grant: Credits,
    ) -> Result<i64> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "insert into accounts (email, password_hash, balance, created_at) values ($1, $2, $3, $4) returning id",
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

    pub async fn account_by_email(&self, email: &Email) -> Result<Option<AccountRow>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, AccountRow>(
                "select id, email, password_hash, balance, reserved from accounts where email = $1",
            )
            .bind(email.as_str())
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn account(&self, id: i64) -> Result<AccountRow> {
        on_read!(self, pool => {
            sqlx::query_as::<_, AccountRow>(
                "select id, email, password_hash, balance, reserved from accounts where id = $1",
            )
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
