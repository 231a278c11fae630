//! A key's stored status, what the owner can switch it to, and the state a person sees.

use crate::domain::audit::Action;

/// A key's stored `status`, decoded by the store (never compared as a string elsewhere).
/// `Revoked` is final and reached only through [`crate::store::Store::revoke_key`] (or the deletion of
/// its workspace, `Store::delete_workspace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Disabled,
    Revoked,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown key status {0:?}")]
pub struct UnknownKeyStatus(String);

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
            KeyStatus::Revoked => "revoked",
        }
    }
}

impl TryFrom<String> for KeyStatus {
    type Error = UnknownKeyStatus;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "active" => Ok(KeyStatus::Active),
            "disabled" => Ok(KeyStatus::Disabled),
            "revoked" => Ok(KeyStatus::Revoked),
            _ => Err(UnknownKeyStatus(s)),
        }
    }
}

/// What the owner can switch a live key to (revoking is [`crate::store::Store::revoke_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySwitch {
    Enabled,
    Disabled,
}

impl KeySwitch {
    pub(super) fn status(self) -> KeyStatus {
        match self {
            KeySwitch::Enabled => KeyStatus::Active,
            KeySwitch::Disabled => KeyStatus::Disabled,
        }
    }

    pub(super) fn action(self) -> Action {
        match self {
            KeySwitch::Enabled => Action::KeyEnabled,
            KeySwitch::Disabled => Action::KeyDisabled,
        }
    }
}

/// The state a person sees, derived from `status` and the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Active,
    Disabled,
    Expired,
    Revoked,
    /// Disabled by its "disable after N days without use" setting; Enable restarts it.
    Idle,
}

impl KeyState {
    pub fn label(self) -> &'static str {
        match self {
            KeyState::Active => "Active",
            KeyState::Disabled => "Disabled",
            KeyState::Idle => "Disabled (unused)",
            KeyState::Expired => "Expired",
            KeyState::Revoked => "Revoked",
        }
    }
}
