//! One rule, one place (issue 27): the dashboard's New key form and `POST /api/v1/keys` call
//! the same keys service, so the same input gets the same outcome on both: accepted by both,
//! or refused by both with the same message for the same field.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::spawn_app;
use crate::management::{call, management_key};

/// Askama's escaping of text in HTML, to find an API message in a page.
fn html_escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

struct Case {
    what: &'static str,
    /// The form's fields (besides the name) and the API's body (besides the name).
    form: &'static [(&'static str, &'static str)],
    api: fn() -> Value,
    /// `None`: a fresh name per surface; else this name on both.
    name: Option<&'static str>,
    /// The field at fault, or `None` when both accept.
    refused: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        what: "a valid key",
        form: &[("daily_limit", "1.50"), ("models", "lowrouter/echo")],
        api: || json!({"daily_limit": "1.50", "models": ["lowrouter/echo"]}),
        name: None,
        refused: None,
    },
    Case {
        what: "a name another key has",
        form: &[],
        api: || json!({}),
        name: Some("taken"),
        refused: Some("name"),
    },
    Case {
        what: "a name that looks like another key's",
        form: &[],
        api: || json!({}),
        // A Cyrillic "а": the same confusable skeleton as "taken".
        name: Some("t\u{430}ken"),
        refused: Some("name"),
    },
    Case {
        what: "an empty name",
        form: &[],
        api: || json!({}),
        name: Some(""),
        refused: Some("name"),
    },
    Case {
        what: "a control character in the name",
        form: &[],
        api: || json!({}),
        name: Some("bell\u{7}name"),
        refused: Some("name"),
    },
    Case {
        what: "a negative daily limit",
        form: &[("daily_limit", "-1")],
        api: || json!({"daily_limit": "-1"}),
        name: None,
        refused: Some("daily_limit"),
    },
    Case {
        what: "a limit finer than a micro-credit",
        form: &[("monthly_limit", "0.0000001")],
        api: || json!({"monthly_limit": "0.0000001"}),
        name: None,
        refused: Some("monthly_limit"),
    },
    Case {
        what: "an unknown model",
        form: &[("models", "nobody/nothing")],
        api: || json!({"models": ["nobody/nothing"]}),
        name: None,
        refused: Some("models"),
    },
    Case {
        what: "an unknown region",
        form: &[("region", "mars-north")],
        api: || json!({"region": "mars-north"}),
        name: None,
        refused: Some("region"),
    },
    Case {
        what: "an expiry in the past",
        form: &[("expires", "2001-01-01")],
        api: || json!({"expires_at": "2001-01-01"}),
        name: None,
        refused: Some("expires_at"),
    },
    Case {
        what: "no requests per minute",
        form: &[("rpm_limit", "0")],
        api: || json!({"rpm_limit": 0}),
        name: None,
        refused: Some("rpm_limit"),
    },
];

#[tokio::test]
async fn the_dashboard_and_the_api_give_the_same_input_the_same_outcome() {
    let app = spawn_app().await;
    app.signed_up().await;
    let mk = management_key(&app, "ci", false).await;
    app.create_key("taken", &[]).await;
    for (i, c) in CASES.iter().enumerate() {
        let (form_name, api_name) = match c.name {
            Some(n) => (n.to_owned(), n.to_owned()),
            None => (format!("form-{i}"), format!("api-{i}")),
        };
        let mut fields: Vec<(&str, String)> = vec![("name", form_name)];
        fields.extend(c.form.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let page = app.create_key_response(&fields).await;
        let page_status = page.status().as_u16();
        let page = page.text().await.unwrap();

        let mut body = (c.api)();
        body["name"] = json!(api_name);
        let (api_status, api) = call(&app, Method::POST, "/api/v1/keys", &mk, Some(body)).await;

        match c.refused {
            None => {
                assert_eq!(page_status, 200, "{}: the form accepts", c.what);
                assert_eq!(api_status, 201, "{}: the API accepts: {api}", c.what);
            }
            Some(param) => {
                assert_eq!(page_status, 422, "{}: the form refuses", c.what);
                assert_eq!(api_status, 400, "{}: the API refuses: {api}", c.what);
                assert_eq!(api["error"]["param"], param, "{}: {api}", c.what);
                let message = api["error"]["message"].as_str().unwrap();
                assert!(
                    page.contains(&format!(">{}</p>", html_escaped(message))),
                    "{}: the form says what the API says ({message:?})",
                    c.what
                );
            }
        }
    }
}
