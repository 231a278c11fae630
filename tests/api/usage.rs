use crate::helpers::*;

#[tokio::test]
async fn usage_lists_requests_by_key_name_with_filters_and_totals() {
    let app = spawn_app().await;
    app.signed_up().await;
    let a = app.create_key("prod-server", &[]).await;
    let b = app.create_key("local-dev", &[]).await;
    for _ in 0..3 {
        assert_eq!(app.echo(&a, "aaaa").await.status(), 200);
    }
    assert_eq!(app.echo(&b, "bbbb").await.status(), 200);
    let all = app.get_html("/usage").await;
    assert_eq!(
        all.matches("<td data-label=\"Key\" class=\"name\">prod-server")
            .count(),
        3
    );
    assert_eq!(
        all.matches("<td data-label=\"Key\" class=\"name\">local-dev")
            .count(),
        1
    );
    let filtered = app.get_html("/usage?key=local-dev").await;
    assert_eq!(
        filtered
            .matches("<td data-label=\"Key\" class=\"name\">")
            .count(),
        1
    );
    // Totals: 1 request, 1+4 prompt, 1 completion, 6 tokens at 1000/M.
    assert!(filtered.contains("<span class=\"stat-value\">1</span>"));
    assert!(filtered.contains("0.006"));
    assert!(filtered.contains("<svg"), "chart rendered on the server");

    let bad = app.get("/usage?from=yesterday&status=weird").await;
    assert_eq!(bad.status(), 200);
    let html = bad.text().await.unwrap();
    assert!(html.contains("must be a date") && html.contains("Status must be"));

    let csv = app.get("/usage.csv?key=prod-server").await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("lowrouter-usage-"));
    let body = csv.text().await.unwrap();
    assert_eq!(body.lines().count(), 4, "header + 3 rows");
    assert!(body.starts_with("generation_id,"));
}

#[tokio::test]
async fn csv_is_safe_against_formula_injection_and_quotes() {
    let app = spawn_app().await;
    app.signed_up().await;
    let name = "=cmd|' /C calc'!A0, \"quoted\"";
    let t = app.create_key(name, &[]).await;
    app.echo(&t, "x").await;
    let body = app.get("/usage.csv").await.text().await.unwrap();
    assert!(
        body.contains("\"'=cmd|' /C calc'!A0, \"\"quoted\"\"\""),
        "{body}"
    );
}

#[tokio::test]
async fn other_accounts_usage_is_invisible() {
    let app = spawn_app().await;
    app.signed_up().await;
    let t = app.create_key("secret-project", &[]).await;
    app.echo(&t, "x").await;
    let other = spawn_clone(&app);
    other.signed_up().await;
    assert!(!other.get_html("/usage").await.contains("secret-project"));
    assert!(!other
        .get("/usage.csv")
        .await
        .text()
        .await
        .unwrap()
        .contains("secret-project"));
    assert!(!other.get_html("/").await.contains("secret-project"));
}
