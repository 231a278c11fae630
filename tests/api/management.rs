//! The management API over HTTP: management keys from the dashboard and the CLI, keys
//! created, changed and revoked by API and enforced by the gateway on the next request,
//! validation with `param`, idempotent retries, wrong key types, isolation, read-only keys,
//! pagination, usage, and the OpenAPI document.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

/// Creates a management key on the dashboard; its token from the reveal page.
pub(crate) async fn management_key(app: &TestApp, name: &str, read_only: bool) -> String {
    let mut fields = vec![("name", name.to_owned())];
    if read_only {
        fields.push(("read_only", "1".to_owned()));
    }
    let r = app
        .post_form("/management-keys", "/management-keys", &fields)
        .await;
    assert_eq!(r.status(), 200, "management key created");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    between(&html, "value=\"lr-mk-", "\"")
        .map(|t| format!("lr-mk-{t}"))
        .expect("reveal shows the token")
}

pub(crate) async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn create_use_patch_delete_through_the_api() {
    let app = spawn_app().await;
    app.signed_up().await;
    let mk = management_key(&app, "terraform", false).await;
    assert!(app.get_html("/management-keys").await.contains("terraform"));

    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/keys",
        &mk,
        Some(json!({"name": "ci", "daily_limit": "2.50", "rpm_limit": 100})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let key = &body["data"];
    let id = key["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("key_") && id.len() > 10, "{id}");
    assert_eq!(key["status"], "active");
    assert_eq!(
        key["daily_limit"], "2.500000",
        "credits as exact decimal strings"
    );
    assert_eq!(key["rpm_limit"], 100);
    assert_eq!(key["models"], json!([]));
    assert!(key["display"].as_str().unwrap().starts_with(&token[..10]));
    assert!(
        !key.to_string().contains(&token[10..]),
        "the key object holds no token"
    );
    assert!(key["previous_secret"].is_null());

    // The token works at the gateway.
    assert_eq!(app.echo(&token, "hello").await.status(), 200);

    // GET shows it, by its public id; the spend is there.
    let (status, got) = call(&app, Method::GET, &format!("/api/v1/keys/{id}"), &mk, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["data"]["name"], "ci");
    assert_ne!(got["data"]["spend_today"], "0");

    // PATCH its models: the next request for another model is refused.
    let (status, patched) = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/keys/{id}"),
        &mk,
        Some(json!({"models": ["test/ok"], "daily_limit": null})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["data"]["models"], json!(["test/ok"]));
    assert!(patched["data"]["daily_limit"].is_null());
    assert_eq!(patched["data"]["rpm_limit"], 100, "fields not sent stay");
    let r = app.echo(&token, "again").await;
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "model_not_allowed");

    // Disable, enable.
    let path = format!("/api/v1/keys/{id}");
    let (_, d) = call(
        &app,
        Method::PATCH,
        &path,
        &mk,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(d["data"]["status"], "disabled");
    let (_, d) = call(
        &app,
        Method::PATCH,
        &path,
        &mk,
        Some(json!({"disabled": false})),
    )
    .await;
    assert_eq!(d["data"]["status"], "active");

    // DELETE revokes: 200 with status revoked, and the token is refused at once.
    let (status, deleted) = call(&app, Method::DELETE, &path, &mk, None).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["data"]["status"], "revoked");
    assert_eq!(app.echo(&token, "gone").await.status(), 401);
    let (status, again) = call(&app, Method::DELETE, &path, &mk, None).await;
    assert_eq!((status, &again["data"]["status"]), (200, &json!("revoked")));
    let (status, _) = call(&app, Method::PATCH, &path, &mk, Some(json!({"name": "x"}))).await;
    assert_eq!(status, 404, "a revoked key cannot change");

    // The dashboard shows what the API did.
    assert!(app.get_html("/keys").await.contains("ci"));

    // Revoking the management key on the dashboard: its next request is 401.
    let html = app.get_html("/management-keys").await;
    let mk_id = between(&html, "action=\"/management-keys/", "/roll")
        .unwrap()
        .to_owned();
    let r = app
        .post_form(
            &format!("/management-keys/{mk_id}/revoke"),
            "/management-keys",
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    let (status, _) = call(&app, Method::GET, "/api/v1/keys", &mk, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let app = spawn_app().await;
    app.signed_up().await;
    let mk = management_key(&app, "m", false).await;
    app.create_key("taken", &[]).await;
    let cases = [
        (json!({"name": ""}), "name"),
        (json!({"name": "a\u{0}b"}), "name"),
        (json!({"name": "taken"}), "name"),
        (json!({"name": "x", "models": ["nope/nope"]}), "models"),
        (json!({"name": "x", "models": ["a\u{0}"]}), "models"),
        (json!({"name": "x", "region": "mars"}), "region"),
        (json!({"name": "x", "daily_limit": "-1"}), "daily_limit"),
        (
            json!({"name": "x", "daily_limit": "5", "monthly_limit": "1"}),
            "daily_limit",
        ),
        (
            json!({"name": "x", "monthly_limit": "abc"}),
            "monthly_limit",
        ),
        (
            json!({"name": "x", "expires_at": "2001-01-01"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "expires_at": "2099-01-01T12:00:00Z"}),
            "expires_at",
        ),
        (json!({"name": "x", "rpm_limit": 0}), "rpm_limit"),
        (
            json!({"name": "x", "concurrency_limit": -3}),
            "concurrency_limit",
        ),
        (json!({"name": "x", "colour": "red"}), "colour"),
        (json!({"name": 5}), "name"),
        (json!({}), "name"),
    ];
    for (body, param) in cases {
        let (status, e) = call(&app, Method::POST, "/api/v1/keys", &mk, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} -> {e}");
        assert_eq!(e["error"]["code"], "invalid_request", "{body}");
        assert_eq!(e["error"]["param"], param, "{body} -> {e}");
    }
    // Not JSON at all.
    let r = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&mk)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A date, and a UTC midnight, are both accepted and read back as the instant.
    let (status, k) = call(
        &app,
        Method::POST,
        "/api/v1/keys",
        &mk,
        Some(json!({"name": "dated", "expires_at": "2099-01-01"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(k["data"]["expires_at"], "2099-01-02T00:00:00Z");
    let id = k["data"]["id"].as_str().unwrap();
    let (status, k) = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/keys/{id}"),
        &mk,
        Some(json!({"expires_at": "2099-01-02T00:00:00Z"})),
    )
    .await;
    assert_eq!(
        (status, &k["data"]["expires_at"]),
        (200, &json!("2099-01-02T00:00:00Z"))
    );
    // List filters refuse what cannot be stored before any SQL.
    for (q, param) in [
        ("?name=a%00b", "name"),
        ("?status=gone", "status"),
        ("?cursor=key_a%00", "cursor"),
        ("?limit=0", "limit"),
        ("?limit=1000", "limit"),
    ] {
        let (status, e) = call(&app, Method::GET, &format!("/api/v1/keys{q}"), &mk, None).await;
        assert_eq!((status, &e["error"]["param"]), (400, &json!(param)), "{q}");
    }
    for (q, param) in [
        ("?model=a%00", "model"),
        ("?from=yesterday", "from"),
        ("?cursor=gen-%00", "cursor"),
    ] {
        let (status, e) = call(&app, Method::GET, &format!("/api/v1/usage{q}"), &mk, None).await;
        assert_eq!((status, &e["error"]["param"]), (400, &json!(param)), "{q}");
    }
    // Ids that cannot exist are 404 before any SQL.
    for id in ["key_%00", "1", "key_x%2F..", "mk_abc"] {
        let (status, _) = call(&app, Method::GET, &format!("/api/v1/keys/{id}"), &mk, None).await;
        assert_eq!(status, 404, "{id}");
    }
}

#[tokio::test]
async fn idempotent_retries_create_one_key() {
    let app = spawn_app().await;
    app.signed_up().await;
    let mk = management_key(&app, "m", false).await;
    let post = |key: &'static str, body: Value| {
        let req = app
            .client
            .post(app.url("/api/v1/keys"))
            .bearer_auth(&mk)
            .header("idempotency-key", key)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = post("retry-1", json!({"name": "once"})).await;
    assert_eq!(status, 201);
    let (status, again) = post("retry-1", json!({"name": "once"})).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "idempotency_replay");
    assert_eq!(again["data"]["id"], first["data"]["id"]);
    assert!(
        again.get("token").is_none(),
        "the token is never shown twice"
    );
    let (status, other) = post("retry-1", json!({"name": "different"})).await;
    assert_eq!(status, 422, "{other}");
    assert_eq!(other["error"]["code"], "idempotency_key_reused");
    let (_, list) = call(&app, Method::GET, "/api/v1/keys", &mk, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "one key only");
    // Concurrent retries: still one key.
    let (a, b) = tokio::join!(
        post("retry-2", json!({"name": "raced"})),
        post("retry-2", json!({"name": "raced"}))
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{a:?} {b:?}");
    let (_, list) = call(&app, Method::GET, "/api/v1/keys?name=raced", &mk, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // A bad header is a 400.
    let r = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&mk)
        .header("idempotency-key", "")
        .json(&json!({"name": "h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn wrong_key_types_are_refused_both_ways() {
    let app = spawn_app().await;
    app.signed_up().await;
    let mk = management_key(&app, "m", false).await;
    let sk = app.create_key("k", &[]).await;
    let r = app.echo(&mk, "hi").await;
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "wrong_key_type");
    for path in ["/api/v1/models", "/api/v1/key", "/api/v1/credits"] {
        let (status, e) = call(&app, Method::GET, path, &mk, None).await;
        assert_eq!(
            (status, &e["error"]["code"]),
            (403, &json!("wrong_key_type")),
            "{path}"
        );
    }
    for (m, path) in [
        (Method::GET, "/api/v1/keys"),
        (Method::POST, "/api/v1/keys"),
        (Method::GET, "/api/v1/usage"),
    ] {
        let (status, e) = call(&app, m, path, &sk, Some(json!({"name": "x"}))).await;
        assert_eq!(
            (status, &e["error"]["code"]),
            (403, &json!("wrong_key_type")),
            "{path}"
        );
        assert!(!e.to_string().contains(&sk[10..]), "token echoed");
    }
    let (status, _) = call(&app, Method::GET, "/api/v1/keys", "lr-mk-nonsense", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn other_accounts_keys_are_404_and_read_only_keys_cannot_write() {
    let app = spawn_app().await;
    app.signed_up().await;
    let mk = management_key(&app, "owner", false).await;
    let ro = management_key(&app, "reader", true).await;
    let (_, created) = call(
        &app,
        Method::POST,
        "/api/v1/keys",
        &mk,
        Some(json!({"name": "mine"})),
    )
    .await;
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();

    let other = spawn_clone(&app);
    other.signed_up().await;
    let intruder = management_key(&other, "intruder", false).await;
    let path = format!("/api/v1/keys/{id}");
    let (_, missing) = call(
        &app,
        Method::GET,
        "/api/v1/keys/key_doesnotexist000000000000",
        &intruder,
        None,
    )
    .await;
    for (m, body) in [
        (Method::GET, None),
        (
            Method::PATCH,
            Some(json!({"name": "pwned", "disabled": true})),
        ),
        (Method::DELETE, None),
    ] {
        let (status, e) = call(&app, m.clone(), &path, &intruder, body).await;
        assert_eq!(status, 404, "{m} {path}");
        assert_eq!(e, missing, "foreign and missing ids answer the same");
    }
    let (_, list) = call(&app, Method::GET, "/api/v1/keys", &intruder, None).await;
    assert_eq!(list["data"], json!([]));
    assert_eq!(app.echo(&token, "still mine").await.status(), 200);

    // Read-only: list and get, never change.
    let (status, _) = call(&app, Method::GET, &path, &ro, None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&app, Method::GET, "/api/v1/usage", &ro, None).await;
    assert_eq!(status, 200);
    for (m, p, body) in [
        (
            Method::POST,
            "/api/v1/keys".to_owned(),
            Some(json!({"name": "ro"})),
        ),
        (Method::PATCH, path.clone(), Some(json!({"name": "ro"}))),
        (Method::DELETE, path.clone(), None),
    ] {
        let (status, e) = call(&app, m.clone(), &p, &ro, body).await;
        assert_eq!(
            (status, &e["error"]["code"]),
            (403, &json!("read_only_key")),
            "{m} {p}"
        );
    }
    let (_, got) = call(&app, Method::GET, &path, &mk, None).await;
    assert_eq!(got["data"]["name"], "mine");
    assert_eq!(got["data"]["status"], "active");
}

#[tokio::test]
async fn pagination_filters_and_usage() {
    let app = spawn_app().await;
    app.signed_up().await;
    let mk = management_key(&app, "m", false).await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        let (s, b) = call(
            &app,
            Method::POST,
            "/api/v1/keys",
            &mk,
            Some(json!({"name": format!("k{i}")})),
        )
        .await;
        assert_eq!(s, 201);
        tokens.push(b["token"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, page) = call(
            &app,
            Method::GET,
            &format!("/api/v1/keys?limit=2&cursor={cursor}"),
            &mk,
            None,
        )
        .await;
        assert_eq!(s, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|k| k["name"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["k4", "k3", "k2", "k1", "k0"],
        "newest first, each once"
    );
    let (_, one) = call(&app, Method::GET, "/api/v1/keys?name=k2", &mk, None).await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    let id = one["data"][0]["id"].as_str().unwrap().to_owned();
    call(
        &app,
        Method::DELETE,
        &format!("/api/v1/keys/{id}"),
        &mk,
        None,
    )
    .await;
    let (_, revoked) = call(&app, Method::GET, "/api/v1/keys?status=revoked", &mk, None).await;
    assert_eq!(revoked["data"][0]["name"], "k2");
    let (_, active) = call(&app, Method::GET, "/api/v1/keys?status=active", &mk, None).await;
    assert_eq!(active["data"].as_array().unwrap().len(), 4);

    // Usage: rows newest first, paged by generation id, with the dashboard's filters.
    for t in [&tokens[0], &tokens[1], &tokens[3]] {
        assert_eq!(app.echo(t, "x").await.status(), 200);
    }
    let (s, usage) = call(&app, Method::GET, "/api/v1/usage?limit=2", &mk, None).await;
    assert_eq!(s, 200, "{usage}");
    assert_eq!(usage["data"].as_array().unwrap().len(), 2);
    let cursor = usage["next_cursor"].as_str().unwrap();
    let (_, rest) = call(
        &app,
        Method::GET,
        &format!("/api/v1/usage?limit=2&cursor={cursor}"),
        &mk,
        None,
    )
    .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    let (_, k1) = call(&app, Method::GET, "/api/v1/usage?key=k1", &mk, None).await;
    assert_eq!(k1["data"].as_array().unwrap().len(), 1);
    assert_eq!(k1["data"][0]["key_name"], "k1");
    assert!(k1["data"][0]["cost"].as_str().unwrap().contains('.') || k1["data"][0]["cost"] == "0");
}

#[tokio::test]
async fn openapi_document_covers_every_api_route() {
    let app = spawn_app().await;
    let r = app.get("/api/v1/openapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    // Every `/api/v1` route registered in the one place routes are (gateway::routes), except
    // the catch-all 405 (`web::route()`), parsed as tests/faults.rs does.
    let src = include_str!("../../src/gateway/mod.rs");
    let scope = between(src, "web::scope(\"", "\"").unwrap();
    let registered: BTreeSet<(String, String)> = src
        .split(".route(")
        .skip(1)
        .filter_map(|piece| {
            let piece = piece
                .trim_start()
                .strip_prefix('"')
                .expect("route path is a literal");
            let path = piece.split('"').next().unwrap();
            let method = between(piece, "web::", "()")?;
            (method != "route").then(|| {
                let path = path.replace("{id:.+}", "{id}");
                (method.to_uppercase(), format!("{scope}{path}"))
            })
        })
        .collect();
    assert!(registered.len() >= 13, "{registered:?}");
    let missing: Vec<_> = registered.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(
        stale.is_empty(),
        "documented routes that do not exist: {stale:?}"
    );
    // The schemas the management API answers with are there.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "KeyObject",
        "CreatedKey",
        "KeyList",
        "ErrorBody",
        "UsageList",
    ] {
        assert!(schemas.contains_key(s), "schema {s}");
    }
    let key_props = schemas["KeyObject"]["properties"].as_object().unwrap();
    for f in [
        "id",
        "name",
        "display",
        "status",
        "models",
        "region",
        "daily_limit",
        "monthly_limit",
        "rpm_limit",
        "concurrency_limit",
        "expires_at",
        "created_at",
        "last_used_at",
        "spend_today",
        "spend_this_month",
        "previous_secret",
    ] {
        assert!(key_props.contains_key(f), "KeyObject.{f}");
    }
    assert!(doc["components"]["securitySchemes"]["management_key"].is_object());
}

#[tokio::test]
async fn cli_creates_a_management_key_once() {
    use std::process::Command;
    let app = spawn_app().await;
    let email = app.signed_up().await;
    let db = app.db_url.clone();
    let run = move |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lowrouter"))
            .args(args)
            .env("LOWROUTER_DATABASE_URL", &db)
            .env("RUST_LOG", "warn")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap()
    };
    let e = email.clone();
    let (rw, ro, nobody) = tokio::task::spawn_blocking(move || {
        (
            run(&[
                "management-key",
                "create",
                "--email",
                &e,
                "--name",
                "bootstrap",
            ]),
            run(&["management-key", "create", "--email", &e, "--read-only"]),
            run(&["management-key", "create", "--email", "nobody@example.com"]),
        )
    })
    .await
    .unwrap();
    assert!(
        rw.status.success(),
        "{}",
        String::from_utf8_lossy(&rw.stderr)
    );
    let token = String::from_utf8(rw.stdout).unwrap().trim().to_owned();
    assert!(
        token.starts_with("lr-mk-") && token.len() == 55,
        "stdout is the token alone"
    );
    let ro_token = String::from_utf8(ro.stdout).unwrap().trim().to_owned();
    assert!(!nobody.status.success());
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("no account"));

    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/keys",
        &token,
        Some(json!({"name": "from-cli"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/keys",
        &ro_token,
        Some(json!({"name": "nope"})),
    )
    .await;
    assert_eq!(status, 403);
    let html = app.get_html("/management-keys").await;
    assert!(html.contains("bootstrap") && html.contains("command line"));
    assert!(
        !html.contains(&token[10..]),
        "the page never shows the token"
    );
}

/// Whether `v` is of a JSON Schema `type` (`"string"`, or a list such as
/// `["string", "null"]`), or of one of `oneOf`/`anyOf`.
fn fits(schema: &Value, v: &Value) -> bool {
    let one = |t: &str| match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => false,
    };
    match &schema["type"] {
        Value::String(t) => one(t),
        Value::Array(ts) => ts.iter().any(|t| t.as_str().is_some_and(one)),
        _ => ["oneOf", "anyOf"]
            .iter()
            .find_map(|k| schema[*k].as_array())
            .is_none_or(|alts| alts.iter().any(|s| fits(s, v))),
    }
}

/// A schema validator over real responses: every field the server sends is in the
/// document's schema with a type that fits, and every required field is sent.
fn assert_fits(doc: &Value, name: &str, v: &Value) {
    let schema = &doc["components"]["schemas"][name];
    let props = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {name}"));
    let obj = v.as_object().unwrap_or_else(|| panic!("{name}: {v}"));
    for (k, value) in obj {
        let p = props
            .get(k)
            .unwrap_or_else(|| panic!("{name}.{k} is not documented"));
        assert!(fits(p, value), "{name}.{k} = {value} does not fit {p}");
    }
    for r in schema["required"].as_array().into_iter().flatten() {
        assert!(
            obj.contains_key(r.as_str().unwrap()),
            "{name}.{r} is required but absent"
        );
    }
}

#[tokio::test]
async fn responses_agree_with_the_openapi_schemas() {
    let app = spawn_app().await;
    app.signed_up().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let mk = management_key(&app, "m", false).await;
    let (_, created) = call(
        &app,
        Method::POST,
        "/api/v1/keys",
        &mk,
        Some(
            json!({"name": "schema", "models": ["test/ok"], "region": "eu-west",
            "daily_limit": 1.5, "monthly_limit": "10", "expires_at": "2099-12-31",
            "rpm_limit": 10, "concurrency_limit": 2}),
        ),
    )
    .await;
    assert_fits(&doc, "CreatedKey", &created);
    assert_fits(&doc, "KeyObject", &created["data"]);
    let token = created["token"].as_str().unwrap();
    assert_eq!(
        app.echo(token, "x").await.status(),
        403,
        "model outside the key's scope"
    );
    let (_, plain) = call(
        &app,
        Method::POST,
        "/api/v1/keys",
        &mk,
        Some(json!({"name": "plain"})),
    )
    .await;
    assert_fits(&doc, "KeyObject", &plain["data"]);
    assert_eq!(
        app.echo(plain["token"].as_str().unwrap(), "x")
            .await
            .status(),
        200
    );
    let (_, list) = call(&app, Method::GET, "/api/v1/keys?limit=1", &mk, None).await;
    assert_fits(&doc, "KeyList", &list);
    let (_, usage) = call(&app, Method::GET, "/api/v1/usage", &mk, None).await;
    assert_fits(&doc, "UsageList", &usage);
    assert_eq!(usage["data"].as_array().unwrap().len(), 2);
    for row in usage["data"].as_array().unwrap() {
        assert_fits(&doc, "UsageObject", row);
    }
    let (_, e) = call(
        &app,
        Method::POST,
        "/api/v1/keys",
        &mk,
        Some(json!({"name": ""})),
    )
    .await;
    assert_fits(&doc, "ErrorBody", &e);
    assert_fits(&doc, "ErrorDetail", &e["error"]);
}

#[tokio::test]
async fn roll_through_the_api_keeps_the_key_and_retires_the_old_secret() {
    let app = spawn_app().await;
    app.signed_up().await;
    let mk = management_key(&app, "rotator", false).await;
    let (status, created) = call(
        &app,
        Method::POST,
        "/api/v1/keys",
        &mk,
        Some(json!({"name": "svc", "models": ["lowrouter/echo"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let old = created["token"].as_str().unwrap().to_owned();
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.echo(&old, "before").await.status(), 200);
    let roll = format!("/api/v1/keys/{id}/roll");

    // When its traffic stops (the default): both secrets work meanwhile.
    let (status, rolled) = call(&app, Method::POST, &roll, &mk, None).await;
    assert_eq!(status, 200, "{rolled}");
    let new = rolled["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rolled["data"]["id"], id.as_str(), "the same key");
    assert_eq!(
        rolled["data"]["models"],
        json!(["lowrouter/echo"]),
        "the same scope"
    );
    let prev = &rolled["data"]["previous_secret"];
    assert_eq!(prev["display"].as_str().unwrap()[..10], old[..10]);
    assert_eq!(prev["retire_when_quiet"], true);
    assert_eq!(prev["quiet_minutes"], 60.0);
    assert!(prev["retires_at"].is_string());
    assert_eq!(app.echo(&old, "old still works").await.status(), 200);
    assert_eq!(app.echo(&new, "new works").await.status(), 200);

    // Rolling again with `now`: the pending previous retires; the one just rolled in stays.
    let (status, again) = call(
        &app,
        Method::POST,
        &roll,
        &mk,
        Some(json!({"retire_previous": "now"})),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    let newest = again["token"].as_str().unwrap().to_owned();
    let r = app.echo(&old, "rotated away").await;
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"].as_str().unwrap().contains("rotated"),
        "{e}"
    );
    assert_eq!(app.echo(&newest, "newest").await.status(), 200);
    assert_eq!(app.echo(&new, "retired now").await.status(), 401);
    let (_, got) = call(&app, Method::GET, &format!("/api/v1/keys/{id}"), &mk, None).await;
    assert!(got["data"]["previous_secret"].is_null(), "{got}");
    // One key, one history.
    assert_eq!(app.scalar_i64("select count(*) from api_keys").await, 1);

    // Bad requests name their field; read-only keys and other accounts cannot roll.
    for (body, param) in [
        (json!({"retire_previous": "later"}), "retire_previous"),
        (json!({"retire_previous": "at", "at": "tomorrow"}), "at"),
        (
            json!({"retire_previous": "at", "at": "2020-01-01T00:00:00Z"}),
            "at",
        ),
        (json!({"quiet_minutes": 0}), "quiet_minutes"),
        (json!({"deadline_days": 0}), "deadline_days"),
        (json!({"retire_previous": "now", "extra": 1}), "extra"),
    ] {
        let (status, e) = call(&app, Method::POST, &roll, &mk, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
    }
    let reader = management_key(&app, "reader", true).await;
    let (status, _) = call(&app, Method::POST, &roll, &reader, None).await;
    assert_eq!(status, 403);
    let stranger = spawn_clone(&app);
    stranger.signup("stranger@example.com").await;
    let theirs = management_key(&stranger, "theirs", false).await;
    let (status, _) = call(&stranger, Method::POST, &roll, &theirs, None).await;
    assert_eq!(status, 404);
    assert_eq!(app.echo(&newest, "still mine").await.status(), 200);
}

#[tokio::test]
async fn an_oversized_body_is_refused_in_the_apis_error_shape() {
    let app = spawn_app().await;
    app.signed_up().await;
    let mk = management_key(&app, "big", false).await;
    let huge = json!({"name": "x".repeat(100 * 1024)});
    let (status, e) = call(&app, Method::POST, "/api/v1/keys", &mk, Some(huge)).await;
    assert_eq!(status, 413, "{e}");
    assert_eq!(e["error"]["code"], "request_too_large");
    assert_eq!(app.scalar_i64("select count(*) from api_keys").await, 0);
}

/// "Disable after N days without use" (issue 15): set on the form or through the API,
/// validated alike, enforced by the gateway at request time once the key has gone unused
/// that long, shown as disabled everywhere, and undone by Enable, which restarts the clock.
#[tokio::test]
async fn keys_set_to_disable_when_unused_stop_after_that_long_until_enabled() {
    let app = spawn_app().await;
    app.signed_up().await;
    for bad in ["0", "-5", "abc", "3651", "2.5", "1\u{0}"] {
        let r = app
            .create_key_response(&key_fields("idle", &[("disable_after_days", bad)]))
            .await;
        assert_eq!(r.status(), 422, "{bad:?}");
        let html = r.text().await.unwrap();
        assert!(
            html.contains("Enter a number of days from 1 to 3650"),
            "{bad:?}"
        );
    }
    let token = app.create_key("idle", &[("disable_after_days", "2")]).await;
    assert!(app
        .get_html("/keys")
        .await
        .contains("Disables after 2 days unused"));
    assert_eq!(app.echo(&token, "hi").await.status(), 200);
    app.api_json(&token, "/api/v1/credits").await; // its last use is written
    let mk = management_key(&app, "m", false).await;
    let (_, listed) = call(&app, Method::GET, "/api/v1/keys?status=active", &mk, None).await;
    assert_eq!(listed["data"][0]["disable_after_days"], 2);

    // Nearly two days without a request: still works. Past two days: refused.
    let day = 86_400_000i64;
    app.execute_sql(&format!(
        "update api_keys set created_at = created_at - {}, last_used_at = last_used_at - {}",
        2 * day - 60_000,
        2 * day - 60_000
    ))
    .await;
    assert_eq!(app.echo(&token, "hi").await.status(), 200);
    app.api_json(&token, "/api/v1/credits").await;
    app.execute_sql(&format!(
        "update api_keys set created_at = created_at - {}, last_used_at = last_used_at - {}",
        3 * day,
        3 * day
    ))
    .await;
    let r = app.echo(&token, "hi").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("unused"));
    assert!(app.get_html("/keys").await.contains("Disabled (unused)"));
    let (_, listed) = call(&app, Method::GET, "/api/v1/keys?status=disabled", &mk, None).await;
    assert_eq!(listed["data"][0]["name"], "idle");
    assert_eq!(listed["data"][0]["status"], "disabled");
    let (_, active) = call(&app, Method::GET, "/api/v1/keys?status=active", &mk, None).await;
    assert_eq!(active["data"].as_array().unwrap().len(), 0);

    // Enable restarts the clock: it works again, for the full period.
    let id = app.key_id("idle").await;
    app.post_form(&format!("/keys/{id}/enable"), "/keys", &[])
        .await;
    assert_eq!(app.echo(&token, "hi").await.status(), 200);

    // The API takes the same field with the same validation, and null clears it.
    let public = listed["data"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/keys/{public}");
    let (status, e) = call(
        &app,
        Method::PATCH,
        &path,
        &mk,
        Some(json!({"disable_after_days": 0})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["param"], "disable_after_days");
    let (status, k) = call(
        &app,
        Method::PATCH,
        &path,
        &mk,
        Some(json!({"disable_after_days": null})),
    )
    .await;
    assert_eq!(status, 200, "{k}");
    assert_eq!(k["data"]["disable_after_days"], Value::Null);
    let (status, k) = call(
        &app,
        Method::POST,
        "/api/v1/keys",
        &mk,
        Some(json!({"name": "api-idle", "disable_after_days": 30})),
    )
    .await;
    assert_eq!(status, 201, "{k}");
    assert_eq!(k["data"]["disable_after_days"], 30);
}
