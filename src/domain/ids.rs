//! Row ids, typed: a workspace's, a person's and a key's ids are all `bigint`s in the
//! database, and a function taking two of them in a row (`key(ws, key)`) must not accept
//! them swapped. Decoded by sqlx as the bare integer (`transparent`).

use serde::{Deserialize, Serialize};

/// A workspace: the `accounts` row that owns keys, credits and usage.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type, Serialize, Deserialize,
)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct WorkspaceId(pub i64);

/// A person: the id of the account they sign in with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type, Serialize, Deserialize,
)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl WorkspaceId {
    /// Parses a workspace id from a form or the command line: a positive decimal integer.
    pub fn parse(s: &str) -> Option<WorkspaceId> {
        let s = s.trim();
        if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().filter(|n| *n > 0).map(WorkspaceId)
    }
}

impl UserId {
    /// The workspace a person signed up with: its `accounts` row is also where their email
    /// and password live (migration 0013), so it has the same id.
    pub fn personal_workspace(self) -> WorkspaceId {
        WorkspaceId(self.0)
    }
}

/// An API key's row id (`api_keys.id`). Never shown to users: the API names keys by their
/// public id (`key_…`) and the dashboard's URLs use this number only behind a workspace check.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type, Serialize, Deserialize,
)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct KeyId(pub i64);

impl KeyId {
    /// Parses a key id from a URL segment: a positive decimal integer.
    pub fn parse(s: &str) -> Option<KeyId> {
        WorkspaceId::parse(s).map(|w| KeyId(w.0))
    }
}

/// A budget lease's row id (`leases.id`, PostgreSQL): the slice a leased hold is served
/// from, and the row its settlement charges (`store::lease_book`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct LeaseId(pub i64);

/// Logs and URLs show the bare number (`key_id = %key.id`).
macro_rules! display_as_number {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
display_as_number!(WorkspaceId, UserId, KeyId, LeaseId);
