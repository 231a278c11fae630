//! Seeds a database with an account, its keys and many usage rows, for measuring the Usage
//! pages at scale (bench/dashboard.sh). Not part of the product.
//!
//! ```text
//! cargo run --release --example seed_usage -- --database-url sqlite://bench.db \
//!     --rows 1000000 --keys 50 --days 90
//! ```
//!
//! Everything goes through the store API: `create_account`, `create_key`, and
//! `write_usage_batch` (which maintains the rollup and `last_used_at` as the gateway's
//! writer does). Rows are spread evenly over the last `--days` days, oldest first (ids grow
//! with time, as in production), across keys, models, providers, regions and statuses.
//! Prints the account's email and password on the last two lines.

use std::time::Instant;

use clap::Parser;
use lowrouter::domain::audit::Actor;
use lowrouter::domain::key_form::KeySpec;
use lowrouter::domain::{ApiToken, Credits, Email, ErrorCode, Password};
use lowrouter::store::usage::{NewUsage, UsageEntry, UsageStatus};
use lowrouter::store::Store;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "LOWROUTER_DATABASE_URL")]
    database_url: String,
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    #[arg(long, default_value_t = 50)]
    keys: usize,
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// Rows per `write_usage_batch` call (one transaction).
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keys revoked after seeding (their history stays, marked revoked).
    #[arg(long, default_value_t = 2)]
    revoke: usize,
    /// Workspaces (each its own account). The first, whose login is printed, is the big
    /// tenant: it holds half the keys and half the rows (all of them when there is one);
    /// the others share the rest evenly. Its pages are the ones measured.
    #[arg(long, default_value_t = 1)]
    workspaces: usize,
}

/// (model, primary provider, fallback provider, input price, output price): prices in
/// credits per million tokens, i.e. micro-credits per token.
const MODELS: [(&str, &str, &str, i64, i64); 6] = [
    ("openai/gpt-4o", "openai", "azure", 2500, 10000),
    ("openai/gpt-4o-mini", "openai", "azure", 150, 600),
    (
        "anthropic/claude-sonnet-4",
        "anthropic",
        "bedrock",
        3000,
        15000,
    ),
    ("mistral/mistral-large", "mistral", "scaleway", 2000, 6000),
    ("meta/llama-3.1-70b", "together", "fireworks", 900, 900),
    ("lowrouter/echo", "lowrouter", "lowrouter", 1000, 1000),
];
const REGIONS: [&str; 3] = ["eu-west", "us-east", "us-west"];
const PASSWORD: &str = "bench-password-123";

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.keys > 0 && a.days > 0 && a.batch > 0,
        "keys, days and batch must be > 0"
    );
    let store = Store::connect(&a.database_url).await?;
    let now = lowrouter::domain::time_util::now_ms();
    let email =
        Email::parse(&format!("bench-{now}@example.com")).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let hash = lowrouter::password_hashing::hash(
        &Password::parse(PASSWORD.to_owned(), Some(&email))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    anyhow::ensure!(
        a.workspaces > 0 && a.keys >= a.workspaces,
        "at least one workspace, and a key for each"
    );
    let mut workspaces = Vec::with_capacity(a.workspaces);
    for w in 0..a.workspaces {
        let email = if w == 0 {
            email.clone()
        } else {
            Email::parse(&format!("bench-{now}-{w}@example.com"))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
        };
        workspaces.push(
            store
                .create_account(&email, &hash, Credits::from_micros(1_000_000_000_000))
                .await?
                .personal_workspace(),
        );
    }
    // Keys `0..big` belong to the big tenant; the rest go round-robin to the others.
    let big = if a.workspaces == 1 {
        a.keys
    } else {
        a.keys / 2
    };
    let owner = |i: usize| {
        if i < big {
            workspaces[0]
        } else {
            workspaces[1 + (i - big) % (a.workspaces - 1)]
        }
    };

    let mut keys = Vec::with_capacity(a.keys);
    for i in 0..a.keys {
        let name = format!("key-{i:02}");
        let spec = KeySpec {
            name: name.clone(),
            models: Vec::new(),
            region: None,
            daily_limit: None,
            monthly_limit: None,
            expires_on: None,
            rpm_limit: None,
            concurrency_limit: None,
            disable_after_days: None,
        };
        let id = store
            .create_key(owner(i), &spec, &ApiToken::generate(), &Actor::cli())
            .await?;
        keys.push((id, name, owner(i)));
    }

    let mut rng = Rng(a.seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let span = a.days * 86_400_000;
    let start = now - span;
    let started = Instant::now();
    let mut batch: Vec<UsageEntry> = Vec::with_capacity(a.batch);
    for i in 0..a.rows {
        // Evenly spread, oldest first, with a little jitter.
        let at = start
            + (i128::from(span) * i128::from(i) / i128::from(a.rows.max(1))) as i64
            + rng.below(1000) as i64;
        // Half the rows go to the big tenant's keys, half to the others' (one tenant: all).
        let k = if a.workspaces == 1 || rng.below(2) == 0 {
            rng.below(big as u64) as usize
        } else {
            big + rng.below((a.keys - big) as u64) as usize
        };
        let (key_id, key_name, account_id) = &keys[k];
        // Each key mostly uses three models: 60 / 30 / 10 %.
        let pick = rng.below(10);
        let m = (k + [0, 1, 3][usize::from(pick >= 6) + usize::from(pick >= 9)]) % MODELS.len();
        let (model, primary, fallback, pin, pout) = MODELS[m];
        let provider = if rng.below(50) == 0 {
            fallback
        } else {
            primary
        };
        let region = REGIONS[(k + usize::from(provider == fallback)) % REGIONS.len()];
        let roll = rng.below(100);
        let status = match roll {
            0 => UsageStatus::UpstreamError,
            1..=3 => UsageStatus::ClientError,
            _ => UsageStatus::Ok,
        };
        let (prompt, completion) = if status == UsageStatus::Ok {
            (20 + rng.below(2000) as i64, 5 + rng.below(800) as i64)
        } else {
            (0, 0)
        };
        let latency = 150 + rng.below(3000) as i64;
        batch.push(UsageEntry {
            usage: NewUsage {
                generation_id: format!("gen-s{:011}{:012x}", i, rng.next() >> 16),
                account_id: *account_id,
                key_id: *key_id,
                key_name: key_name.clone(),
                requested_model: if rng.below(5) == 0 {
                    "lowrouter/auto".into()
                } else {
                    model.into()
                },
                resolved_model: Some(model.into()),
                provider: Some(provider.into()),
                region: Some(region.into()),
                prompt_tokens: prompt,
                completion_tokens: completion,
                cost: Credits::from_micros(prompt * pin + completion * pout),
                status,
                http_status: match status {
                    UsageStatus::Ok => 200,
                    UsageStatus::ClientError => 400,
                    UsageStatus::UpstreamError => 502,
                },
                error_code: match status {
                    UsageStatus::Ok => None,
                    UsageStatus::ClientError => Some(ErrorCode::UpstreamRejected),
                    UsageStatus::UpstreamError => Some(ErrorCode::UpstreamError),
                },
                streamed: rng.below(3) == 0,
                latency_ms: latency,
                started_at: at,
                completed_at: at + latency,
                secret_id: None,
                secret_last4: None,
                client: None,
            },
            reservation: None,
        });
        if batch.len() == a.batch {
            store.write_usage_batch(&batch).await?;
            batch.clear();
            if (i + 1) % 100_000 == 0 {
                eprintln!(
                    "{} rows, {:.0} rows/s",
                    i + 1,
                    (i + 1) as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
    }
    if !batch.is_empty() {
        store.write_usage_batch(&batch).await?;
    }
    for (id, _, owner) in keys[..big].iter().rev().take(a.revoke) {
        store.revoke_key(*owner, *id, &Actor::cli()).await?;
    }
    let took = started.elapsed().as_secs_f64();
    store.close().await;
    // Steady state: PostgreSQL's autovacuum would analyze (and set the visibility map) after
    // a bulk insert like this; do it now rather than measure before it has run.
    if a.database_url.starts_with("postgres") {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&a.database_url).await?;
        sqlx::query("vacuum analyze").execute(&mut c).await?;
        // The seed adds to each rollup row once per 10,000-row batch, within minutes, so
        // autovacuum never gets to reuse the dead versions: the rollups end up ten times
        // their live size. In service autovacuum keeps them near it (the past days' rows no
        // longer change); compact them to measure that steady state.
        for table in ["usage_daily", "usage_daily_keys", "usage_daily_workspace"] {
            sqlx::query(&format!("vacuum full analyze {table}"))
                .execute(&mut c)
                .await?;
        }
    }
    eprintln!(
        "seeded {} rows over {} keys and {} days in {took:.1} s ({:.0} rows/s)",
        a.rows,
        a.keys,
        a.days,
        a.rows as f64 / took
    );
    println!("email={}", email.as_str());
    println!("password={PASSWORD}");
    Ok(())
}
