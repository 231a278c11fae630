//! Micro-benchmarks for the gateway's per-request CPU work before any I/O: token shape and
//! checksum, SHA-256 for the key lookup, the `Authorization` header parse, and the model
//! scope check. Run with `cargo bench --bench hot_path`.

use std::hint::black_box;

use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use criterion::{criterion_group, criterion_main, Criterion};
use lowrouter::domain::token::hash_str;
use lowrouter::domain::{ApiToken, Credits, KeyId, WorkspaceId};
use lowrouter::gateway::auth::bearer_token;
use lowrouter::store::keys::KeyRow;

fn token_benches(c: &mut Criterion) {
    let token = ApiToken::generate();
    let s = token.expose().to_owned();
    let mut g = c.benchmark_group("token");
    g.bench_function("parse (shape + crc32 checksum)", |b| {
        b.iter(|| ApiToken::parse(black_box(&s)).is_ok())
    });
    g.bench_function("sha256 hex (hash_str)", |b| {
        b.iter(|| hash_str(black_box(&s)))
    });
    g.bench_function("parse + sha256", |b| {
        b.iter(|| {
            let t = ApiToken::parse(black_box(&s)).unwrap();
            t.hash()
        })
    });
    let mut bad = s.clone();
    bad.replace_range(10..11, if &s[10..11] == "A" { "B" } else { "A" });
    g.bench_function("parse, bad checksum", |b| {
        b.iter(|| ApiToken::parse(black_box(&bad)).is_err())
    });
    g.finish();

    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {s}")).unwrap(),
    );
    let mut g = c.benchmark_group("bearer");
    g.bench_function("bearer_token (header + parse)", |b| {
        b.iter(|| bearer_token(black_box(&headers)).is_ok())
    });
    g.bench_function("bearer_token + hash_str", |b| {
        b.iter(|| hash_str(bearer_token(black_box(&headers)).unwrap()))
    });
    g.finish();
}

fn key(models: &str) -> KeyRow {
    KeyRow {
        id: KeyId(1),
        account_id: WorkspaceId(1),
        name: "bench".into(),
        token_prefix: "lr-sk-Ab3d".into(),
        token_last4: "x9Qz".into(),
        models: lowrouter::store::keys::KeyModels::from_stored(models.into()),
        region: Some("eu-west".into()),
        daily_limit: Some(Credits::from_micros(1_000_000_000)),
        monthly_limit: None,
        expires_at: None,
        status: lowrouter::store::keys::KeyStatus::Active,
        created_at: 0,
        revoked_at: None,
        last_used_at: None,
        spend_day: 0,
        day_spend: Credits::ZERO,
        spend_month: 0,
        month_spend: Credits::ZERO,
        public_id: None,
        rpm_limit: None,
        concurrency_limit: None,
        disable_after_days: None,
        idle_from: None,
        created_by: None,
    }
}

fn scope_benches(c: &mut Criterion) {
    let scoped = key(
        "openai/gpt-4o,openai/gpt-4o-mini,anthropic/claude-sonnet-4-5,lowrouter/echo,bench/fast",
    );
    let open = key("");
    let mut g = c.benchmark_group("scope");
    g.bench_function("allows_model, 5 models, last matches", |b| {
        b.iter(|| scoped.allows_model(black_box("bench/fast")))
    });
    g.bench_function("allows_model, 5 models, none matches", |b| {
        b.iter(|| scoped.allows_model(black_box("bench/other")))
    });
    g.bench_function("allows_model, unscoped key", |b| {
        b.iter(|| open.allows_model(black_box("bench/fast")))
    });
    g.bench_function("state (active/expiry)", |b| {
        b.iter(|| scoped.state(black_box(1_700_000_000_000)))
    });
    g.finish();
}

criterion_group!(benches, token_benches, scope_benches);
criterion_main!(benches);
