//! Compatibility with a real client: the official OpenAI Python SDK.
//! Skipped when `openai` is not importable, unless LOWROUTER_REQUIRE_SDK=1 (CI sets it).

use std::process::Command;

use crate::helpers::*;

fn sdk_available() -> bool {
    Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn the_official_openai_sdk_works() {
    if !sdk_available() {
        assert!(
            std::env::var("LOWROUTER_REQUIRE_SDK").is_err(),
            "python3 -m pip install openai"
        );
        eprintln!("skipped: the openai Python package is not installed");
        return;
    }
    // A short idle deadline, so that the stalled stream is cut quickly.
    let app = spawn_app_with(|s| s.upstream_idle_timeout = std::time::Duration::from_secs(1)).await;
    app.signed_up().await;
    let token = app.create_key("sdk", &[]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_compat.py");
    let base = app.url("/api/v1");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([script, &base, &token])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"));
}
