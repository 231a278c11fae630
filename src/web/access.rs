//! Who may do what on the dashboard: one rule per route ([`super::RULES`], from which the
//! routes are registered, so no route exists without one), checked server side by the
//! `Dashboard` extractor on every request against the member's role, read fresh from the
//! database each time.

use crate::domain::team::Role;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: sign-in pages, static files, email and invitation links. A handler that
    /// takes the `Dashboard` still needs a signed-in member of the current workspace.
    Public,
    /// A member with at least this role.
    Role(Role),
    /// A change to one key (`{id}`): admins and owners on any key, developers on the keys
    /// they created, viewers never.
    OwnKey,
}

/// One route and what it needs. `method` is lowercase (`get`, `post`).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    pub need: Need,
}

/// What the request's rule asks of this member: allowed, or allowed once the key's creator
/// is known to be them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    /// Allowed if the key in the path was created by this member.
    IfCreator,
}

pub fn judge(need: Need, role: Role) -> Verdict {
    match need {
        Need::Public => Verdict::Allow,
        Need::Role(min) if role >= min => Verdict::Allow,
        Need::Role(_) => Verdict::Deny,
        Need::OwnKey if role >= Role::Admin => Verdict::Allow,
        Need::OwnKey if role == Role::Developer => Verdict::IfCreator,
        Need::OwnKey => Verdict::Deny,
    }
}

/// The rule of a matched route pattern (`HttpRequest::match_pattern`) and method.
pub fn rule_for(rules: &[Rule], method: &str, pattern: &str) -> Option<Need> {
    rules
        .iter()
        .find(|r| r.path == pattern && r.method.eq_ignore_ascii_case(method))
        .map(|r| r.need)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_change_nothing_and_developers_only_their_keys() {
        assert_eq!(judge(Need::OwnKey, Role::Viewer), Verdict::Deny);
        assert_eq!(judge(Need::OwnKey, Role::Developer), Verdict::IfCreator);
        assert_eq!(judge(Need::OwnKey, Role::Admin), Verdict::Allow);
        assert_eq!(
            judge(Need::Role(Role::Admin), Role::Developer),
            Verdict::Deny
        );
        assert_eq!(
            judge(Need::Role(Role::Viewer), Role::Viewer),
            Verdict::Allow
        );
    }

    #[test]
    fn every_route_has_exactly_one_rule() {
        let rules = crate::web::RULES;
        for (i, a) in rules.iter().enumerate() {
            assert!(
                !rules[i + 1..]
                    .iter()
                    .any(|b| a.method == b.method && a.path == b.path),
                "{} {} twice",
                a.method,
                a.path
            );
        }
    }
}
