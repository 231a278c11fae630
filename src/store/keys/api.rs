//! The management API's reads of `api_keys`: by public id, and a filtered keyset page.

use super::{KeyRow, KEY_COLUMNS};
use crate::domain::ids::WorkspaceId;
use crate::domain::public_id::KeyPublicId;
use crate::store::{on_read, Result, Store, StoreError};

/// A page request: filters and where the previous page ended.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    /// `active`, `disabled`, `expired` or `revoked` (checked at the edge); None: all.
    pub status: Option<&'static str>,
    /// Exact name; None: all.
    pub name: Option<String>,
    /// The last key of the previous page; the page holds older keys.
    pub after: Option<KeyPublicId>,
    pub limit: u32,
}

pub struct KeyPage {
    pub keys: Vec<KeyRow>,
    /// The cursor of the next page (its last key's public id), None on the last page.
    pub next: Option<String>,
}

impl Store {
    /// One key of this account by public id; another account's key is `NotFound`.
    pub async fn key_by_public_id(
        &self,
        account_id: WorkspaceId,
        id: &KeyPublicId,
    ) -> Result<KeyRow> {
        let sql =
            format!("select {KEY_COLUMNS} from api_keys where public_id = $1 and account_id = $2");
        on_read!(self, pool => {
            sqlx::query_as::<_, KeyRow>(&sql)
                .bind(id.as_str())
                .bind(account_id)
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)
        })
    }

    /// Newest first, keyset-paginated on the id (creation order), never offsets. Every
    /// parameter is bound (empty strings for "no filter"), so the SQL text is one.
    pub async fn key_page(
        &self,
        account_id: WorkspaceId,
        f: &KeyFilter,
        now_ms: i64,
    ) -> Result<KeyPage> {
        // `KeyRow::state` in SQL: revoked, disabled (by the owner, or idle past its
        // "disable after N days without use"), expired, active.
        let live = "status = 'active' and (expires_at is null or expires_at > $4)";
        let idle = "(disable_after_days is not null \
            and created_at + disable_after_days * 86400000 <= $4 \
            and coalesce(last_used_at, 0) + disable_after_days * 86400000 <= $4 \
            and coalesce(idle_from, 0) + disable_after_days * 86400000 <= $4)";
        let sql = format!(
            "select {KEY_COLUMNS} from api_keys where account_id = $1 \
             and ($2 = '' or name = $2) \
             and ($3 = '' \
                  or ($3 = 'revoked' and status = 'revoked') \
                  or ($3 = 'disabled' and (status = 'disabled' or ({live} and {idle}))) \
                  or ($3 = 'active' and {live} and not {idle}) \
                  or ($3 = 'expired' and status = 'active' and expires_at <= $4)) \
             and ($5 = '' or id < (select c.id from api_keys c where c.public_id = $5 and c.account_id = $1)) \
             order by id desc limit $6"
        );
        let limit = i64::from(f.limit);
        let mut keys = on_read!(self, pool => {
            sqlx::query_as::<_, KeyRow>(&sql)
                .bind(account_id)
                .bind(f.name.as_deref().unwrap_or(""))
                .bind(f.status.unwrap_or(""))
                .bind(now_ms)
                .bind(f.after.as_ref().map_or("", KeyPublicId::as_str))
                .bind(limit + 1)
                .fetch_all(pool)
                .await?
        });
        let more = keys.len() > f.limit as usize;
        keys.truncate(f.limit as usize);
        let next = if more {
            keys.last().and_then(|k| k.public_id.clone())
        } else {
            None
        };
        Ok(KeyPage { keys, next })
    }
}
