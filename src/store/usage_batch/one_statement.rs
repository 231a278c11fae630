//! PostgreSQL: a whole usage batch as **one statement** (data-modifying CTEs over `unnest`ed
//! arrays), run in autocommit: one round trip, which also commits (durably). The
//! multi-statement transaction of `write_postgres` took eight round trips per batch (begin,
//! rows, keys, accounts, leases, rollups, commit), and held the hot key and account rows
//! locked across the last five of them: at one connection those round trips were most of a
//! request's added latency, and under load most of the group commit's time (bench/RESULTS.md).
//!
//! With budget leases a batch touches no row another process's batch touches: charges go to
//! the process's own lease rows (folded into the account later: `store::lease_book`), rollup
//! rows carry the process's shard, last uses are written once a second (`LastUseWrites`).
//! So batches of several processes do not queue on each other's row locks, which are held
//! until each commit's WAL flush (bench/RESULTS.md, 2026-11-30 22:30). The usual batch is
//! then the usage rows, the lease rows and the rollups; parts with nothing to do are left
//! out of the text ([`sql`]).
//!
//! It covers the batches the gateway writes with budget leases or without holds: at most one
//! settlement per key, no reservation rows, no in-memory (SQLite) holds. Any other batch (a
//! day boundary inside a batch, `LOWROUTER_LEASES=off`) takes the transaction.
//! Row locks are taken keys, then accounts, then leases and secrets, as everywhere else: PostgreSQL runs
//! unreferenced data-modifying CTEs in no promised order, so each of these three waits for
//! the one before it (`(select count(*) from k) >= 0`: an init plan that runs `k` first).

use super::{sorted, BatchPlan, UsageEntry};
use crate::domain::LeaseId;
use crate::store::Result;

/// Whether [`write`] can apply this plan.
pub(super) fn fits(plan: &BatchPlan<'_>) -> bool {
    if !plan.reservation_ids.is_empty() || !plan.charges.is_empty() {
        return false;
    }
    let mut keys: Vec<i64> = plan.keys.keys().map(|(k, _, _)| *k).collect();
    keys.sort_unstable();
    keys.windows(2).all(|w| w[0] != w[1])
}

/// The statement's parts. `{after}` is where a part waits for the one before it in lock
/// order (see the module's doc); parts with nothing to do are left out ([`sql`]).
const INS: &str = "ins as (insert into usage (generation_id, account_id, key_id, key_name, requested_model, resolved_model, \
    provider, region, prompt_tokens, completion_tokens, total_tokens, cost, status, http_status, error_code, \
    streamed, latency_ms, started_at, completed_at, secret_last4) \
  select * from unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], \
    $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::bigint[], \
    $15::text[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], $52::text[]))";
const KEYS: &str = "k as (update api_keys set \
    day_spend = case when spend_day = v.day then (case when day_spend + v.charge < v.release then 0 else day_spend + v.charge - v.release end) else day_spend end, \
    month_spend = case when spend_month = v.month then (case when month_spend + v.charge < v.release then 0 else month_spend + v.charge - v.release end) else month_spend end, \
    last_used_at = case when last_used_at is null or last_used_at < v.last_used then nullif(v.last_used, 0) else last_used_at end \
  from unnest($20::bigint[], $21::bigint[], $22::bigint[], $23::bigint[], $24::bigint[], $25::bigint[]) \
    as v(id, day, month, release, charge, last_used) where api_keys.id = v.id returning 1)";
const ACCOUNTS: &str = "a as (update accounts set \
    balance = case when balance < v.charge then 0 else balance - v.charge end, \
    reserved = case when reserved < v.release then 0 else reserved - v.release end \
  from unnest($26::bigint[], $27::bigint[], $28::bigint[]) as v(id, release, charge) \
  where accounts.id = v.id{after} returning 1)";
const LEASES: &str = "l as (update leases set amount = leases.amount - v.charge, charged = leases.charged + v.charge \
  from unnest($29::bigint[], $30::bigint[]) as v(id, charge) \
  where leases.id = v.id{after} returning leases.id)";
const SECRETS: &str = "s as (update key_secrets set \
    last_client = case when last_used_at is null or last_used_at <= v.last_used then v.client else last_client end, \
    last_used_at = case when last_used_at is null or last_used_at < v.last_used then v.last_used else last_used_at end \
  from unnest($53::bigint[], $54::bigint[], $55::text[]) as v(id, last_used, client) \
  where key_secrets.id = v.id{after})";
const ROLLUPS: &str = "d as (insert into usage_daily (account_id, day, key_id, key_name, model, provider, region, status, \
    error_code, requests, errors, prompt_tokens, completion_tokens, cost, shard) \
  select *, $56::bigint from unnest($31::bigint[], $32::bigint[], $33::bigint[], $34::text[], $35::text[], $36::text[], \
    $37::text[], $38::text[], $57::text[], $39::bigint[], $40::bigint[], $41::bigint[], $42::bigint[], $43::bigint[]) \
  on conflict (account_id, day, key_id, key_name, model, provider, region, status, error_code, shard) do update set \
    requests = usage_daily.requests + excluded.requests, errors = usage_daily.errors + excluded.errors, \
    prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens, \
    completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens, \
    cost = usage_daily.cost + excluded.cost), \
dk as (insert into usage_daily_keys (account_id, day, key_id, key_name, requests, errors, prompt_tokens, completion_tokens, \
    cost, shard) \
  select *, $56::bigint from unnest($44::bigint[], $45::bigint[], $58::bigint[], $46::text[], $47::bigint[], $48::bigint[], \
    $49::bigint[], $50::bigint[], $51::bigint[]) \
  on conflict (account_id, day, key_id, key_name, shard) do update set \
    requests = usage_daily_keys.requests + excluded.requests, errors = usage_daily_keys.errors + excluded.errors, \
    prompt_tokens = usage_daily_keys.prompt_tokens + excluded.prompt_tokens, \
    completion_tokens = usage_daily_keys.completion_tokens + excluded.completion_tokens, \
    cost = usage_daily_keys.cost + excluded.cost), \
dw as (insert into usage_daily_workspace (account_id, day, model, provider, region, status, error_code, requests, errors, \
    prompt_tokens, completion_tokens, cost, shard) \
  select *, $56::bigint from unnest($59::bigint[], $60::bigint[], $61::text[], $62::text[], $63::text[], $64::text[], \
    $65::text[], $66::bigint[], $67::bigint[], $68::bigint[], $69::bigint[], $70::bigint[]) \
  on conflict (account_id, day, model, provider, region, status, error_code, shard) do update set \
    requests = usage_daily_workspace.requests + excluded.requests, errors = usage_daily_workspace.errors + excluded.errors, \
    prompt_tokens = usage_daily_workspace.prompt_tokens + excluded.prompt_tokens, \
    completion_tokens = usage_daily_workspace.completion_tokens + excluded.completion_tokens, \
    cost = usage_daily_workspace.cost + excluded.cost)";
/// The statement's result: the leases charged that have no row any more
/// (`super::postgres::charge_orphans`).
const ORPHANS: &str =
    " select v.id from unnest($29::bigint[]) as v(id) where v.id not in (select id from l)";

/// The statement for a batch that has key updates (`k`), account updates (`a`), lease
/// charges (`l`) and secrets' last uses (`s`) or not: a part with nothing to do is left out
/// rather than run over empty arrays, because PostgreSQL sets up every table a statement
/// writes (opening it and its indexes) whether it gets rows or not, and at one connection a
/// batch is one row, so that setup was most of the statement's cost (bench/RESULTS.md). At
/// most 16 texts, each prepared once per connection; every parameter is bound either way.
fn sql(k: bool, a: bool, l: bool, s: bool) -> &'static str {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (0..16)
            .map(|bits| {
                let [k, a, l, s] = [1, 2, 4, 8].map(|b| bits & b != 0);
                let mut parts = vec![INS.to_owned()];
                // Each part waits for the last one before it in lock order.
                let mut before: Option<&str> = None;
                let after = |before: Option<&str>| {
                    before.map_or(String::new(), |p| {
                        format!(" and (select count(*) from {p}) >= 0")
                    })
                };
                if k {
                    parts.push(KEYS.to_owned());
                    before = Some("k");
                }
                if a {
                    parts.push(ACCOUNTS.replace("{after}", &after(before)));
                    before = Some("a");
                }
                if l {
                    parts.push(LEASES.replace("{after}", &after(before)));
                }
                if s {
                    parts.push(SECRETS.replace("{after}", &after(before)));
                }
                parts.push(ROLLUPS.to_owned());
                let result = if l {
                    ORPHANS
                } else {
                    " select 0::bigint where false"
                };
                format!("with {}{result}", parts.join(", "))
            })
            .collect()
    });
    let bits = usize::from(k) | usize::from(a) << 1 | usize::from(l) << 2 | usize::from(s) << 3;
    &texts[bits]
}

/// Column `i` of each row, as one array.
fn col<T, R>(rows: &[R], f: impl Fn(&R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

/// Applies the batch in one statement (see the module's doc); `plan` must [`fits`].
/// Returns the leases whose rows were gone, whose charges still need a home
/// (`super::charge_orphans`).
pub(super) async fn write(
    pool: &sqlx::PgPool,
    batch: &[UsageEntry],
    plan: &BatchPlan<'_>,
) -> Result<Vec<LeaseId>> {
    let rows: Vec<_> = batch.iter().map(|e| &e.usage).collect();
    let keys = sorted(&plan.keys);
    let accounts = sorted(&plan.accounts);
    let leases = sorted(&plan.leases);
    let daily = sorted(&plan.daily);
    let daily_keys = sorted(&plan.daily_keys);
    let workspace = sorted(&plan.workspace);
    let secrets = sorted(&plan.secrets);
    let text = sql(
        !keys.is_empty(),
        !accounts.is_empty(),
        !leases.is_empty(),
        !secrets.is_empty(),
    );
    let q = sqlx::query_as::<_, (LeaseId,)>(text)
        .bind(col(&rows, |r| r.generation_id.clone()))
        .bind(col(&rows, |r| r.account_id))
        .bind(col(&rows, |r| r.key_id))
        .bind(col(&rows, |r| r.key_name.clone()))
        .bind(col(&rows, |r| r.requested_model.clone()))
        .bind(col(&rows, |r| r.resolved_model.clone()))
        .bind(col(&rows, |r| r.provider.clone()))
        .bind(col(&rows, |r| r.region.clone()))
        .bind(col(&rows, |r| r.prompt_tokens))
        .bind(col(&rows, |r| r.completion_tokens))
        .bind(col(&rows, |r| r.prompt_tokens + r.completion_tokens))
        .bind(col(&rows, |r| r.cost))
        .bind(col(&rows, |r| r.status.as_str().to_owned()))
        .bind(col(&rows, |r| i64::from(r.http_status)))
        .bind(col(&rows, |r| r.error_code.map(|c| c.as_str().to_owned())))
        .bind(col(&rows, |r| i64::from(r.streamed)))
        .bind(col(&rows, |r| r.latency_ms))
        .bind(col(&rows, |r| r.started_at))
        .bind(col(&rows, |r| r.completed_at))
        .bind(col(&keys, |((id, _, _), _)| *id))
        .bind(col(&keys, |((_, day, _), _)| *day))
        .bind(col(&keys, |((_, _, month), _)| *month))
        .bind(col(&keys, |(_, d)| d.release))
        .bind(col(&keys, |(_, d)| d.charge))
        .bind(col(&keys, |(_, d)| d.last_used))
        .bind(col(&accounts, |(id, _)| **id))
        .bind(col(&accounts, |(_, (release, _))| *release))
        .bind(col(&accounts, |(_, (_, charge))| *charge))
        .bind(col(&leases, |(id, _)| **id))
        .bind(col(&leases, |(_, charge)| **charge))
        .bind(col(&daily, |(k, _)| k.account_id))
        .bind(col(&daily, |(k, _)| k.day))
        .bind(col(&daily, |(k, _)| k.key_id))
        .bind(col(&daily, |(k, _)| k.key_name.to_owned()))
        .bind(col(&daily, |(k, _)| k.model.to_owned()))
        .bind(col(&daily, |(k, _)| k.provider.to_owned()))
        .bind(col(&daily, |(k, _)| k.region.to_owned()))
        .bind(col(&daily, |(k, _)| k.status.to_owned()))
        .bind(col(&daily, |(_, n)| n[0]))
        .bind(col(&daily, |(_, n)| n[1]))
        .bind(col(&daily, |(_, n)| n[2]))
        .bind(col(&daily, |(_, n)| n[3]))
        .bind(col(&daily, |(_, n)| n[4]))
        .bind(col(&daily_keys, |(k, _)| k.account_id))
        .bind(col(&daily_keys, |(k, _)| k.day))
        .bind(col(&daily_keys, |(k, _)| k.key_name.to_owned()))
        .bind(col(&daily_keys, |(_, n)| n[0]))
        .bind(col(&daily_keys, |(_, n)| n[1]))
        .bind(col(&daily_keys, |(_, n)| n[2]))
        .bind(col(&daily_keys, |(_, n)| n[3]))
        .bind(col(&daily_keys, |(_, n)| n[4]))
        .bind(col(&rows, |r| r.secret_last4.clone()))
        .bind(col(&secrets, |(id, _)| **id))
        .bind(col(&secrets, |(_, (last, _))| *last))
        .bind(col(&secrets, |(_, (_, client))| client.map(str::to_owned)))
        .bind(plan.shard)
        .bind(col(&daily, |(k, _)| k.error_code.to_owned()))
        .bind(col(&daily_keys, |(k, _)| k.key_id))
        .bind(col(&workspace, |(k, _)| k.account_id))
        .bind(col(&workspace, |(k, _)| k.day))
        .bind(col(&workspace, |(k, _)| k.model.to_owned()))
        .bind(col(&workspace, |(k, _)| k.provider.to_owned()))
        .bind(col(&workspace, |(k, _)| k.region.to_owned()))
        .bind(col(&workspace, |(k, _)| k.status.to_owned()))
        .bind(col(&workspace, |(k, _)| k.error_code.to_owned()))
        .bind(col(&workspace, |(_, n)| n[0]))
        .bind(col(&workspace, |(_, n)| n[1]))
        .bind(col(&workspace, |(_, n)| n[2]))
        .bind(col(&workspace, |(_, n)| n[3]))
        .bind(col(&workspace, |(_, n)| n[4]));
    let orphans = q.fetch_all(pool).await?;
    Ok(orphans.into_iter().map(|(id,)| id).collect())
}
