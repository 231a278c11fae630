//! The email-verification gate (`require_email_verification`), in one place. With the
//! setting on, a person whose address is not verified yet may look around, but does
//! nothing that hands out access or reaches other people: no new secret of any kind (API
//! key create and roll, Roll all, management key create and roll, and, through the
//! management API, key create and roll with a management key they made), no invitation
//! sent, none accepted. Accepting matters as much as minting: an invitation is for an
//! address, and only a verified address proves that the person holding the link owns it.
//!
//! Every surface asks [`check`] (the dashboard for the person signed in, the management API
//! for the person who made its key: [`check_management_key`]), and every service function
//! that mints a secret, invites or accepts takes the [`Cleared`] it returns: a path that
//! forgot to ask does not compile. Verification only ever goes from unverified to verified,
//! so no key minted through this gate belongs to an unverified person, and the gateway
//! needs no check of its own (ARCHITECTURE.md, "Keys belong to verified accounts").
//!
//! Outside the gate, on purpose: the command line (`lowrouter management-key create`, an
//! operator's act; a management key it makes has no person behind it and passes).

use crate::domain::UserId;
use crate::store::accounts::AccountRow;
use crate::store::management_keys::{ManagementKeyRow, Via};
use crate::store::{Store, StoreError};

/// The gate's pass: whoever acts has verified their email, or the operator does not ask
/// for it. Only this module makes one.
#[derive(Debug, Clone, Copy)]
pub struct Cleared(());

/// The person must verify their email address first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the email address is not verified yet")]
pub struct Unverified;

/// Why a management key may not mint.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Unverified(#[from] Unverified),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The rule: `person` (the account a person signs in with) passes when `required` is off or
/// their address is verified.
pub fn check(required: bool, person: &AccountRow) -> Result<Cleared, Unverified> {
    if required && !person.email_verified() {
        Err(Unverified)
    } else {
        Ok(Cleared(()))
    }
}

/// The management API's case: the rule for the person who made `key` on the dashboard (the
/// key acts for them, so it may do what they may). A key made on the command line passes.
pub async fn check_management_key(
    store: &Store,
    required: bool,
    key: &ManagementKeyRow,
) -> Result<Cleared, GateError> {
    if !required {
        return Ok(Cleared(()));
    }
    match (key.created_via, key.created_by) {
        (Via::Cli, _) => Ok(Cleared(())),
        (Via::Dashboard, Some(person)) => {
            let person = store.account(UserId(person).personal_workspace()).await?;
            Ok(check(required, &person)?)
        }
        // A dashboard key without its person cannot be vouched for.
        (Via::Dashboard, None) => Err(Unverified.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::team::WorkspaceKind;
    use crate::domain::{Credits, WorkspaceId};

    fn person(verified_at: Option<i64>) -> AccountRow {
        AccountRow {
            id: WorkspaceId(1),
            email: "ann@example.com".into(),
            password_hash: "!".into(),
            balance: Credits::ZERO,
            reserved: Credits::ZERO,
            email_verified_at: verified_at,
            name: "ann@example.com".into(),
            kind: WorkspaceKind::Personal,
        }
    }

    #[test]
    fn only_an_unverified_person_is_stopped_and_only_when_required() {
        assert!(check(true, &person(Some(1))).is_ok());
        assert_eq!(check(true, &person(None)).unwrap_err(), Unverified);
        assert!(
            check(false, &person(None)).is_ok(),
            "the operator does not ask"
        );
    }
}
