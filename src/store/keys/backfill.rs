//! Fills columns that rows from before a migration, or written by a previous version during
//! a rolling upgrade, lack: public ids and name skeletons (run at every start).

use super::name_skeleton;
use crate::domain::public_id::KeyPublicId;
use crate::store::{conflict_on_unique, on_write, Result, Store, StoreError};

impl Store {
    /// Gives every key without a public id one: rows a previous version inserted during a
    /// rolling upgrade (migration 0012 covers the rows that existed then). Idempotent, and
    /// safe to run from several processes at once.
    pub(crate) async fn backfill_public_ids(&self) -> Result<()> {
        let ids: Vec<i64> = on_write!(self, pool => {
            sqlx::query_scalar("select id from api_keys where public_id is null order by id")
                .fetch_all(pool)
                .await?
        });
        for id in ids {
            on_write!(self, pool => {
                sqlx::query("update api_keys set public_id = $1 where id = $2 and public_id is null")
                    .bind(KeyPublicId::generate().as_str())
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(|_| ())?
            });
        }
        Ok(())
    }

    /// Fills `name_skeleton` where it is missing: rows from before migration 0007, or written
    /// by a previous version during a rolling upgrade. A live key that looks like an older
    /// live key of its account keeps its name and gets a marked skeleton (see the migration).
    /// Idempotent, and safe to run from several processes at once.
    pub(crate) async fn backfill_name_skeletons(&self) -> Result<()> {
        let rows: Vec<(i64, String)> = on_write!(self, pool => {
            sqlx::query_as("select id, name from api_keys where name_skeleton is null order by id")
                .fetch_all(pool)
                .await?
        });
        for (id, name) in rows {
            let skeleton = name_skeleton(&name);
            let marked = format!("{skeleton}\u{1}{id}");
            for value in [skeleton, marked] {
                let set = on_write!(self, pool => {
                    sqlx::query("update api_keys set name_skeleton = $1 where id = $2 and name_skeleton is null")
                        .bind(&value)
                        .bind(id)
                        .execute(pool)
                        .await
                        .map(|_| ())
                        .map_err(conflict_on_unique)
                });
                match set {
                    Err(StoreError::Conflict) => continue,
                    other => {
                        other?;
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}
