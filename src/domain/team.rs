//! Workspaces and the people in them: typed ids and roles. A workspace is an `accounts`
//! row (it owns keys, credits and usage); a person is identified by the id of the account
//! they signed up with (see migration 0013).

pub use super::ids::{UserId, WorkspaceId};

/// A member's role, weakest first: each role may do everything the roles before it may.
/// (Developers' "only the keys they created" is an ownership rule on top: `web::access`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Developer,
    Admin,
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Developer, Role::Admin, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Viewer => "Viewer",
            Role::Developer => "Developer",
            Role::Admin => "Admin",
            Role::Owner => "Owner",
        }
    }

    /// Whether someone with this role may give `other` to a member, or change or remove a
    /// member who has `other`: owners anything, admins anything but owners.
    pub fn may_manage(self, other: Role) -> bool {
        match self {
            Role::Owner => true,
            Role::Admin => other != Role::Owner,
            _ => false,
        }
    }
}

impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Role::parse(&s).ok_or(s)
    }
}

/// How many live workspaces one person may have made with "New workspace": each is a row
/// nobody signs in with, so the bound keeps a script from making them without end.
pub const CREATE_LIMIT: i64 = 20;

/// The reserved address of a workspace made with "New workspace" (`accounts.email` is NOT
/// NULL and unique): random, under `.invalid` (RFC 2606), so it is nobody's and no mail
/// can reach it (migration 0018).
pub fn reserved_email() -> String {
    format!(
        "{}@workspace.invalid",
        super::public_id::generate("workspace-")
    )
}

/// What kind of workspace an `accounts` row is (migration 0018).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceKind {
    /// The account a person signed up with: they sign in as it; it is never deleted.
    Personal,
    /// Made with "New workspace": nobody signs in as it; its owners may delete it.
    Team,
}

impl WorkspaceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceKind::Personal => "personal",
            WorkspaceKind::Team => "team",
        }
    }
}

impl TryFrom<String> for WorkspaceKind {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "personal" => Ok(WorkspaceKind::Personal),
            "team" => Ok(WorkspaceKind::Team),
            _ => Err(s),
        }
    }
}

/// How many invitations (and so invitation mails) may be made in any 24 hours: by one
/// person, from one workspace, and to one address across every workspace. A workspace whose
/// name reads like a phishing line could otherwise mail anyone, as often as it liked, from
/// our address. Counted from the database's rows (`store::members::invitations`), so the
/// budgets hold on every process sharing it. At least 1 each (the settings say so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvitationBudget {
    pub per_inviter: u32,
    pub per_workspace: u32,
    pub per_address: u32,
}

impl Default for InvitationBudget {
    /// Room for a team's real on-boarding (a few people a day, a new team of a dozen in an
    /// afternoon), little for a spammer: three mails a day is the most any one address gets.
    fn default() -> Self {
        InvitationBudget {
            per_inviter: 20,
            per_workspace: 50,
            per_address: 3,
        }
    }
}

/// A workspace's name: the key name rules (NFC, trimmed, inner spaces collapsed, no control
/// or invisible characters, so no NUL reaches PostgreSQL), 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceName(String);

impl WorkspaceName {
    /// The name to store, or the message to show beside the field.
    pub fn parse(raw: &str) -> Result<WorkspaceName, String> {
        super::key_name::parse_label(
            raw,
            "a workspace name",
            "Give the workspace a name, such as your team's or project's.",
        )
        .map(WorkspaceName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Viewer < Role::Developer && Role::Developer < Role::Admin);
        assert!(Role::Admin < Role::Owner);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Owner"), None);
        assert!(!Role::Admin.may_manage(Role::Owner));
        assert!(Role::Admin.may_manage(Role::Admin));
        assert!(!Role::Developer.may_manage(Role::Viewer));
    }

    #[test]
    fn workspace_ids_are_positive_decimals() {
        assert_eq!(WorkspaceId::parse("42"), Some(WorkspaceId(42)));
        for bad in ["", "0", "-1", "1e3", "42\0", "99999999999999999999", " "] {
            assert_eq!(WorkspaceId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn workspace_names_follow_the_key_name_rules() {
        assert_eq!(
            WorkspaceName::parse("  Acme   team ").unwrap().as_str(),
            "Acme team"
        );
        for bad in ["", "   ", "a\0b", "a\u{7}b", "a\u{202e}b", &"x".repeat(65)] {
            assert!(WorkspaceName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(WorkspaceName::parse(&"x".repeat(64)).is_ok());
        assert!(WorkspaceName::parse("a\0b")
            .unwrap_err()
            .contains("workspace name"));
    }
}
