//! SQL for `api_keys` (the management API's reads and writes by public id: `keys/api.rs`).

mod api;
mod backfill;
mod gateway;
pub(crate) mod group_read;
mod status;

pub use api::{KeyFilter, KeyPage};
pub use gateway::{GatewayKey, GatewaySecret};
pub use status::{KeyState, KeyStatus, KeySwitch, UnknownKeyStatus};

use sqlx::FromRow;
use time::Date;

use super::audit::{insert_audit, AuditEvent};
use super::{conflict_on_unique, on_read, on_write, Result, Store, StoreError};
use crate::domain::audit::{spec_diff, Action, Actor, Target};
use crate::domain::key_form::{name_skeleton, KeySpec};
use crate::domain::public_id::KeyPublicId;
use crate::domain::token::masked;
use crate::domain::{time_util, ApiToken, Credits, KeyId, UserId, WorkspaceId};

/// Turns a live key on or off (`$1` the status, `$2` the key, `$3` the account, `$4` now).
/// Enabling restarts the idle clock too (a key disabled for lack of use works again for its
/// full period).
const SET_STATUS: &str = "update api_keys set status = $1, \
    idle_from = case when $1 = 'active' then $4 else idle_from end \
    where id = $2 and account_id = $3 and status <> 'revoked' returning name";

pub(super) const KEY_COLUMNS: &str =
    "id, account_id, name, token_prefix, token_last4, models, region, daily_limit, \
    monthly_limit, expires_at, status, created_at, revoked_at, last_used_at, spend_day, day_spend, \
    spend_month, month_spend, public_id, rpm_limit, concurrency_limit, disable_after_days, idle_from, \
    created_by";

#[derive(Debug, Clone, FromRow)]
pub struct KeyRow {
    pub id: KeyId,
    pub account_id: WorkspaceId,
    pub name: String,
    pub token_prefix: String,
    pub token_last4: String,
    pub models: KeyModels,
    pub region: Option<String>,
    pub daily_limit: Option<Credits>,
    pub monthly_limit: Option<Credits>,
    pub expires_at: Option<i64>,
    #[sqlx(try_from = "String")]
    pub status: KeyStatus,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub spend_day: i64,
    pub day_spend: Credits,
    pub spend_month: i64,
    pub month_spend: Credits,
    /// `key_…`: the API's name for the key (NULL only for a row an older version inserted,
    /// until the next start's backfill).
    pub public_id: Option<String>,
    pub rpm_limit: Option<i64>,
    pub concurrency_limit: Option<i64>,
    /// Disabled after this many days without use (None: never); see [`KeyRow::state`].
    pub disable_after_days: Option<i64>,
    /// When an owner last restarted the idle clock (Enable, an edit).
    pub idle_from: Option<i64>,
    /// The person who created it (None: through a management key or the CLI). Not read by
    /// the gateway's per-request query (hence `default`: that SQL stays as it was).
    #[sqlx(default)]
    pub created_by: Option<UserId>,
}

impl KeyRow {
    pub fn state(&self, now_ms: i64) -> KeyState {
        match self.status {
            KeyStatus::Revoked => KeyState::Revoked,
            KeyStatus::Disabled => KeyState::Disabled,
            _ if self.expires_at.is_some_and(|e| e <= now_ms) => KeyState::Expired,
            _ if self.idle_until().is_some_and(|at| at <= now_ms) => KeyState::Idle,
            _ => KeyState::Active,
        }
    }

    /// With "disable after N days without use", the instant the key stops: N days after the
    /// latest of its creation, its last use (any secret) and the owner's last Enable or edit.
    /// Derived at request time, like expiry: exact across processes, no job.
    pub fn idle_until(&self) -> Option<i64> {
        let days = self.disable_after_days?;
        let since = self
            .created_at
            .max(self.last_used_at.unwrap_or(i64::MIN))
            .max(self.idle_from.unwrap_or(i64::MIN));
        Some(since.saturating_add(days.saturating_mul(86_400_000)))
    }

    pub fn masked(&self) -> String {
        masked(&self.token_prefix, &self.token_last4)
    }

    pub fn allows_model(&self, id: &str) -> bool {
        self.models.allows(id)
    }

    /// Spend counted against the daily limit at `now_ms` (reservations in flight included).
    pub fn spent_today(&self, now_ms: i64) -> Credits {
        if self.spend_day == time_util::day_number(now_ms) {
            self.day_spend
        } else {
            Credits::ZERO
        }
    }

    pub fn spent_this_month(&self, now_ms: i64) -> Credits {
        if self.spend_month == time_util::month_number(now_ms) {
            self.month_spend
        } else {
            Credits::ZERO
        }
    }

    /// The last day the key works, for display and the edit form.
    pub fn expires_on(&self) -> Option<Date> {
        self.expires_at
            .map(|e| time_util::from_ms(e - 86_400_000).date())
    }

    pub fn spec(&self) -> KeySpec {
        KeySpec {
            name: self.name.clone(),
            models: self.models.iter().map(str::to_owned).collect(),
            region: self.region.clone(),
            daily_limit: self.daily_limit,
            monthly_limit: self.monthly_limit,
            expires_on: self.expires_on(),
            rpm_limit: self.rpm_limit.and_then(|n| u32::try_from(n).ok()),
            concurrency_limit: self.concurrency_limit.and_then(|n| u32::try_from(n).ok()),
            disable_after_days: self.disable_after_days.and_then(|n| u32::try_from(n).ok()),
        }
    }
}

/// A key's models as stored (`api_keys.models`: ids joined by commas; empty: every model).
/// Kept as the stored string rather than parsed into a list: the gateway reads a key on every
/// request and checks one model, so a list would cost an allocation per model per request
/// for nothing. The string stays private; callers see ids only, through [`KeyModels::iter`].
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::Type)]
#[sqlx(transparent)]
pub struct KeyModels(String);

impl KeyModels {
    /// The column as read (the gateway's rusqlite read).
    pub fn from_stored(s: String) -> Self {
        KeyModels(s)
    }

    /// The column as written: a key's chosen ids (none: every model).
    pub fn joined(ids: &[String]) -> Self {
        KeyModels(ids.join(","))
    }

    /// The ids a scoped key may use; none for a key that may use every model.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(',').filter(|m| !m.is_empty())
    }

    /// Every model: no scope.
    pub fn is_all(&self) -> bool {
        self.0.is_empty()
    }

    pub fn allows(&self, id: &str) -> bool {
        self.is_all() || self.0.split(',').any(|m| m == id)
    }

    /// The column's value, to bind.
    pub(crate) fn into_stored(self) -> String {
        self.0
    }
}

pub(super) const INSERT_KEY_SQL: &str = "insert into api_keys (account_id, name, token_hash, token_prefix, \
    token_last4, models, region, daily_limit, monthly_limit, expires_at, created_at, name_skeleton, \
    public_id, rpm_limit, concurrency_limit, created_by, disable_after_days) \
    values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) returning id";

/// A key row about to be inserted ([`INSERT_KEY_SQL`]'s parameters), with a new public id.
pub(super) struct NewKey<'a> {
    pub account_id: WorkspaceId,
    pub spec: &'a KeySpec,
    pub token: &'a ApiToken,
    pub public_id: KeyPublicId,
    pub now: i64,
    /// Who creates it: `created_by` (a person) and the audit event's actor.
    pub actor: &'a Actor,
}

impl<'a> NewKey<'a> {
    pub fn new(
        account_id: WorkspaceId,
        spec: &'a KeySpec,
        token: &'a ApiToken,
        actor: &'a Actor,
    ) -> Self {
        NewKey {
            account_id,
            spec,
            token,
            public_id: KeyPublicId::generate(),
            now: time_util::now_ms(),
            actor,
        }
    }

    /// The person who made it, when a person did (not a management key or the CLI).
    pub fn created_by(&self) -> Option<UserId> {
        self.actor.person()
    }
}

/// Binds a [`NewKey`] to [`INSERT_KEY_SQL`] (a macro: the query types differ per backend).
macro_rules! bind_new_key {
    ($q:expr, $new:expr) => {
        $q.bind($new.account_id)
            .bind(&$new.spec.name)
            .bind(&$new.token.hash().0)
            .bind($new.token.display_prefix())
            .bind($new.token.last_four())
            .bind($crate::store::keys::KeyModels::joined(&$new.spec.models).into_stored())
            .bind($new.spec.region.as_deref())
            .bind($new.spec.daily_limit.map($crate::domain::Credits::micros))
            .bind($new.spec.monthly_limit.map($crate::domain::Credits::micros))
            .bind($new.spec.expires_at_ms())
            .bind($new.now)
            .bind($new.spec.name_skeleton())
            .bind($new.public_id.as_str())
            .bind($new.spec.rpm_limit.map(i64::from))
            .bind($new.spec.concurrency_limit.map(i64::from))
            .bind($new.created_by())
            .bind($new.spec.disable_after_days.map(i64::from))
    };
}
pub(super) use bind_new_key;

/// Inserts a [`NewKey`] and its first secret (`key_secrets`, which the gateway reads by
/// hash) and its audit event on the transaction `$tx`, in the enclosing `async` body (`?`
/// returns its `StoreError`); evaluates to the new key's id. Every way of creating a key goes
/// through it.
macro_rules! insert_new_key {
    ($tx:ident, $new:expr) => {{
        let id: $crate::domain::KeyId = $crate::store::keys::bind_new_key!(
            sqlx::query_scalar::<_, $crate::domain::KeyId>($crate::store::keys::INSERT_KEY_SQL),
            $new
        )
        .fetch_one(&mut *$tx)
        .await
        .map_err($crate::store::conflict_on_unique)?;
        sqlx::query($crate::store::key_secrets::INSERT_SECRET)
            .bind(id)
            .bind(&$new.token.hash().0)
            .bind($new.token.display_prefix())
            .bind($new.token.last_four())
            .bind($new.now)
            .bind($new.created_by())
            .execute(&mut *$tx)
            .await
            .map_err($crate::store::conflict_on_unique)?;
        let ev = $crate::store::audit::AuditEvent::new(
            $new.account_id,
            $new.actor,
            $crate::domain::audit::Action::KeyCreated,
        )
        .target($crate::domain::audit::Target::key(id, &$new.spec.name))
        .details($crate::domain::audit::spec_details($new.spec));
        $crate::store::audit::insert_audit!(&mut *$tx, &ev);
        id
    }};
}
pub(super) use insert_new_key;

/// An update addressed by `id and account_id` changed its row, or there is none for this
/// account (another account's key looks exactly like a missing one).
pub(super) fn one_row(rows_affected: u64) -> Result<()> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

impl Store {
    /// Stores a new key: only the token's hash, prefix and last four characters.
    /// `Conflict` when the account already has a live key of that name, or of a name that
    /// looks the same (same confusable skeleton, see `domain::key_name`).
    pub async fn create_key(
        &self,
        account_id: WorkspaceId,
        spec: &KeySpec,
        token: &ApiToken,
        actor: &Actor,
    ) -> Result<KeyId> {
        let new = NewKey::new(account_id, spec, token, actor);
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let id = insert_new_key!(tx, new);
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Every key of the account, newest first (revoked ones included; the page splits them).
    pub async fn list_keys(&self, account_id: WorkspaceId) -> Result<Vec<KeyRow>> {
        let sql = format!("select {KEY_COLUMNS} from api_keys where account_id = $1 order by created_at desc, id desc");
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, KeyRow>(&sql).bind(account_id).fetch_all(pool).await?
        }))
    }

    /// One key of this account. Another account's key is `NotFound`, exactly like a
    /// missing one, so ids reveal nothing.
    pub async fn key(&self, account_id: WorkspaceId, key_id: KeyId) -> Result<KeyRow> {
        let sql = format!("select {KEY_COLUMNS} from api_keys where id = $1 and account_id = $2");
        on_read!(self, pool => {
            sqlx::query_as::<_, KeyRow>(&sql)
                .bind(key_id)
                .bind(account_id)
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)
        })
    }

    /// Replaces name and scoping of a live key, recording the field-level diff, and with
    /// `switch` turns it on or off: one transaction. Spend counters stay; the idle clock
    /// restarts (an owner just looked after the key). `Conflict` as for
    /// [`Store::create_key`].
    pub async fn update_key(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        spec: &KeySpec,
        switch: Option<KeySwitch>,
        actor: &Actor,
    ) -> Result<()> {
        let select = format!("select {KEY_COLUMNS} from api_keys where id = $1 and account_id = $2 and status <> 'revoked'");
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let old: KeyRow = sqlx::query_as(&select)
                .bind(key_id)
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let done = sqlx::query(
                "update api_keys set name = $1, models = $2, region = $3, daily_limit = $4, monthly_limit = $5, \
                 expires_at = $6, name_skeleton = $9, rpm_limit = $10, concurrency_limit = $11, \
                 disable_after_days = $12, idle_from = $13 \
                 where id = $7 and account_id = $8 and status <> 'revoked'",
            )
            .bind(&spec.name)
            .bind(KeyModels::joined(&spec.models).into_stored())
            .bind(spec.region.as_deref())
            .bind(spec.daily_limit.map(Credits::micros))
            .bind(spec.monthly_limit.map(Credits::micros))
            .bind(spec.expires_at_ms())
            .bind(key_id)
            .bind(account_id)
            .bind(spec.name_skeleton())
            .bind(spec.rpm_limit.map(i64::from))
            .bind(spec.concurrency_limit.map(i64::from))
            .bind(spec.disable_after_days.map(i64::from))
            .bind(time_util::now_ms())
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique)?
            .rows_affected();
            one_row(done)?;
            let ev = AuditEvent::new(account_id, actor, Action::KeyEdited)
                .target(Target::key(key_id, &spec.name))
                .details(spec_diff(&old.spec(), spec));
            insert_audit!(&mut *tx, &ev);
            if let Some(switch) = switch {
                sqlx::query(SET_STATUS)
                    .bind(switch.status().as_str())
                    .bind(key_id)
                    .bind(account_id)
                    .bind(time_util::now_ms())
                    .fetch_one(&mut *tx)
                    .await?;
                let ev = AuditEvent::new(account_id, actor, switch.action())
                    .target(Target::key(key_id, &spec.name));
                insert_audit!(&mut *tx, &ev);
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn set_key_status(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        switch: KeySwitch,
        actor: &Actor,
    ) -> Result<()> {
        self.key_change(
            account_id,
            key_id,
            actor,
            switch.action(),
            SET_STATUS,
            switch.status().as_str().to_owned(),
        )
        .await
    }

    /// Revokes for good. Committed before the dashboard answers, and the gateway reads key
    /// state from the database on every request, so the next request fails.
    pub async fn revoke_key(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        actor: &Actor,
    ) -> Result<()> {
        self.key_change(
            account_id,
            key_id,
            actor,
            Action::KeyDeleted,
            "update api_keys set status = $1, revoked_at = $4 where id = $2 and account_id = $3 \
             and status <> 'revoked' returning name",
            KeyStatus::Revoked.as_str().to_owned(),
        )
        .await
    }

    /// One `update … returning name` of a live key (`$1` the value, `$2` the key, `$3` the
    /// account, `$4` now: each must be used, PostgreSQL cannot type an unused parameter) and
    /// its audit event, in one transaction.
    async fn key_change(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        actor: &Actor,
        action: Action,
        sql: &str,
        value: String,
    ) -> Result<()> {
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let name: String = sqlx::query_scalar(sql)
                .bind(value)
                .bind(key_id)
                .bind(account_id)
                .bind(time_util::now_ms())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let ev = AuditEvent::new(account_id, actor, action).target(Target::key(key_id, &name));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod models_tests {
    use super::KeyModels;

    #[test]
    fn stored_models_read_as_ids() {
        let scoped = KeyModels::joined(&["a/x".into(), "b/y".into()]);
        assert_eq!(scoped.iter().collect::<Vec<_>>(), ["a/x", "b/y"]);
        assert!(scoped.allows("b/y") && !scoped.allows("b") && !scoped.is_all());
        assert_eq!(
            scoped.into_stored(),
            "a/x,b/y",
            "the stored form is unchanged"
        );
        let all = KeyModels::joined(&[]);
        assert!(all.is_all() && all.allows("any/model") && all.iter().next().is_none());
    }
}
