//! Micro-benchmarks of the usage write path (`cargo bench --bench usage_batch`), SQLite:
//!
//! - **journal append**: what a request itself pays to make its usage durable (one record,
//!   one `write`, into a fresh journal);
//! - **usage batch**: the applier's unit of work, one transaction of N rows with their
//!   settlements and rollups on a fresh file. Per-row cost falls as batches grow: that is
//!   why the applier lets entries gather for a few milliseconds.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lowrouter::domain::key_form::KeySpec;
use lowrouter::domain::{ApiToken, Credits, Email, KeyId, WorkspaceId};
use lowrouter::store::usage::{NewUsage, UsageEntry, UsageStatus};
use lowrouter::store::usage_journal::Journal;
use lowrouter::store::{Backend, Store};

fn entries(account_id: WorkspaceId, key_id: KeyId, n: usize, seq: &mut u64) -> Vec<UsageEntry> {
    let now = lowrouter::domain::time_util::now_ms();
    (0..n)
        .map(|_| {
            *seq += 1;
            UsageEntry {
                usage: NewUsage {
                    generation_id: format!("gen-bench-{seq}"),
                    account_id,
                    key_id,
                    key_name: "bench".into(),
                    requested_model: "lowrouter/echo".into(),
                    resolved_model: Some("lowrouter/echo".into()),
                    provider: Some("lowrouter".into()),
                    region: Some("eu-west".into()),
                    prompt_tokens: 12,
                    completion_tokens: 20,
                    cost: Credits::from_micros(32_000),
                    status: UsageStatus::Ok,
                    http_status: 200,
                    error_code: None,
                    streamed: false,
                    latency_ms: 1,
                    started_at: now,
                    completed_at: now,
                    secret_id: None,
                    secret_last4: None,
                    client: None,
                },
                reservation: None,
            }
        })
        .collect()
}

fn batches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (store, account, key) = rt.block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let email = Email::parse("bench@example.com").unwrap();
        let account = store
            .create_account(&email, "x", Credits::parse("1000").unwrap())
            .await
            .unwrap()
            .personal_workspace();
        let spec = KeySpec {
            name: "bench".into(),
            models: vec![],
            region: None,
            daily_limit: None,
            monthly_limit: None,
            expires_on: None,
            rpm_limit: None,
            concurrency_limit: None,
            disable_after_days: None,
        };
        let key = store
            .create_key(
                account,
                &spec,
                &ApiToken::generate(),
                &lowrouter::domain::audit::Actor::cli(),
            )
            .await
            .unwrap();
        (store, account, key)
    });
    let Backend::Sqlite(sqlite) = store.backend() else {
        panic!("the benchmark's store is SQLite")
    };
    let mut seq = 0u64;
    let mut g = c.benchmark_group("usage batch (SQLite)");
    for n in [1usize, 32, 256] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_batched(
                || entries(account, key, n, &mut seq),
                |batch| sqlite.apply_usage_blocking(&batch, 0).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn journal(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(&dir.path().join("bench.db")).unwrap();
    let mut seq = 0u64;
    let one = entries(WorkspaceId(1), KeyId(1), 1, &mut seq);
    let mut n = 0i64;
    c.bench_function("usage journal append (1 entry)", |b| {
        b.iter(|| {
            n += 1;
            // Everything counts as applied, so the segments take turns as in the gateway.
            journal.append_blocking(n, &one, n - 1).unwrap()
        })
    });
}

criterion_group!(benches, journal, batches);
criterion_main!(benches);
