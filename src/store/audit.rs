//! SQL for `audit_events`: append-only. Events are inserted inside the transaction of the
//! change they record ([`insert_audit!`]); nothing here updates a row (a trigger refuses it
//! too), and rows are deleted only by age ([`Store::purge_audit_before`], the retention job).

use crate::domain::ids::WorkspaceId;
use serde_json::Value;
use sqlx::FromRow;

use super::{on_read, on_write, Result, Store};
pub use crate::domain::audit::AuditFilter;
use crate::domain::audit::{Action, Actor, Target};
use crate::domain::time_util;

/// One event about to be written.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// The workspace.
    pub account_id: WorkspaceId,
    pub actor: Actor,
    pub action: Action,
    pub target: Option<Target>,
    pub details: Value,
    pub at: i64,
}

impl AuditEvent {
    pub fn new(account_id: WorkspaceId, actor: &Actor, action: Action) -> AuditEvent {
        AuditEvent {
            account_id,
            actor: actor.clone(),
            action,
            target: None,
            details: Value::Object(Default::default()),
            at: time_util::now_ms(),
        }
    }

    pub fn target(mut self, target: Target) -> AuditEvent {
        self.target = Some(target);
        self
    }

    pub fn details(mut self, details: Value) -> AuditEvent {
        self.details = details;
        self
    }
}

pub(crate) const INSERT_AUDIT: &str = "insert into audit_events (account_id, at, actor_kind, \
    actor_id, actor_label, action, target_kind, target_id, target_label, details, client_addr, \
    user_agent) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// Inserts an [`AuditEvent`] on `$exec` (a transaction, so the event commits with the change
/// it records), in an enclosing `async` body whose `?` returns a `StoreError`.
macro_rules! insert_audit {
    ($exec:expr, $ev:expr) => {{
        let ev: &$crate::store::audit::AuditEvent = $ev;
        sqlx::query($crate::store::audit::INSERT_AUDIT)
            .bind(ev.account_id)
            .bind(ev.at)
            .bind(ev.actor.kind.as_str())
            .bind(ev.actor.id)
            .bind(&ev.actor.label)
            .bind(ev.action.as_str())
            .bind(ev.target.as_ref().map(|t| t.kind))
            .bind(ev.target.as_ref().and_then(|t| t.id))
            .bind(ev.target.as_ref().map(|t| t.label.as_str()))
            .bind(ev.details.to_string())
            .bind(ev.actor.client_addr.as_deref())
            .bind(ev.actor.user_agent.as_deref())
            .execute($exec)
            .await?;
    }};
}
pub(crate) use insert_audit;

/// A stored event, with the public id of its key or management key target.
#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor_kind: String,
    pub actor_id: Option<i64>,
    pub actor_label: String,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<i64>,
    pub target_label: Option<String>,
    /// `key_…` or `mk_…` when the target is one.
    pub target_public_id: Option<String>,
    pub details: String,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

pub struct AuditPage {
    pub events: Vec<AuditRow>,
    /// The `before` of the next (older) page; None on the last page.
    pub next: Option<i64>,
}

fn like_pattern(s: &str) -> String {
    let escaped = s
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

impl Store {
    /// Writes one event on its own (a change with no other row: a login, a failed login).
    pub async fn record_audit(&self, ev: &AuditEvent) -> Result<()> {
        on_write!(self, pool => {
            insert_audit!(pool, ev);
            Ok(())
        })
    }

    /// A page of the workspace's events, newest first. Every parameter is bound (empty or
    /// sentinel for "no filter"), so the SQL text is one.
    pub async fn audit_page(&self, account_id: WorkspaceId, f: &AuditFilter) -> Result<AuditPage> {
        let sql = "select a.id, a.at, a.actor_kind, a.actor_id, a.actor_label, a.action, \
             a.target_kind, a.target_id, a.target_label, \
             coalesce(k.public_id, m.public_id) as target_public_id, \
             a.details, a.client_addr, a.user_agent \
             from audit_events a \
             left join api_keys k on a.target_kind = 'key' and k.id = a.target_id \
             left join management_keys m on a.target_kind = 'management_key' and m.id = a.target_id \
             where a.account_id = $1 \
             and ($2 = '' or lower(a.actor_label) like $2 escape '\\') \
             and ($3 = '' or a.action = $3) \
             and ($4 = 0 or (a.target_kind = 'key' and a.target_id = $4)) \
             and a.at >= $5 and a.at < $6 and a.id < $7 \
             order by a.id desc limit $8";
        let limit = i64::from(f.limit.max(1));
        let mut events = on_read!(self, pool => {
            sqlx::query_as::<_, AuditRow>(sql)
                .bind(account_id)
                .bind(f.actor.as_deref().map(like_pattern).unwrap_or_default())
                .bind(f.action.map(Action::as_str).unwrap_or(""))
                .bind(f.key_id.map_or(0, |k| k.0))
                .bind(f.from.unwrap_or(i64::MIN))
                .bind(f.until.unwrap_or(i64::MAX))
                .bind(f.before.unwrap_or(i64::MAX))
                .bind(limit + 1)
                .fetch_all(pool)
                .await?
        });
        let next = if events.len() as i64 > limit {
            events.truncate(limit as usize);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(AuditPage { events, next })
    }

    /// Every event the filter selects (its `before` ignored), newest first, as a stream of
    /// pages of `f.limit` events: the CSV export.
    pub fn stream_audit(
        &self,
        account_id: WorkspaceId,
        f: AuditFilter,
    ) -> futures_util::stream::BoxStream<'static, Result<Vec<AuditRow>>> {
        let store = self.clone();
        super::pages::keyset_pages(move |before: Option<i64>| {
            let store = store.clone();
            let f = AuditFilter {
                before,
                ..f.clone()
            };
            async move {
                let page = store.audit_page(account_id, &f).await?;
                Ok((page.events, page.next))
            }
        })
    }

    /// The retention job: deletes events older than `cutoff` (unix ms). The only statement
    /// that removes audit rows.
    pub async fn purge_audit_before(&self, cutoff: i64) -> Result<u64> {
        Ok(on_write!(self, pool => {
            sqlx::query("delete from audit_events where at < $1")
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}
