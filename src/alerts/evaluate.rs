//! The evaluator: wakes when a usage batch was applied ([`super::Feed`]) and checks the
//! touched keys and workspaces. Its reads are the rollups and indexed usage ranges; a
//! key's 14-day median hour is cached for ten minutes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{watch, Notify};

use super::event::emit;
use super::{Feed, KeyTouch};
use crate::domain::audit::Actor;
use crate::domain::{time_util, Credits, KeyId, WorkspaceId};
use crate::store::keys::{KeyRow, KeyStatus, KeySwitch};
use crate::store::{Result, Store};

const HOUR_MS: i64 = 3_600_000;
/// Shortest time between two rounds. Under load a batch is applied every millisecond or
/// so; a round per batch made the evaluator a steady stream of queries beside the gateway's
/// own. Touches collected meanwhile are coalesced into the next round, so an alert (and a
/// spike's auto-disable) is at most this late.
const MIN_ROUND: Duration = Duration::from_millis(250);
/// (key, model) and (key, network) pairs already settled (used before, or told): most
/// rounds see the same few again, and each would cost a query.
const KNOWN_MAX: usize = 100_000;

/// What the evaluator has settled already in this process (see [`KNOWN_MAX`]).
#[derive(Default)]
struct Known {
    models: HashSet<(KeyId, String)>,
    networks: HashSet<(KeyId, String)>,
}
/// Hours in the spike's baseline.
const BASELINE_HOURS: i64 = 14 * 24;
const MEDIAN_TTL: Duration = Duration::from_secs(600);
const THRESHOLDS: [i64; 3] = [50, 80, 100];

pub async fn run(
    store: Store,
    feed: Arc<Feed>,
    outbox: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut medians: HashMap<KeyId, (Instant, i64)> = HashMap::new();
    let mut known = Known::default();
    loop {
        tokio::select! {
            _ = feed.wake.notified() => {}
            _ = stop.changed() => return,
        }
        let round = Instant::now();
        if known.models.len() + known.networks.len() > KNOWN_MAX {
            known = Known::default();
        }
        let (touched, dead) = feed.take();
        for (secret_id, d) in dead {
            if let Err(e) = dead_use(&store, secret_id, &d).await {
                tracing::warn!(key_id = %d.key_id, error = %e, "dead secret alert failed");
            }
        }
        // The hours' spend first, so this round's spike checks count it.
        let mut hourly: Vec<(WorkspaceId, KeyId, i64, i64)> = touched
            .iter()
            .flat_map(|(key, t)| t.hourly.iter().map(|(h, c)| (t.account_id, *key, *h, *c)))
            .collect();
        // One lock order for every process's upserts (no deadlocks between them).
        hourly.sort_unstable_by_key(|&(_, key, hour, _)| (key, hour));
        if let Err(e) = store.add_hourly_spend(&hourly).await {
            // Only the spike check's history misses it; money is the usage batch's.
            tracing::warn!(error = %e, "hourly spend for alerts not recorded");
        }
        let mut accounts = HashSet::new();
        for (key_id, touch) in touched {
            accounts.insert(touch.account_id);
            if let Err(e) = evaluate_key(&store, key_id, &touch, &mut medians, &mut known).await {
                tracing::warn!(key_id = %key_id, error = %e, "alert evaluation failed");
            }
        }
        for account_id in accounts {
            if let Err(e) = evaluate_balance(&store, account_id).await {
                tracing::warn!(account_id = %account_id, error = %e, "balance alert evaluation failed");
            }
        }
        medians.retain(|_, (at, _)| at.elapsed() < MEDIAN_TTL);
        outbox.notify_one();
        tokio::select! {
            _ = tokio::time::sleep(MIN_ROUND.saturating_sub(round.elapsed())) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn evaluate_key(
    store: &Store,
    key_id: KeyId,
    touch: &KeyTouch,
    medians: &mut HashMap<KeyId, (Instant, i64)>,
    known: &mut Known,
) -> Result<()> {
    let account_id = touch.account_id;
    let key = match store.key(account_id, key_id).await {
        Ok(k) => k,
        Err(crate::store::StoreError::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let now = time_util::now_ms();
    thresholds(store, &key, touch, now).await?;
    spike(store, &key, now, medians).await?;
    let today = time_util::day_number(now);
    for model in &touch.models {
        let pair = (key_id, model.clone());
        if known.models.contains(&pair) {
            continue;
        }
        if !store
            .model_used_before(account_id, key_id, model, today)
            .await?
        {
            let dedupe = format!("model:{key_id}:{model}");
            emit(
                store,
                account_id,
                Some(&key),
                "model.first_use",
                &dedupe,
                json!({"model": model}),
            )
            .await?;
        }
        known.models.insert(pair);
    }
    for network in &touch.networks {
        let pair = (key_id, network.clone());
        if known.networks.contains(&pair) {
            continue;
        }
        if store.note_key_network(key_id, network).await? {
            let dedupe = format!("network:{key_id}:{network}");
            emit(
                store,
                account_id,
                Some(&key),
                "network.new",
                &dedupe,
                json!({"network": network}),
            )
            .await?;
        }
        known.networks.insert(pair);
    }
    Ok(())
}

/// 50/80/100% of the daily and monthly limits, each once per period. A request refused at
/// a limit counts as 100% (spend itself stops short of it: holds are worst cases).
async fn thresholds(store: &Store, key: &KeyRow, touch: &KeyTouch, now: i64) -> Result<()> {
    let today = time_util::day_number(now);
    let month_first_day = time_util::day_number(month_start_ms(now));
    let periods = [
        (
            "day",
            key.daily_limit,
            today,
            today,
            touch.day_limit_refused,
            today,
        ),
        (
            "month",
            key.monthly_limit,
            month_first_day,
            today,
            touch.month_limit_refused,
            time_util::month_number(now),
        ),
    ];
    for (period, limit, from, to, refused, period_no) in periods {
        let Some(limit) = limit.map(Credits::micros).filter(|l| *l > 0) else {
            continue;
        };
        let spent = store
            .key_spend_days(key.account_id, key.id, from, to)
            .await?;
        let percent = if refused {
            100
        } else {
            (i128::from(spent) * 100 / i128::from(limit)) as i64
        };
        for t in THRESHOLDS.into_iter().filter(|t| percent >= *t) {
            let dedupe = format!("limit:{}:{period}:{period_no}:{t}", key.id);
            let details = json!({"period": period, "percent": t, "limit": limit, "spent": spent});
            emit(
                store,
                key.account_id,
                Some(key),
                "limit.threshold",
                &dedupe,
                details,
            )
            .await?;
        }
    }
    Ok(())
}

/// Spend in the last hour above the floor and above k x the median hour of the 14 days
/// before it; with the key's auto-disable on, the key is disabled (the next request gets 401).
async fn spike(
    store: &Store,
    key: &KeyRow,
    now: i64,
    medians: &mut HashMap<KeyId, (Instant, i64)>,
) -> Result<()> {
    let settings = store.alert_settings(key.account_id).await?;
    // The last 60 minutes from hour buckets: this hour so far, and the part of the previous
    // hour still inside the window (its spend taken as even across it).
    let this_hour = now / HOUR_MS;
    let spent = store
        .key_hourly_spend(key.account_id, key.id, this_hour - 1, this_hour + 1)
        .await?;
    let of = |h: i64| spent.iter().find(|(x, _)| *x == h).map_or(0, |(_, c)| *c);
    let left_of_previous = HOUR_MS - now % HOUR_MS;
    let last_hour = of(this_hour)
        + i64::try_from(
            i128::from(of(this_hour - 1)) * i128::from(left_of_previous) / i128::from(HOUR_MS),
        )
        .unwrap_or(i64::MAX);
    if last_hour <= settings.spike_floor {
        return Ok(());
    }
    let median = match medians.get(&key.id) {
        Some((at, m)) if at.elapsed() < MEDIAN_TTL => *m,
        _ => {
            let hours = store
                .key_hourly_spend(
                    key.account_id,
                    key.id,
                    this_hour - 1 - BASELINE_HOURS,
                    this_hour - 1,
                )
                .await?;
            let m = median_hour(hours.into_iter().map(|(_, c)| c).collect());
            medians.insert(key.id, (Instant::now(), m));
            m
        }
    };
    if i128::from(last_hour) <= i128::from(settings.spike_factor) * i128::from(median) {
        return Ok(());
    }
    let auto =
        key.status == KeyStatus::Active && store.key_auto_disable(key.account_id, key.id).await?;
    let dedupe = format!("spike:{}:{}", key.id, now / HOUR_MS);
    let details = json!({
        "last_hour": last_hour, "median_hour": median, "factor": settings.spike_factor,
        "floor": settings.spike_floor, "auto_disabled": auto,
    });
    if emit(
        store,
        key.account_id,
        Some(key),
        "spend.spike",
        &dedupe,
        details,
    )
    .await?
        && auto
    {
        store
            .set_key_status(
                key.account_id,
                key.id,
                KeySwitch::Disabled,
                &Actor::system(),
            )
            .await?;
        tracing::warn!(key_id = %key.id, "key disabled on a spend spike");
    }
    Ok(())
}

/// The median of `BASELINE_HOURS` hourly sums, hours without spend counting as zero.
fn median_hour(mut nonzero: Vec<i64>) -> i64 {
    let zeros = BASELINE_HOURS as usize - nonzero.len().min(BASELINE_HOURS as usize);
    nonzero.extend(std::iter::repeat_n(0, zeros));
    nonzero.sort_unstable();
    nonzero[nonzero.len() / 2]
}

/// One alert per dead secret per hour, with the uses counted when it was made.
async fn dead_use(store: &Store, secret_id: i64, d: &super::DeadUse) -> Result<()> {
    let key = match store.key(d.account_id, d.key_id).await {
        Ok(k) => k,
        Err(crate::store::StoreError::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let dedupe = format!("dead:{secret_id}:{}", time_util::now_ms() / HOUR_MS);
    let details = json!({"reason": d.reason, "count": d.count});
    emit(
        store,
        d.account_id,
        Some(&key),
        "secret.dead_use",
        &dedupe,
        details,
    )
    .await?;
    Ok(())
}

async fn evaluate_balance(store: &Store, account_id: WorkspaceId) -> Result<()> {
    let settings = store.alert_settings(account_id).await?;
    let Some(below) = settings.balance_below else {
        return Ok(());
    };
    let account = store.account(account_id).await?;
    let balance = account.balance.micros();
    if balance < below {
        let day = time_util::day_number(time_util::now_ms());
        let dedupe = format!("balance:{below}:{day}");
        let details = json!({"balance": balance, "below": below});
        emit(store, account_id, None, "balance.low", &dedupe, details).await?;
    }
    Ok(())
}

/// The first instant of `ms`'s UTC month.
fn month_start_ms(ms: i64) -> i64 {
    let d = time_util::from_ms(ms).date();
    let first = d.replace_day(1).unwrap_or(d);
    time_util::date_start_ms(first)
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_counts_quiet_hours() {
        assert_eq!(super::median_hour(vec![5; 10]), 0);
        assert_eq!(super::median_hour(vec![7; 336]), 7);
    }
}
