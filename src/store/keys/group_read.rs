//! PostgreSQL: the key reads of concurrent requests share one query, the read side of the
//! usage batch's group commit. Under load most of a request's database cost was its own
//! round trip for the key (parse, plan, a three-way join, the reply, and sqlx's work on both
//! ends); many requests in flight at once use the same key or a few, so one
//! `token_hash = any($1)` query answers all of them.
//!
//! Exactness is unchanged: a request's lookup is queued before the query that answers it is
//! sent, so that query's snapshot is taken after the request arrived and sees every
//! revocation, disable or retirement committed before it (no cache, as before). At one
//! connection every lookup gets a query of its own at once ([`IN_FLIGHT`] are allowed); only
//! while they are all busy do lookups wait, and then for at most one query's time.
//!
//! One bad request never fails another's: if a shared query fails, each of its requests
//! reads alone and gets its own answer ([`Store::gateway_key_alone`]).

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{FromRow, PgPool, Row};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::gateway::GATEWAY_KEYS_SQL;
use super::GatewayKey;
use crate::domain::token::TokenHash;
use crate::store::{Result, Store};

/// Shared queries in flight at once; lookups that arrive while all are busy join the next.
const IN_FLIGHT: usize = 4;
/// Most distinct lookups answered by one query.
const MAX_BATCH: usize = 256;
/// Lookups waiting for a query before new ones wait for room (backpressure).
const QUEUE: usize = 4096;

/// `None`: the shared query failed, read alone.
type Answer = Option<Option<GatewayKey>>;

struct Lookup {
    hash: String,
    reply: oneshot::Sender<Answer>,
}

/// The queue of key lookups and the task that answers them (one per PostgreSQL store).
/// Without a queue (`LOWROUTER_KEY_READS=alone`, for comparison in the benchmarks), each
/// request reads alone.
pub(crate) struct KeyReads {
    tx: Option<mpsc::Sender<Lookup>>,
}

impl KeyReads {
    /// Starts the dispatcher; it ends when the store is dropped.
    pub(crate) fn start(pool: PgPool) -> Self {
        if std::env::var("LOWROUTER_KEY_READS").as_deref() == Ok("alone") {
            return KeyReads { tx: None };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(dispatch(pool, rx));
        KeyReads { tx: Some(tx) }
    }

    /// The key behind `hash`, read by a query sent after this call began.
    pub(crate) async fn read(&self, pool: &PgPool, hash: &TokenHash) -> Result<Option<GatewayKey>> {
        if let Some(tx) = &self.tx {
            let (reply, answer) = oneshot::channel();
            let lookup = Lookup {
                hash: hash.0.clone(),
                reply,
            };
            if tx.send(lookup).await.is_ok() {
                if let Ok(Some(key)) = answer.await {
                    return Ok(key);
                }
            }
        }
        Store::gateway_key_alone(pool, hash).await
    }
}

/// Takes what is queued as one batch whenever a query slot is free.
async fn dispatch(pool: PgPool, mut rx: mpsc::Receiver<Lookup>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        crate::metrics::key_read_batch(batch.len());
        let pool = pool.clone();
        tokio::spawn(async move {
            answer(&pool, batch).await;
            drop(slot);
        });
    }
}

/// Answers a batch with one query (each distinct hash once).
async fn answer(pool: &PgPool, batch: Vec<Lookup>) {
    let mut hashes: Vec<&str> = batch.iter().map(|l| l.hash.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let found = match query(pool, &hashes).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, lookups = batch.len(), "shared key read failed; reading alone");
            for lookup in batch {
                let _ = lookup.reply.send(None);
            }
            return;
        }
    };
    for lookup in batch {
        let key = found.get(&lookup.hash).cloned();
        let _ = lookup.reply.send(Some(key));
    }
}

async fn query(pool: &PgPool, hashes: &[&str]) -> Result<HashMap<String, GatewayKey>> {
    let rows = sqlx::query(GATEWAY_KEYS_SQL)
        .bind(hashes)
        .fetch_all(pool)
        .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let hash: String = row.try_get("secret_hash")?;
        found.insert(hash, GatewayKey::from_row(&row)?);
    }
    Ok(found)
}
