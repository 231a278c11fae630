//! Compatibility with real clients: the official OpenAI SDKs for Python and Node, each driven
//! by a script (tests/sdk/) against the real server and the fake upstream. A script whose
//! runtime or package is missing is skipped, unless LOWROUTER_REQUIRE_SDK=1 (CI sets it and
//! installs them: `python3 -m pip install openai`, `npm ci --prefix tests/sdk/node`).

use std::process::Command;

use crate::helpers::*;

const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk");

/// Whether `program args…` runs and succeeds (the SDK can be loaded).
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .current_dir(SDK_DIR)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether an SDK is there to drive; without it the test is skipped, unless CI requires it.
fn present(program: &str, available: bool, install_hint: &str) -> bool {
    if !available {
        assert!(
            std::env::var("LOWROUTER_REQUIRE_SDK").is_err(),
            "{install_hint}"
        );
        eprintln!("skipped: {program} or its OpenAI SDK is not installed ({install_hint})");
    }
    available
}

/// Runs `program script BASE_URL TOKEN` against a fresh app; the script prints "all checks
/// passed" when every expectation held.
async fn drive_with(program: &'static str, script: &str, install_hint: &str, available: bool) {
    if !present(program, available, install_hint) {
        return;
    }
    // A short idle deadline, so that the stalled stream is cut quickly.
    let app = spawn_app_with(|s| s.upstream_idle_timeout = std::time::Duration::from_secs(1)).await;
    app.signed_up().await;
    let token = app.create_key("sdk", &[]).await;
    let base = app.url("/api/v1");
    run_script(program, script, vec![base, token]).await;
}

/// Runs `program script args…` in tests/sdk and checks it printed "all checks passed".
async fn run_script(program: &'static str, script: &str, args: Vec<String>) {
    let script = format!("{SDK_DIR}/{script}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(&script)
            .args(&args)
            .current_dir(SDK_DIR)
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

#[tokio::test]
async fn the_official_openai_python_sdk_works() {
    let available = runs("python3", &["-c", "import openai"]);
    drive_with(
        "python3",
        "openai_compat.py",
        "python3 -m pip install openai",
        available,
    )
    .await;
}

#[tokio::test]
async fn the_official_openai_node_sdk_works() {
    let available = runs(
        "node",
        &[
            "--input-type=module",
            "-e",
            "await import('./node/node_modules/openai/index.mjs')",
        ],
    );
    drive_with(
        "node",
        "node/openai_compat.mjs",
        "npm ci --prefix tests/sdk/node",
        available,
    )
    .await;
}

/// The usage and costs API through the official Python SDK's admin client, each answer
/// validated against the SDK's response models (tests/sdk/openai_usage.py).
#[tokio::test]
async fn the_usage_api_speaks_openais_shape_to_its_python_sdk() {
    let available = runs(
        "python3",
        &[
            "-c",
            "import openai.types.admin.organization.usage_costs_response",
        ],
    );
    if !present("python3", available, "python3 -m pip install openai") {
        return;
    }
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("reporting", &[]).await;
    for i in 0..4 {
        assert_eq!(app.echo(&token, &format!("hello {i}")).await.status(), 200);
    }
    let mk = crate::management::management_key(&app, "finance", true).await;
    let keys: serde_json::Value = app.api_json(&mk, "/api/v1/keys").await;
    let key_id = keys["data"][0]["id"].as_str().unwrap().to_owned();
    let base = app.url("/api/v1");
    run_script(
        "python3",
        "openai_usage.py",
        vec![base, mk, key_id, "4".into()],
    )
    .await;
}
