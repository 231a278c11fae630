use crate::helpers::*;

#[tokio::test]
async fn create_reveals_the_token_once_then_only_prefix_and_last_four() {
    let app = spawn_app().await;
    app.signed_up().await;
    let r = app
        .create_key_response(&key_fields(
            "prod-server",
            &[
                ("models", "lowrouter/echo"),
                ("models", "test/ok"),
                ("region", "eu-west"),
                ("daily_limit", "2.50"),
                ("monthly_limit", "40"),
                ("expires", "2099-12-31"),
            ],
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(
        r.headers().get("location").is_none(),
        "no redirect carries the token"
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("will not be shown again"));
    let token = token_of(&html).unwrap();
    assert_eq!(token.len(), 55);
    assert!(token.starts_with("lr-sk-"));

    let keys = app.get_html("/keys").await;
    assert!(!keys.contains(&token), "full token never shown again");
    assert!(!keys.contains(&token[10..51]), "no middle part either");
    let masked = format!("{}…{}", &token[..10], &token[51..]);
    assert!(keys.contains(&masked), "prefix and last four");
    for shown in [
        "prod-server",
        "lowrouter/echo, test/ok",
        "eu-west",
        "2.50",
        "40.00",
        "2099-12-31",
        "Active",
    ] {
        assert!(keys.contains(shown), "{shown} shown on the Keys page");
    }
    for path in ["/", "/keys/new", "/usage"] {
        assert!(!app.get_html(path).await.contains(&token), "{path}");
    }
}

#[tokio::test]
async fn resubmitting_create_makes_no_second_key_and_no_second_reveal() {
    let app = spawn_app().await;
    app.signed_up().await;
    let page = app.get_html("/keys/new").await;
    let body = vec![
        ("csrf_token".to_owned(), csrf_of(&page)),
        (
            "form_id".to_owned(),
            between(&page, "name=\"form_id\" value=\"", "\"")
                .unwrap()
                .to_owned(),
        ),
        ("name".to_owned(), "twice".to_owned()),
    ];
    let first = app
        .client
        .post(app.url("/keys"))
        .form(&body)
        .send()
        .await
        .unwrap();
    assert!(token_of(&first.text().await.unwrap()).is_some());
    let again = app
        .client
        .post(app.url("/keys"))
        .form(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        303,
        "a reload of the Create POST goes to the Keys page"
    );
    let keys = app
        .get_html(again.headers()["location"].to_str().unwrap())
        .await;
    // It tells, it does not confirm a success: a neutral notice, not a green one, saying what
    // the first submission did (the token by its last characters only).
    assert!(
        keys.contains(
            "<div class=\"notice info\" role=\"status\">Already done: the key “twice” was created"
        ),
        "{keys}"
    );
    assert!(!keys.contains("notice success"));
    assert_eq!(keys.matches(">twice</a>").count(), 1);
}

#[tokio::test]
async fn a_signed_in_404_keeps_the_layout_and_home_has_no_zero_keys_sentence() {
    let app = spawn_app().await;
    // Signed out: the plain page.
    let r = app.get("/no/such/page").await;
    assert_eq!(r.status(), 404);
    assert!(!r.text().await.unwrap().contains("aria-label=\"Main\""));

    app.signed_up().await;
    let home = app.get_html("/").await;
    assert!(home.contains("You have no API keys yet"), "{home}");
    assert!(!home.contains("across your 0 keys"));
    // A missing key, another account's would-be id, an unknown path: 404 in the layout,
    // navigation and balance kept.
    for path in [
        "/keys/123456789",
        "/keys/123456789/edit",
        "/no/such/page",
        "/usage/gen-nope",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 404, "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains("aria-label=\"Main\""), "{path}: {html}");
        assert!(html.contains("class=\"balance\""), "{path}");
        assert!(html.contains("<h1>Not found</h1>"), "{path}");
    }
    let r = app
        .create_key_response(&key_fields(
            "mine",
            &[("daily_limit", "2.5"), ("region", "eu-west")],
        ))
        .await;
    let reveal = r.text().await.unwrap();
    let token = token_of(&reveal).unwrap();
    // "Use it" without JavaScript: the export line, curl, Python and Node all there, and the
    // scoping to check.
    assert!(reveal.contains(&format!("export LOWROUTER_API_KEY={token}")));
    for snippet in [
        "curl http",
        "from openai import OpenAI",
        "import OpenAI from",
        "Scoping and spend",
        "0.00 of 2.50 credits spent today",
        "eu-west",
    ] {
        assert!(reveal.contains(snippet), "{snippet}");
    }
    let list = app.get_html("/keys").await;
    let id = list
        .split("href=\"/keys/")
        .filter_map(|p| p.split('"').next())
        .find(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .expect("a key's page link")
        .to_owned();
    let edit = app.get_html(&format!("/keys/{id}/edit")).await;
    assert!(
        edit.contains("Edit “mine”") && edit.contains("Spent today: 0.00"),
        "{edit}"
    );
    let delete = app.get_html(&format!("/keys/{id}/delete")).await;
    assert!(
        delete.contains("Disable instead") && delete.contains("Last used"),
        "{delete}"
    );
    let home = app.get_html("/").await;
    assert!(home.contains("Spend and activity of your key."), "{home}");
}

#[tokio::test]
async fn every_validation_error_is_shown_beside_its_field_with_input_kept() {
    let app = spawn_app().await;
    app.signed_up().await;
    let long_name = "n".repeat(65);
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (key_fields("   ", &[]), "Give the key a name"),
        (key_fields(&long_name, &[]), "at most 64 characters"),
        (key_fields("ctl\u{7}", &[]), "Use letters, digits"),
        (
            key_fields("m", &[("models", "nope/model")]),
            "Choose models from the list",
        ),
        (
            key_fields("r", &[("region", "mars-1")]),
            "Choose a region from the list",
        ),
        (
            key_fields("d", &[("daily_limit", "-1")]),
            "A limit cannot be negative",
        ),
        (key_fields("d", &[("daily_limit", "0")]), "above zero"),
        (
            key_fields("d", &[("daily_limit", "-5")]),
            "A limit cannot be negative",
        ),
        (
            key_fields("d", &[("daily_limit", "-abc")]),
            "Enter the limit as a number of credits",
        ),
        (
            key_fields("d", &[("daily_limit", "9999999999")]),
            "at most 999,999,999 credits",
        ),
        (
            key_fields("d", &[("daily_limit", "1.1234567")]),
            "6 decimal places",
        ),
        (
            key_fields("d", &[("daily_limit", "abc")]),
            "Enter the limit as a number of credits",
        ),
        (
            key_fields("d", &[("daily_limit", "10"), ("monthly_limit", "5")]),
            "cannot be above the monthly limit",
        ),
        (
            key_fields("mo", &[("monthly_limit", "1e5")]),
            "Enter the limit as a number of credits",
        ),
        (
            key_fields("e", &[("expires", "2001-01-01")]),
            "today or a later date",
        ),
        (key_fields("e", &[("expires", "31/12/2099")]), "YYYY-MM-DD"),
    ];
    for (fields, message) in cases {
        let r = app.create_key_response(&fields).await;
        assert_eq!(r.status(), 422, "{message}");
        let html = r.text().await.unwrap();
        assert!(html.contains(message), "expected {message:?}");
        assert!(html.contains("Nothing was saved"));
        assert!(token_of(&html).is_none());
    }
    // Input is kept, escaped.
    let r = app
        .create_key_response(&key_fields(
            "<script>x</script>",
            &[
                ("daily_limit", "oops"),
                ("region", "us-east"),
                ("models", "test/ok"),
            ],
        ))
        .await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("value=\"&#60;script&#62;x&#60;/script&#62;\"")
            || html.contains("value=\"&lt;script&gt;x&lt;/script&gt;\"")
    );
    assert!(!html.contains("<script>x</script>"));
    assert!(html.contains("value=\"oops\""));
    assert!(html.contains("value=\"us-east\" selected"));
    assert!(html.contains("value=\"test/ok\" checked"));
    assert!(
        app.get_html("/keys").await.contains("No API keys yet"),
        "nothing was created"
    );
}

#[tokio::test]
async fn names_are_unique_among_live_keys_only() {
    let app = spawn_app().await;
    app.signed_up().await;
    app.create_key("dup", &[]).await;
    let r = app.create_key_response(&key_fields("  dup ", &[])).await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("already have a key with this name"));
    let id = app.key_id("dup").await;
    assert_eq!(
        app.post_form(&format!("/keys/{id}/delete"), "/keys", &[])
            .await
            .status(),
        303
    );
    app.create_key("dup", &[]).await;
}

#[tokio::test]
async fn edit_disable_enable_delete() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("old-name", &[]).await;
    let id = app.key_id("old-name").await;

    let form = app.get_html(&format!("/keys/{id}/edit")).await;
    assert!(
        form.contains("value=\"old-name\""),
        "edit form is pre-filled"
    );
    let r = app
        .post_form(
            &format!("/keys/{id}/edit"),
            &format!("/keys/{id}/edit"),
            &key_fields(
                "new-name",
                &[
                    ("models", "lowrouter/echo"),
                    ("region", "us-east"),
                    ("daily_limit", "3"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status(), 303);
    let keys = app.get_html("/keys").await;
    assert!(keys.contains(">new-name</a>") && keys.contains("us-east") && keys.contains("3.00"));
    assert!(keys.contains("Saved changes"));
    let bad = app
        .post_form(
            &format!("/keys/{id}/edit"),
            &format!("/keys/{id}/edit"),
            &key_fields("", &[]),
        )
        .await;
    assert_eq!(bad.status(), 422);

    assert_eq!(app.echo(&token, "hi").await.status(), 200);
    // Used a moment ago: Disable asks first, and does nothing until confirmed.
    let ask = app
        .post_form(&format!("/keys/{id}/disable"), "/keys", &[])
        .await;
    assert_eq!(ask.status(), 200);
    let ask = ask.text().await.unwrap();
    assert!(
        ask.contains("Disable “new-name”?") && ask.contains("served a request"),
        "{ask}"
    );
    assert!(ask.contains("name=\"confirm\" value=\"1\""));
    assert_eq!(
        app.echo(&token, "hi").await.status(),
        200,
        "not disabled yet"
    );
    let r = app
        .post_form(
            &format!("/keys/{id}/disable"),
            "/keys",
            &[("confirm", "1".into())],
        )
        .await;
    assert_eq!(r.status(), 303);
    let keys = app.get_html("/keys").await;
    assert!(keys.contains("Disabled"));
    // The flash offers Undo: Enable.
    assert!(
        keys.contains(&format!("action=\"/keys/{id}/enable\"")) && keys.contains("Undo: enable it"),
        "{keys}"
    );
    let r = app.echo(&token, "hi").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("disabled"));
    app.post_form(&format!("/keys/{id}/enable"), "/keys", &[])
        .await;
    assert_eq!(app.echo(&token, "hi").await.status(), 200);

    // Delete needs the confirmation page's POST.
    let confirm = app.get_html(&format!("/keys/{id}/delete")).await;
    assert!(confirm.contains("Delete “new-name”?"));
    let r = app
        .post_form(
            &format!("/keys/{id}/delete"),
            &format!("/keys/{id}/delete"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    let keys = app.get_html("/keys").await;
    assert!(keys.contains("Revoked keys (1)"));
    assert!(keys.contains("No API keys yet"));
    let r = app.echo(&token, "hi").await;
    assert_eq!(r.status(), 401, "revoked on the very next request");
    assert_eq!(
        app.get(&format!("/keys/{id}/edit")).await.status(),
        404,
        "revoked keys are final"
    );
    // Usage history keeps the name.
    assert!(app.get_html("/usage").await.contains("new-name"));
}

#[tokio::test]
async fn expired_keys_are_refused() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("short-lived", &[]).await;
    // Expiry is a date; move it into the past directly to test the gateway's check.
    let sql = "update api_keys set expires_at = 1000";
    if is_postgres() {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    } else {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
    let r = app.echo(&token, "hi").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("expired"));
    assert!(app.get_html("/keys").await.contains("Expired"));
}

#[tokio::test]
async fn the_token_is_nowhere_in_the_database() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("scan-me", &[("daily_limit", "1")]).await;
    assert_eq!(app.echo(&token, "hello").await.status(), 200);
    let secret_part = &token[10..51];
    let tables = [
        "accounts",
        "api_keys",
        "reservations",
        "usage",
        "usage_daily",
        "sessions",
        "app_secrets",
    ];
    for t in tables {
        let sql = format!(
            "select count(*) from {t} where cast(({}) as text) like '%{secret_part}%'",
            row_text(t)
        );
        assert_eq!(app.scalar_i64(&sql).await, 0, "token found in {t}");
    }
    if !is_postgres() {
        // The raw file and its WAL, byte for byte.
        let path = app.db_url.trim_start_matches("sqlite://");
        for file in [path.to_owned(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                let hay = String::from_utf8_lossy(&bytes);
                assert!(!hay.contains(secret_part), "token bytes in {file}");
            }
        }
    }
}

/// Every column of a table concatenated as text.
fn row_text(table: &str) -> String {
    let cols: &[&str] = match table {
        "accounts" => &["email", "password_hash"],
        "api_keys" => &[
            "name",
            "token_hash",
            "token_prefix",
            "token_last4",
            "models",
        ],
        "reservations" => &["id"],
        "usage" => &["generation_id", "key_name", "requested_model"],
        "usage_daily" => &["key_name", "model"],
        "sessions" => &["id_hash", "state"],
        _ => &["name", "value"],
    };
    cols.iter()
        .map(|c| format!("coalesce({c}, '')"))
        .collect::<Vec<_>>()
        .join(" || ")
}

#[tokio::test]
async fn accounts_never_see_each_others_keys() {
    let app = spawn_app().await;
    app.signed_up().await;
    app.create_key("mine", &[]).await;
    let id = app.key_id("mine").await;

    let other = spawn_clone(&app);
    other.signed_up().await;
    assert!(!other.get_html("/keys").await.contains("mine"));
    for path in [format!("/keys/{id}/edit"), format!("/keys/{id}/delete")] {
        assert_eq!(other.get(&path).await.status(), 404, "{path}");
    }
    for path in ["edit", "disable", "enable", "delete"] {
        let r = other
            .post_form(
                &format!("/keys/{id}/{path}"),
                "/keys",
                &key_fields("stolen", &[]),
            )
            .await;
        assert_eq!(r.status(), 404, "{path}");
    }
    let keys = app.get_html("/keys").await;
    assert!(
        keys.contains(">mine</a>") && keys.contains("Active") && !keys.contains("stolen"),
        "nothing changed"
    );
}

/// The form error beside the name field, for a refused create.
async fn name_error(app: &TestApp, name: &str) -> String {
    let r = app.create_key_response(&key_fields(name, &[])).await;
    assert_eq!(r.status(), 422, "{name:?} refused");
    let html = r.text().await.unwrap();
    assert!(token_of(&html).is_none());
    html
}

const LOOKS_THE_SAME: &str = "with a name that looks the same";

#[tokio::test]
async fn names_that_look_the_same_are_one_name() {
    let app = spawn_app().await;
    app.signed_up().await;
    app.create_key("prod", &[]).await;
    // Cyrillic er, Cyrillic o, fullwidth p, mathematical bold p, doubled inner space later.
    for alike in ["\u{440}rod", "pr\u{43e}d", "\u{ff50}rod", "\u{1d429}rod"] {
        assert!(
            name_error(&app, alike).await.contains(LOOKS_THE_SAME),
            "{alike:?}"
        );
    }
    // NFD typed, NFC stored: one name either way.
    app.create_key("cafe\u{301}", &[]).await;
    assert!(app.get_html("/keys").await.contains(">caf\u{e9}</a>"));
    assert!(name_error(&app, "caf\u{e9}").await.contains(LOOKS_THE_SAME));
    // Inner runs of spaces are one space (as HTML shows them).
    app.create_key("blue  green", &[]).await;
    assert!(app.get_html("/keys").await.contains(">blue green</a>"));
    assert!(name_error(&app, "blue green")
        .await
        .contains(LOOKS_THE_SAME));
    // Case is kept: "Prod" looks different.
    app.create_key("Prod", &[]).await;
    assert_eq!(app.get_html("/keys").await.matches(">prod</a>").count(), 1);
}

#[tokio::test]
async fn invisible_and_direction_changing_characters_are_refused_by_name() {
    let app = spawn_app().await;
    app.signed_up().await;
    for (name, named) in [
        ("\u{202e}gnp.exe", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("prod\u{200b}", "U+200B ZERO WIDTH SPACE"),
        ("a\u{2067}b", "U+2067 RIGHT-TO-LEFT ISOLATE"),
        ("\u{feff}bom", "U+FEFF ZERO WIDTH NO-BREAK SPACE (BOM)"),
        ("nul\u{0}byte", "U+0000 NULL"),
        ("\u{3164}", "U+3164 HANGUL FILLER"),
        ("\u{2800}", "U+2800 BRAILLE PATTERN BLANK"),
        ("x\u{ffa0}", "U+FFA0 HALFWIDTH HANGUL FILLER"),
        ("a\u{a0}b", "U+00A0 NO-BREAK SPACE"),
    ] {
        let html = name_error(&app, name).await;
        assert!(
            html.contains(&format!("{named} cannot be used in a key name")),
            "{name:?}"
        );
    }
    assert!(app.get_html("/keys").await.contains("No API keys yet"));
}

#[tokio::test]
async fn renames_keep_look_alike_names_apart_and_revoked_keys_free_theirs() {
    let app = spawn_app().await;
    app.signed_up().await;
    app.create_key("prod", &[]).await;
    app.create_key("dev", &[]).await;
    let dev = app.key_id("dev").await;
    let rename = |id: i64, name: &'static str| {
        let app = &app;
        async move {
            app.post_form(
                &format!("/keys/{id}/edit"),
                &format!("/keys/{id}/edit"),
                &key_fields(name, &[]),
            )
            .await
        }
    };
    let r = rename(dev, "\u{440}rod").await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains(LOOKS_THE_SAME));
    let r = rename(dev, "dev\u{200d}").await;
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("U+200D ZERO WIDTH JOINER cannot be used"));
    // A key may be renamed to a look-alike of its own name.
    let prod = app.key_id("prod").await;
    assert_eq!(rename(prod, "pr\u{43e}d").await.status(), 303);
    // Revoked keys' names are free again, as before: their skeletons too.
    app.post_form(&format!("/keys/{prod}/delete"), "/keys", &[])
        .await;
    assert_eq!(rename(dev, "prod").await.status(), 303);
    assert!(app.get_html("/keys").await.contains(">prod</a>"));
}

/// Keys stored before migration 0007 get their skeleton when the store starts; look-alikes
/// among them do not stop the migration, and new look-alikes of the oldest are refused.
#[tokio::test]
async fn existing_look_alike_names_survive_the_skeleton_migration() {
    use sqlx::Connection;
    use std::borrow::Cow;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let setup = [
        "insert into accounts (email, password_hash, created_at) values ('a@example.com', 'x', 0)",
        "insert into api_keys (account_id, name, token_hash, token_prefix, token_last4, created_at) \
         values (1, 'prod', 'h1', 'lr-sk-aaaa', 'aaaa', 0)",
        "insert into api_keys (account_id, name, token_hash, token_prefix, token_last4, created_at) \
         values (1, 'prod\u{200b}', 'h2', 'lr-sk-bbbb', 'bbbb', 0)",
        "insert into api_keys (account_id, name, token_hash, token_prefix, token_last4, created_at) \
         values (1, '\u{440}rod', 'h3', 'lr-sk-cccc', 'cccc', 0)",
    ];
    if is_postgres() {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut m = sqlx::migrate!("./migrations/postgres");
        m.migrations = Cow::Owned(m.migrations[..5].to_vec());
        m.run(&mut c).await.unwrap();
        for sql in setup {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    } else {
        let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        let mut m = sqlx::migrate!("./migrations/sqlite");
        m.migrations = Cow::Owned(m.migrations[..5].to_vec());
        m.run(&mut c).await.unwrap();
        for sql in setup {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }
    let store = lowrouter::store::Store::connect(&url).await.unwrap();
    let skeletons = if is_postgres() {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query_as::<_, (Option<String>,)>("select name_skeleton from api_keys order by id")
            .fetch_all(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_as::<_, (Option<String>,)>("select name_skeleton from api_keys order by id")
            .fetch_all(&mut c)
            .await
            .unwrap()
    };
    let skeletons: Vec<_> = skeletons.into_iter().map(|(s,)| s.unwrap()).collect();
    // The oldest keeps the plain skeleton; its look-alikes get marked ones.
    assert_eq!(skeletons, ["prod", "prod\u{1}2", "prod\u{1}3"]);
    let spec = lowrouter::domain::key_form::KeySpec {
        name: "pr\u{43e}d".into(),
        models: vec![],
        region: None,
        daily_limit: None,
        monthly_limit: None,
        expires_on: None,
        rpm_limit: None,
        concurrency_limit: None,
        disable_after_days: None,
    };
    let token = lowrouter::domain::ApiToken::generate();
    assert!(matches!(
        store
            .create_key(
                lowrouter::domain::WorkspaceId(1),
                &spec,
                &token,
                &lowrouter::domain::audit::Actor::cli(),
            )
            .await,
        Err(lowrouter::store::StoreError::Conflict)
    ));
    store.close().await;
}

#[tokio::test]
async fn models_no_provider_serves_are_marked_in_the_picker_and_at_create() {
    // The built-in catalogue without provider credentials: only the echo model is served.
    let app = spawn_app_with(|s| s.catalogue_path = None).await;
    app.signed_up().await;
    let form = app.get_html("/keys/new").await;
    let option = |id: &str| {
        let at = form
            .find(&format!("value=\"{id}\""))
            .unwrap_or_else(|| panic!("{id} offered"));
        form[at..at + form[at..].find("</label>").unwrap()].to_owned()
    };
    assert!(option("openai/gpt-4o").contains("No provider configured"));
    assert!(!option("lowrouter/echo").contains("No provider configured"));
    assert!(form.contains("id=\"name\"") && form.contains(" autofocus"));

    let r = app
        .create_key_response(&key_fields(
            "mixed",
            &[("models", "openai/gpt-4o"), ("models", "lowrouter/echo")],
        ))
        .await;
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Not served here yet:") && page.contains("<code>openai/gpt-4o</code>"),
        "{page}"
    );
    assert!(!page.contains("<code>lowrouter/echo</code>. Requests"));
    let token = token_of(&page).unwrap();
    assert_eq!(
        app.echo(&token, "hi").await.status(),
        200,
        "its echo model works"
    );
}
