//! Logging. `RUST_LOG` sets the filter (default `info`). Nothing secret is ever logged:
//! tokens, passwords and session ids never enter a log call, and secret-bearing types
//! (`ApiToken`, `Password`, `Secret`) print redacted `Debug`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
