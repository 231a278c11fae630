//! Event kinds and the JSON payload every channel carries:
//! `{"id": "evt_…", "type": "…", "created_at": "<RFC 3339>", "workspace": {"id": …},
//! "key": {"id": "key_…", "name": "…", "display": "lr-sk-ab…wxyz"} | null, "details": {…}}`.

use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};

use crate::domain::{time_util, WorkspaceId};
use crate::store::alerts::NewEvent;
use crate::store::keys::KeyRow;
use crate::store::webhooks::TestQueued;
use crate::store::{Result, Store};

/// Every event type, as webhooks subscribe to them and payloads name them.
pub const KINDS: [(&str, &str); 10] = [
    (
        "limit.threshold",
        "A key reached 50%, 80% or 100% of its daily or monthly limit",
    ),
    (
        "balance.low",
        "The workspace balance fell below the set amount",
    ),
    (
        "spend.spike",
        "A key's spend in the last hour is far above its usual hour",
    ),
    ("model.first_use", "A key used a model for the first time"),
    ("network.new", "A key was used from a new client network"),
    (
        "secret.dead_use",
        "A revoked, disabled, expired, retired or quarantined secret was used",
    ),
    ("key.expiring", "A key expires within 7 days"),
    (
        "key.rotation_due",
        "A key's secret is older than the rotation age",
    ),
    (
        "secret.leak_reported",
        "A key's secret was reported as leaked",
    ),
    ("test", "Test events (Send test event)"),
];

pub fn is_kind(s: &str) -> bool {
    KINDS.iter().any(|(k, _)| *k == s)
}

/// A short human line for an event (notifications list, digest mail).
pub fn summary(kind: &str, payload: &str) -> String {
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let key = v["key"]["name"].as_str().unwrap_or("");
    let d = &v["details"];
    match kind {
        "limit.threshold" => format!(
            "Key “{key}” reached {}% of its {} limit",
            d["percent"],
            d["period"].as_str().unwrap_or("")
        ),
        "balance.low" => "The workspace balance fell below the alert amount".into(),
        "spend.spike" if d["auto_disabled"] == true => {
            format!("Spend spike on key “{key}”: the key was disabled")
        }
        "spend.spike" => format!("Spend spike on key “{key}”"),
        "model.first_use" => format!(
            "Key “{key}” used {} for the first time",
            d["model"].as_str().unwrap_or("a model")
        ),
        "network.new" => format!(
            "Key “{key}” was used from a new network, {}",
            d["network"].as_str().unwrap_or("")
        ),
        "secret.dead_use" => format!("A dead secret of key “{key}” was used"),
        "key.expiring" => format!("Key “{key}” expires within 7 days"),
        "key.rotation_due" => format!("Key “{key}” is due for rotation"),
        "secret.leak_reported" => format!("A secret of key “{key}” was reported as leaked"),
        "test" => "Test event".into(),
        other => other.to_owned(),
    }
}

/// The facts behind an event, for the notifications list: amounts in credits, the secret
/// and what happened to it, where. Empty when the summary says it all.
pub fn facts(kind: &str, payload: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let d = &v["details"];
    let credits = |x: &Value| {
        x.as_i64()
            .map(|m| format!("{} credits", crate::domain::Credits::from_micros(m).exact()))
            .unwrap_or_else(|| "?".into())
    };
    let mut out = Vec::new();
    match kind {
        "limit.threshold" => out.push(format!(
            "Spent {} of a {} limit of {}",
            credits(&d["spent"]),
            d["period"].as_str().unwrap_or(""),
            credits(&d["limit"])
        )),
        "balance.low" => out.push(format!(
            "Balance {}, alert set below {}",
            credits(&d["balance"]),
            credits(&d["below"])
        )),
        "spend.spike" => out.push(format!(
            "{} in the last hour against a usual hour of {} (alert at {}× and above {})",
            credits(&d["last_hour"]),
            credits(&d["median_hour"]),
            d["factor"],
            credits(&d["floor"])
        )),
        "secret.dead_use" => out.push(format!(
            "The secret was {}; {} use(s) refused in the hour",
            d["reason"].as_str().unwrap_or("dead"),
            d["count"]
        )),
        "secret.leak_reported" => out.push(format!(
            "Found at {}",
            d["url"].as_str().unwrap_or("an unknown place")
        )),
        "key.expiring" => out.push(format!(
            "Expires {}",
            d["expires_at"].as_str().unwrap_or("?")
        )),
        _ => {}
    }
    if let Some(display) = v["key"]["display"].as_str() {
        out.push(format!("Current secret of the key: {display}"));
    }
    out
}

/// The public id (`key_…`) of the key an event is about, if any.
pub fn key_public_id(payload: &str) -> Option<String> {
    let v: Value = serde_json::from_str(payload).ok()?;
    v["key"]["id"].as_str().map(str::to_owned)
}

fn new_public_id() -> String {
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    let mut s = String::from("evt_");
    Alphanumeric.append_string(&mut rng, &mut s, 24);
    s
}

/// The payload's `key` object.
pub fn key_json(k: &KeyRow) -> Value {
    json!({
        "id": k.public_id,
        "name": k.name,
        "display": crate::domain::token::masked(&k.token_prefix, &k.token_last4),
    })
}

/// The JSON body every channel carries (fixed at creation: retries send the same bytes).
fn payload(
    public_id: &str,
    account_id: WorkspaceId,
    key: Option<&KeyRow>,
    kind: &str,
    details: Value,
) -> String {
    json!({
        "id": public_id,
        "type": kind,
        "created_at": time_util::format_rfc3339(time_util::now_ms()),
        "workspace": {"id": account_id},
        "key": key.map(key_json),
        "details": details,
    })
    .to_string()
}

/// Records an event once per `dedupe` (with its outbox rows). True when it was new.
pub async fn emit(
    store: &Store,
    account_id: WorkspaceId,
    key: Option<&KeyRow>,
    kind: &str,
    dedupe: &str,
    details: Value,
) -> Result<bool> {
    let public_id = new_public_id();
    let payload = payload(&public_id, account_id, key, kind, details);
    let id = store
        .insert_alert_event(&NewEvent {
            public_id: &public_id,
            account_id,
            key_id: key.map(|k| k.id),
            kind,
            dedupe,
            payload: &payload,
        })
        .await?;
    Ok(id.is_some())
}

/// "Send test event": a `test` event for one endpoint only, unless `budget` test events
/// already wait for it (`store::webhooks::queue_test_event`). `NotFound` for an endpoint
/// that is not a live one of this workspace.
pub async fn send_test(
    store: &Store,
    account_id: WorkspaceId,
    endpoint: i64,
    budget: i64,
) -> Result<TestQueued> {
    let public_id = new_public_id();
    let dedupe = format!("test:{}", crate::domain::token::random_token());
    let details = json!({"message": "This is a test event from LowRouter."});
    let payload = payload(&public_id, account_id, None, "test", details);
    let e = NewEvent {
        public_id: &public_id,
        account_id,
        key_id: None,
        kind: "test",
        dedupe: &dedupe,
        payload: &payload,
    };
    store.queue_test_event(&e, endpoint, budget).await
}
