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
}
