//! Settings from defaults, the file and the environment.

use super::*;

#[test]
fn env_overrides_defaults() {
    let mut s = Settings::default();
    s.apply_env(|k| match k {
        "LOWROUTER_BIND" => Some("0.0.0.0:9000".into()),
        "LOWROUTER_SIGNUP_GRANT" => Some("12.50".into()),
        "LOWROUTER_COOKIE_SECURE" => Some("true".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(s.bind, "0.0.0.0:9000");
    assert_eq!(s.signup_grant.micros(), 12_500_000);
    assert!(s.cookie_secure());
    let bad =
        Settings::default().apply_env(|k| (k == "LOWROUTER_SIGNUP_GRANT").then(|| "lots".into()));
    assert!(bad.is_err());
}

#[test]
fn trusted_proxies_from_the_environment() {
    let mut s = Settings::default();
    assert!(s.trusted_proxies.is_empty(), "none by default");
    s.apply_env(|k| (k == "LOWROUTER_TRUSTED_PROXIES").then(|| "10.0.0.0/8, 127.0.0.1,::1".into()))
        .unwrap();
    let want: Vec<IpNet> = ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(s.trusted_proxies, want);
    let bad = Settings::default()
        .apply_env(|k| (k == "LOWROUTER_TRUSTED_PROXIES").then(|| "10.0.0.0/8,proxy".into()));
    assert!(bad.is_err());
}

#[test]
fn cookies_are_secure_when_the_public_address_is_https() {
    let mut s = Settings::default();
    assert!(
        !s.cookie_secure(),
        "no public address: plain HTTP on a laptop"
    );
    s.apply_env(|k| (k == "LOWROUTER_PUBLIC_BASE_URL").then(|| "https://keys.example".into()))
        .unwrap();
    assert!(s.cookie_secure(), "derived from https://");
    assert!(s.warnings().is_empty());
    s.apply_env(|k| (k == "LOWROUTER_COOKIE_SECURE").then(|| "false".into()))
        .unwrap();
    assert!(!s.cookie_secure(), "an explicit false wins");
    assert_eq!(s.warnings().len(), 1, "but is warned about");
    s.apply_env(|k| (k == "LOWROUTER_COOKIE_SECURE").then(|| "".into()))
        .unwrap();
    assert!(s.cookie_secure(), "empty: derived again");
    let mut s = Settings::default();
    s.apply_env(|k| match k {
        "LOWROUTER_PUBLIC_BASE_URL" => Some("http://keys.example".into()),
        "LOWROUTER_COOKIE_SECURE" => Some("true".into()),
        _ => None,
    })
    .unwrap();
    assert!(s.warnings()[0].contains("nobody could stay logged in"));
}

#[test]
fn the_proxy_header_and_upstream_cap_from_the_environment() {
    let mut s = Settings::default();
    assert_eq!(s.trusted_proxy_header, ProxyHeader::XForwardedFor);
    assert_eq!(s.upstream_max_body_bytes, 32 * 1024 * 1024);
    s.apply_env(|k| match k {
        "LOWROUTER_TRUSTED_PROXY_HEADER" => Some("Forwarded".into()),
        "LOWROUTER_UPSTREAM_MAX_BODY_BYTES" => Some("65536".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(s.trusted_proxy_header, ProxyHeader::Forwarded);
    assert_eq!(s.upstream_max_body_bytes, 65536);
    let bad = Settings::default()
        .apply_env(|k| (k == "LOWROUTER_TRUSTED_PROXY_HEADER").then(|| "x-client-ip".into()));
    assert!(bad.is_err());
}

#[test]
fn abuse_settings_from_the_file() {
    let path = std::env::temp_dir().join(format!("lowrouter-test-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\nsignup_max_per_hour = 2\n\
         session_max_age_days = 1\npassword_hash_workers = 0\npassword_hash_queue = 3\n",
    )
    .unwrap();
    let mut s = Settings::default();
    s.apply_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(s.trusted_proxies.len(), 2);
    assert_eq!(s.signup_max_per_hour, 2);
    assert_eq!(s.session_max_age, Duration::from_secs(86_400));
    assert_eq!(s.password_hash_workers, 1, "at least one worker");
    assert_eq!(s.password_hash_queue, 3);
}

#[test]
fn relative_sqlite_paths_follow_the_config_file() {
    assert_eq!(
        resolve_sqlite_url("sqlite://x.db", Path::new("/etc/lr")),
        "sqlite:///etc/lr/x.db"
    );
    assert_eq!(
        resolve_sqlite_url("sqlite:///var/x.db", Path::new("/etc")),
        "sqlite:///var/x.db"
    );
    assert_eq!(
        resolve_sqlite_url("postgres://h/db", Path::new("/etc")),
        "postgres://h/db"
    );
}

#[test]
fn secret_debug_is_redacted() {
    assert_eq!(
        format!("{:?}", Secret::new("hunter2".into())),
        "Secret(***)"
    );
}

#[test]
fn email_verification_settings() {
    let mut s = Settings::default();
    assert!(!s.require_email_verification, "off by default");
    assert!(s.check().is_ok());
    s.apply_env(|k| match k {
        "LOWROUTER_REQUIRE_EMAIL_VERIFICATION" => Some("true".into()),
        "LOWROUTER_SMTP_URL" => Some("smtp://mailer:hunter2@127.0.0.1:2525".into()),
        "LOWROUTER_PUBLIC_BASE_URL" => Some("https://keys.example.com/".into()),
        _ => None,
    })
    .unwrap();
    assert!(s.require_email_verification);
    assert_eq!(
        s.public_base_url.as_deref(),
        Some("https://keys.example.com")
    );
    assert!(
        !format!("{s:?}").contains("hunter2"),
        "the SMTP password never shows in Debug"
    );
    let e = s.check().unwrap_err().to_string();
    assert!(e.contains("mail_from is not set"), "{e}");
    s.mail_from = Some("noreply@example.com".into());
    assert!(s.check().is_ok());

    for bad in [
        "keys.example.com",
        "ftp://keys.example.com",
        "https://keys.example.com/?a=b",
        "https://user:pw@keys.example.com",
    ] {
        let r = Settings::default()
            .apply_env(|k| (k == "LOWROUTER_PUBLIC_BASE_URL").then(|| bad.into()));
        assert!(r.is_err(), "{bad}");
    }
    // Empty unsets the file's value.
    let mut s = Settings {
        smtp_url: Some(Secret::new("smtp://h".into())),
        ..Settings::default()
    };
    s.apply_env(|k| (k == "LOWROUTER_SMTP_URL").then(String::new))
        .unwrap();
    assert!(s.smtp_url.is_none());
}

#[test]
fn email_verification_from_the_file() {
    let path =
        std::env::temp_dir().join(format!("lowrouter-mail-test-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "require_email_verification = true\nsmtp_url = \"smtps://u:p@mail.example.com\"\n\
         mail_from = \"LowRouter <noreply@example.com>\"\n\
         public_base_url = \"http://127.0.0.1:8080\"\n",
    )
    .unwrap();
    let mut s = Settings::default();
    s.apply_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(s.require_email_verification);
    assert_eq!(
        s.smtp_url.as_ref().unwrap().expose(),
        "smtps://u:p@mail.example.com"
    );
    assert_eq!(s.public_base_url.as_deref(), Some("http://127.0.0.1:8080"));
    assert!(s.check().is_ok());
}

#[test]
fn invitation_budgets_from_the_file_and_the_environment() {
    assert_eq!(
        Settings::default().invitation_budget,
        InvitationBudget {
            per_inviter: 20,
            per_workspace: 50,
            per_address: 3
        }
    );
    let path = std::env::temp_dir().join(format!("lowrouter-inv-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "invitations_per_inviter_per_day = 5\ninvitations_per_workspace_per_day = 0\n\
         invitations_per_address_per_day = 2\n",
    )
    .unwrap();
    let mut s = Settings::default();
    s.apply_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        (
            s.invitation_budget.per_inviter,
            s.invitation_budget.per_workspace
        ),
        (5, 1),
        "at least one"
    );
    s.apply_env(|k| (k == "LOWROUTER_INVITATIONS_PER_ADDRESS_PER_DAY").then(|| "7".into()))
        .unwrap();
    assert_eq!(s.invitation_budget.per_address, 7);
    assert_eq!(s.invitation_budget.per_inviter, 5, "the file's value stays");
    let bad = Settings::default()
        .apply_env(|k| (k == "LOWROUTER_INVITATIONS_PER_INVITER_PER_DAY").then(|| "-1".into()));
    assert!(bad.is_err());
}
