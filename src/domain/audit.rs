//! What an audit event says: who acted ([`Actor`]), what they did ([`Action`]), to what, and
//! the details (a key edit's field-level diff). Never a token, password or secret: the
//! types here hold none, and labels are names and emails.

use serde_json::{json, Map, Value};

use super::event_id::EventIds;
use super::ids::{KeyId, UserId};
use super::key_form::KeySpec;

/// Who did it. `id` is the person's id (`User`) or the management key's row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<i64>,
    /// The email or key name at the time: history outlives people and keys.
    pub label: String,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    /// A management key acts for its owner: what it makes is theirs (`created_by`), so
    /// offboarding the owner finds it. `None` for every other kind of actor, and for a key
    /// the CLI made.
    pub owner: Option<UserId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    ManagementKey,
    Cli,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::ManagementKey => "management_key",
            ActorKind::Cli => "cli",
            ActorKind::System => "system",
        }
    }
}

/// The longest user agent kept: enough to tell clients apart, bounded for the table.
const USER_AGENT_MAX_CHARS: usize = 200;

impl Actor {
    pub fn user(id: i64, email: &str) -> Actor {
        Actor {
            kind: ActorKind::User,
            id: Some(id),
            label: email.to_owned(),
            client_addr: None,
            user_agent: None,
            owner: None,
        }
    }

    pub fn management_key(id: i64, name: &str, owner: Option<UserId>) -> Actor {
        Actor {
            kind: ActorKind::ManagementKey,
            id: Some(id),
            label: name.to_owned(),
            client_addr: None,
            user_agent: None,
            owner,
        }
    }

    pub fn cli() -> Actor {
        Actor {
            kind: ActorKind::Cli,
            id: None,
            label: "cli".into(),
            client_addr: None,
            user_agent: None,
            owner: None,
        }
    }

    pub fn system() -> Actor {
        Actor {
            kind: ActorKind::System,
            id: None,
            label: "system".into(),
            client_addr: None,
            user_agent: None,
            owner: None,
        }
    }

    /// The person acting, or the person a management key acts for (a key's or secret's
    /// `created_by`).
    pub fn person(&self) -> Option<UserId> {
        match self.kind {
            ActorKind::User => self.id.map(UserId),
            ActorKind::ManagementKey => self.owner,
            ActorKind::Cli | ActorKind::System => None,
        }
    }

    /// Adds where the request came from: the address as the server saw it (after
    /// `trusted_proxies`), and the user agent without control characters, bounded.
    pub fn from_client(
        mut self,
        addr: Option<std::net::IpAddr>,
        user_agent: Option<&str>,
    ) -> Actor {
        self.client_addr = addr.map(|a| a.to_string());
        self.user_agent = user_agent
            .map(|ua| {
                ua.chars()
                    .filter(|c| !c.is_control())
                    .take(USER_AGENT_MAX_CHARS)
                    .collect::<String>()
            })
            .filter(|ua| !ua.is_empty());
        self
    }
}

/// Every kind of event, by its stored name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    KeyCreated,
    KeyEdited,
    KeyDisabled,
    KeyEnabled,
    KeyDeleted,
    KeyRolled,
    SecretRetired,
    SecretExtended,
    SecretQuarantined,
    MemberInvited,
    InvitationRevoked,
    MemberJoined,
    MemberRoleChanged,
    MemberRemoved,
    ManagementKeyCreated,
    ManagementKeyDeleted,
    ManagementKeyRolled,
    ManagementKeyHandedOver,
    CreditsGranted,
    LoginSucceeded,
    LoginFailed,
    SettingsChanged,
    WorkspaceCreated,
    WorkspaceRenamed,
    WorkspaceDeleted,
}

impl Action {
    pub const ALL: [Action; 25] = [
        Action::KeyCreated,
        Action::KeyEdited,
        Action::KeyDisabled,
        Action::KeyEnabled,
        Action::KeyDeleted,
        Action::KeyRolled,
        Action::SecretRetired,
        Action::SecretExtended,
        Action::SecretQuarantined,
        Action::MemberInvited,
        Action::InvitationRevoked,
        Action::MemberJoined,
        Action::MemberRoleChanged,
        Action::MemberRemoved,
        Action::ManagementKeyCreated,
        Action::ManagementKeyDeleted,
        Action::ManagementKeyRolled,
        Action::ManagementKeyHandedOver,
        Action::CreditsGranted,
        Action::LoginSucceeded,
        Action::LoginFailed,
        Action::SettingsChanged,
        Action::WorkspaceCreated,
        Action::WorkspaceRenamed,
        Action::WorkspaceDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::KeyCreated => "key.created",
            Action::KeyEdited => "key.edited",
            Action::KeyDisabled => "key.disabled",
            Action::KeyEnabled => "key.enabled",
            Action::KeyDeleted => "key.deleted",
            Action::KeyRolled => "key.rolled",
            Action::SecretRetired => "key.secret_retired",
            Action::SecretExtended => "key.secret_extended",
            Action::SecretQuarantined => "key.quarantined",
            Action::MemberInvited => "member.invited",
            Action::InvitationRevoked => "member.invitation_revoked",
            Action::MemberJoined => "member.joined",
            Action::MemberRoleChanged => "member.role_changed",
            Action::MemberRemoved => "member.removed",
            Action::ManagementKeyCreated => "management_key.created",
            Action::ManagementKeyDeleted => "management_key.deleted",
            Action::ManagementKeyRolled => "management_key.rolled",
            Action::ManagementKeyHandedOver => "management_key.handed_over",
            Action::CreditsGranted => "credits.granted",
            Action::LoginSucceeded => "login.succeeded",
            Action::LoginFailed => "login.failed",
            Action::SettingsChanged => "settings.changed",
            Action::WorkspaceCreated => "workspace.created",
            Action::WorkspaceRenamed => "workspace.renamed",
            Action::WorkspaceDeleted => "workspace.deleted",
        }
    }

    /// Parses a stored or requested action name (the API's `?action=` filter).
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// What an event is about: `kind` is `key`, `management_key`, `member`, `invitation` or
/// `workspace`; `label` its name (or email) at the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: &'static str,
    pub id: Option<i64>,
    pub label: String,
}

impl Target {
    pub fn key(id: KeyId, name: &str) -> Target {
        Target {
            kind: "key",
            id: Some(id.0),
            label: name.to_owned(),
        }
    }
}

fn spec_fields(s: &KeySpec) -> [(&'static str, Value); 9] {
    [
        ("name", json!(s.name)),
        ("models", json!(s.models)),
        ("region", json!(s.region)),
        ("daily_limit", json!(s.daily_limit.map(|c| c.to_string()))),
        (
            "monthly_limit",
            json!(s.monthly_limit.map(|c| c.to_string())),
        ),
        (
            "expires_on",
            json!(s
                .expires_on
                .map(|d| super::time_util::format_date(super::time_util::date_start_ms(d)))),
        ),
        ("rpm_limit", json!(s.rpm_limit)),
        ("concurrency_limit", json!(s.concurrency_limit)),
        ("disable_after_days", json!(s.disable_after_days)),
    ]
}

/// A key edit's field-level diff: `{"changes": {"field": {"from": old, "to": new}, …}}`, only
/// the fields that changed.
pub fn spec_diff(old: &KeySpec, new: &KeySpec) -> Value {
    let mut changes = Map::new();
    for ((field, from), (_, to)) in spec_fields(old).into_iter().zip(spec_fields(new)) {
        if from != to {
            changes.insert(field.into(), json!({"from": from, "to": to}));
        }
    }
    json!({ "changes": changes })
}

/// A new key's settings, as the created event's details.
pub fn spec_details(s: &KeySpec) -> Value {
    Value::Object(
        spec_fields(s)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// Filters of the Audit page and `GET /api/v1/audit`, parsed at the edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Part of the actor's label (email or key name), any case.
    pub actor: Option<String>,
    pub action: Option<Action>,
    /// One key's events (its row id).
    pub key_id: Option<KeyId>,
    /// Instants, unix ms: from inclusive, until exclusive.
    pub from: Option<i64>,
    pub until: Option<i64>,
    /// Events older than this id (keyset pagination, newest first).
    pub before: Option<i64>,
    pub limit: u32,
}

/// The longest actor filter accepted.
const ACTOR_FILTER_MAX: usize = 200;

impl AuditFilter {
    /// Parses the filters both surfaces share: `actor` (text), `action` (an event name),
    /// `from` / `to` (`YYYY-MM-DD`, UTC, `to` inclusive), `cursor` (a page's `next`: an
    /// event's public id, see [`EventIds`]). An error names the parameter and says what is
    /// wrong.
    pub fn parse(
        actor: &str,
        action: &str,
        from: &str,
        to: &str,
        cursor: &str,
        ids: &EventIds,
    ) -> Result<AuditFilter, (&'static str, &'static str)> {
        let mut f = AuditFilter::default();
        let actor = actor.trim();
        if !actor.is_empty() {
            if actor.chars().count() > ACTOR_FILTER_MAX || actor.chars().any(char::is_control) {
                return Err((
                    "actor",
                    "The actor filter is too long or has control characters.",
                ));
            }
            f.actor = Some(actor.to_owned());
        }
        if !action.is_empty() {
            f.action = Some(Action::parse(action).ok_or(("action", "Unknown action."))?);
        }
        let date = |s: &str, name| {
            super::time_util::parse_date(s)
                .map(super::time_util::date_start_ms)
                .ok_or((name, "Use a date like 2026-01-31."))
        };
        if !from.is_empty() {
            f.from = Some(date(from, "from")?);
        }
        if !to.is_empty() {
            f.until = Some(date(to, "to")?.saturating_add(86_400_000));
        }
        if !cursor.is_empty() {
            f.before = Some(
                ids.parse(cursor)
                    .ok_or(("cursor", "Not a cursor this server gave."))?,
            );
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> KeySpec {
        KeySpec {
            name: name.into(),
            models: vec![],
            region: None,
            daily_limit: None,
            monthly_limit: None,
            expires_on: None,
            rpm_limit: None,
            concurrency_limit: None,
            disable_after_days: None,
        }
    }

    #[test]
    fn a_diff_names_only_what_changed() {
        let old = spec("prod");
        let mut new = spec("production");
        new.rpm_limit = Some(60);
        let d = spec_diff(&old, &new);
        assert_eq!(
            d,
            json!({"changes": {
                "name": {"from": "prod", "to": "production"},
                "rpm_limit": {"from": null, "to": 60}
            }})
        );
        assert_eq!(spec_diff(&old, &old), json!({"changes": {}}));
    }

    #[test]
    fn filters_refuse_what_they_cannot_use() {
        let ids = EventIds::new([1; 16]);
        assert!(AuditFilter::parse("", "", "", "", "", &ids).is_ok());
        assert_eq!(
            AuditFilter::parse("a\0", "", "", "", "", &ids)
                .unwrap_err()
                .0,
            "actor"
        );
        assert_eq!(
            AuditFilter::parse("", "key.nope", "", "", "", &ids)
                .unwrap_err()
                .0,
            "action"
        );
        assert_eq!(
            AuditFilter::parse("", "", "2026-02-30", "", "", &ids)
                .unwrap_err()
                .0,
            "from"
        );
        assert_eq!(
            AuditFilter::parse("", "", "", "", "7", &ids).unwrap_err().0,
            "cursor"
        );
        assert_eq!(
            AuditFilter::parse("", "", "", "", "99999999999999999999", &ids)
                .unwrap_err()
                .0,
            "cursor"
        );
        let f = AuditFilter::parse(
            " Ann ",
            "key.created",
            "2026-01-01",
            "2026-01-01",
            &ids.public(7),
            &ids,
        )
        .unwrap();
        assert_eq!(f.actor.as_deref(), Some("Ann"));
        assert_eq!(f.until.unwrap() - f.from.unwrap(), 86_400_000);
        assert_eq!(f.before, Some(7));
    }

    #[test]
    fn actions_round_trip_and_user_agents_lose_control_characters() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("key.created\0"), None);
        let a = Actor::user(1, "a@example.com").from_client(None, Some("curl\0/8\n"));
        assert_eq!(a.user_agent.as_deref(), Some("curl/8"));
    }
}
