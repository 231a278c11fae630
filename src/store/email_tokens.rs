//! SQL for `email_verification_tokens`: the links that verify an account's email address
//! (migration 0010). Only a token's SHA-256 is stored; a token is used once and expires after
//! [`TOKEN_LIFETIME_MS`]. The rows also count the mail sent to an account, which is how
//! resends are limited (per minute and per day) on every process sharing the database.
//!
//! Lock order: verification locks its token row, then the account row; a resend locks the
//! account row, then inserts. Neither waits for a row the other holds first.

use crate::domain::ids::WorkspaceId;
use std::time::Duration;

use super::{on_read, on_write, Result, Store, StoreError};
use crate::domain::{Credits, TokenHash};

/// A link works for 24 hours.
pub const TOKEN_LIFETIME_MS: i64 = 24 * 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// Rows are deleted this long after they expired; until then an old link is answered
/// "expired" rather than "unknown".
const KEEP_EXPIRED_MS: i64 = 7 * DAY_MS;

/// Binds: token hash, account id, created at, expires at.
pub(super) const INSERT_TOKEN: &str = "insert into email_verification_tokens \
    (token_hash, account_id, created_at, expires_at) values ($1, $2, $3, $4)";

/// What a link's token can do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Never issued (or deleted a week after it expired).
    Unknown,
    /// Its account is verified already (through this link or another).
    AccountVerified,
    Used,
    Expired,
    /// Unused, unexpired, its account still unverified: it would verify it.
    Valid,
}

/// The result of opening a link's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The account is verified now, and was granted this much.
    Verified {
        account_id: WorkspaceId,
        granted: Credits,
    },
    /// The token did nothing; why.
    Refused(TokenState),
}

/// Limits on verification mail per account.
#[derive(Debug, Clone, Copy)]
pub struct MailBudget {
    /// At least this long between two mails.
    pub interval: Duration,
    /// At most this many per 24 hours.
    pub per_day: u32,
}

/// The result of asking for another link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// Stored: mail the token.
    Issued,
    AlreadyVerified,
    /// The last mail went out less than the interval ago: this long to wait.
    TooSoon(Duration),
    /// The day's budget is spent: this long until the oldest mail of the day leaves it.
    DailyLimit(Duration),
}

fn wait_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0).max(1000))
}

impl Store {
    /// What `token` can do, without changing anything (the confirmation page's GET).
    pub async fn verification_token_state(
        &self,
        token: &TokenHash,
        now: i64,
    ) -> Result<TokenState> {
        let row: Option<(i64, Option<i64>, Option<i64>)> = on_read!(self, pool => {
            sqlx::query_as(
                "select t.expires_at, t.used_at, a.email_verified_at \
                 from email_verification_tokens t join accounts a on a.id = t.account_id \
                 where t.token_hash = $1",
            )
            .bind(&token.0)
            .fetch_optional(pool)
            .await?
        });
        Ok(match row {
            None => TokenState::Unknown,
            Some((_, _, Some(_))) => TokenState::AccountVerified,
            Some((_, Some(_), None)) => TokenState::Used,
            Some((expires_at, None, None)) if expires_at <= now => TokenState::Expired,
            Some(_) => TokenState::Valid,
        })
    }

    /// Uses `token`: marks its account verified and grants it `grant` (the sign-up grant,
    /// held back until now), and marks every other link of the account used, in one
    /// transaction. A token that cannot do that changes nothing and says why.
    pub async fn verify_email(
        &self,
        token: &TokenHash,
        now: i64,
        grant: Credits,
    ) -> Result<Verification> {
        let account: Option<WorkspaceId> = on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let account = sqlx::query_scalar::<_, WorkspaceId>(
                "update email_verification_tokens set used_at = $1 \
                 where token_hash = $2 and used_at is null and expires_at > $1 returning account_id",
            )
            .bind(now)
            .bind(&token.0)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = account {
                let verified = sqlx::query(
                    "update accounts set email_verified_at = $1, balance = balance + $2 \
                     where id = $3 and email_verified_at is null",
                )
                .bind(now)
                .bind(grant.micros())
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if verified == 0 {
                    // Verified meanwhile through another link: nothing to do.
                    tx.rollback().await?;
                    return Ok(Verification::Refused(TokenState::AccountVerified));
                }
                sqlx::query(
                    "update email_verification_tokens set used_at = $1 where account_id = $2 and used_at is null",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            account
        });
        match account {
            Some(account_id) => Ok(Verification::Verified {
                account_id,
                granted: grant,
            }),
            None => Ok(Verification::Refused(
                self.verification_token_state(token, now).await?,
            )),
        }
    }

    /// Stores another link for an unverified account, within `budget` (counted from the
    /// rows of the last 24 hours, the sign-up's own included). The account row is locked
    /// first, so concurrent requests of one account are counted one after the other.
    pub async fn issue_verification_token(
        &self,
        account_id: WorkspaceId,
        token: &TokenHash,
        now: i64,
        budget: MailBudget,
    ) -> Result<Issue> {
        let interval_ms = i64::try_from(budget.interval.as_millis()).unwrap_or(i64::MAX);
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let verified_at = sqlx::query_scalar::<_, Option<i64>>(
                "update accounts set email_verified_at = email_verified_at where id = $1 returning email_verified_at",
            )
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            if verified_at.is_some() {
                tx.rollback().await?;
                return Ok(Issue::AlreadyVerified);
            }
            // Newest first.
            let sent: Vec<i64> = sqlx::query_scalar(
                "select created_at from email_verification_tokens \
                 where account_id = $1 and created_at > $2 order by created_at desc",
            )
            .bind(account_id)
            .bind(now - DAY_MS)
            .fetch_all(&mut *tx)
            .await?;
            let refusal = match (sent.first(), sent.last()) {
                (Some(&newest), _) if now - newest < interval_ms => {
                    Some(Issue::TooSoon(wait_ms(newest + interval_ms - now)))
                }
                (_, Some(&oldest)) if sent.len() >= budget.per_day as usize => {
                    Some(Issue::DailyLimit(wait_ms(oldest + DAY_MS - now)))
                }
                _ => None,
            };
            if let Some(refusal) = refusal {
                tx.rollback().await?;
                return Ok(refusal);
            }
            sqlx::query(INSERT_TOKEN)
                .bind(&token.0)
                .bind(account_id)
                .bind(now)
                .bind(now + TOKEN_LIFETIME_MS)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Issue::Issued)
        })
    }

    /// Deletes links a week past their expiry (housekeeping).
    pub async fn purge_old_verification_tokens(&self, now: i64) -> Result<u64> {
        Ok(on_write!(self, pool => {
            sqlx::query("delete from email_verification_tokens where expires_at < $1")
                .bind(now - KEEP_EXPIRED_MS)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}
