//! The command line, through the real binary, against a running server's database.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::*;

pub(crate) fn lowrouter(db_url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lowrouter"))
        .args(args)
        .env("LOWROUTER_DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn user_create_and_credits_grant() {
    let app = spawn_app().await;
    let db = app.db_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let created = lowrouter(
            &db,
            &["user", "create", "--email", "Ops@Example.com"],
            &format!("{PASSWORD}\n"),
        );
        let granted = lowrouter(
            &db,
            &[
                "credits",
                "grant",
                "--email",
                "ops@example.com",
                "--amount",
                "25.00",
            ],
            "",
        );
        let dup = lowrouter(
            &db,
            &["user", "create", "--email", "ops@example.com"],
            &format!("{PASSWORD}\n"),
        );
        let short = lowrouter(
            &db,
            &["user", "create", "--email", "x@example.com"],
            "short\n",
        );
        let nobody = lowrouter(
            &db,
            &[
                "credits",
                "grant",
                "--email",
                "no@example.com",
                "--amount",
                "1",
            ],
            "",
        );
        let bad_amount = lowrouter(
            &db,
            &[
                "credits",
                "grant",
                "--email",
                "ops@example.com",
                "--amount",
                "1.5e3",
            ],
            "",
        );
        let help = lowrouter(&db, &["credits", "grant", "--help"], "");
        (created, granted, dup, short, nobody, bad_amount, help)
    })
    .await
    .unwrap();
    let (created, granted, dup, short, nobody, bad_amount, help) = out;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(granted.status.success());
    assert!(String::from_utf8_lossy(&granted.stdout).contains("balance is now 30.00"));
    assert!(
        !dup.status.success() && String::from_utf8_lossy(&dup.stderr).contains("already exists")
    );
    assert!(
        !short.status.success() && String::from_utf8_lossy(&short.stderr).contains("at least 10")
    );
    assert!(
        !nobody.status.success() && String::from_utf8_lossy(&nobody.stderr).contains("no account")
    );
    assert!(!bad_amount.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--amount"));

    // An account the operator made counts as verified (email verification, when on).
    assert_eq!(
        app.scalar_i64(
            "select count(*) from accounts where email = 'ops@example.com' and email_verified_at is not null"
        )
        .await,
        1
    );
    assert_eq!(app.login("ops@example.com", PASSWORD).await.status(), 303);
    assert!(app
        .get_html("/keys")
        .await
        .contains("<strong>30.00</strong>"));
}
