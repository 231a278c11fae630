//! The keys service: the one place that decides what creating and changing an API key
//! means. The dashboard's Keys pages and the management API parse their input into a
//! [`KeyFormInput`], call these functions, and render the outcome ([`KeyError`] as a form
//! error or an OpenAI-style JSON error): neither repeats a rule.
//!
//! The rules (validation, which expiry an edit may keep, what a taken name says, the
//! dashboard's and the API's Roll defaults) are plain functions, tested without a database;
//! the actions are one store transaction each. Every action that reveals a new secret
//! takes the email gate's [`Cleared`] (`service::email_gate`): no surface can forget it.

use time::Date;

use super::email_gate::Cleared;
use crate::catalogue::Catalogue;
use crate::domain::audit::Actor;
use crate::domain::key_form::{FieldErrors, KeyFormInput, KeySpec};
use crate::domain::public_id::ManagementKeyPublicId;
use crate::domain::{ApiToken, KeyId, ManagementToken, WorkspaceId};
use crate::store::idempotency::Created;
use crate::store::key_secrets::Retirement;
use crate::store::keys::{KeyRow, KeySwitch};
use crate::store::management_keys::ManagementKeyRow;
use crate::store::{Store, StoreError};

/// What a name that is taken says, on the form and in the API's 400.
pub const NAME_TAKEN: &str =
    "You already have a key with this name, or with a name that looks the \
    same. Choose another, or delete the old key first.";

/// Why a key could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Fields that do not parse, each with its message.
    #[error("invalid key fields")]
    Invalid(Box<FieldErrors>),
    /// Another live key of the workspace has this name, or one that looks the same.
    #[error("{NAME_TAKEN}")]
    NameTaken,
    /// No such live key in this workspace.
    #[error("no such key")]
    NotFound,
    #[error(transparent)]
    Store(StoreError),
}

impl KeyError {
    /// The per-field errors to show: a taken name is an error of the name field.
    pub fn field_errors(&self) -> Option<FieldErrors> {
        match self {
            KeyError::Invalid(e) => Some((**e).clone()),
            KeyError::NameTaken => Some(FieldErrors {
                name: Some(NAME_TAKEN.into()),
                ..FieldErrors::default()
            }),
            _ => None,
        }
    }
}

impl From<StoreError> for KeyError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => KeyError::NameTaken,
            StoreError::NotFound => KeyError::NotFound,
            e => KeyError::Store(e),
        }
    }
}

/// Today in UTC: the earliest expiry a new key may have.
pub fn today() -> Date {
    time::OffsetDateTime::now_utc().date()
}

/// The earliest expiry an edit accepts: today, or the key's own expiry when that is already
/// past, so an edit of other fields may keep it unchanged.
pub fn earliest_expiry(current: Option<Date>, today: Date) -> Date {
    current.map_or(today, |d| d.min(today))
}

/// A new key's scoping, parsed.
pub fn spec_for_create(
    catalogue: &Catalogue,
    input: &KeyFormInput,
    today: Date,
) -> Result<KeySpec, KeyError> {
    input.parse(catalogue, today).map_err(KeyError::Invalid)
}

/// An edited key's scoping, parsed against the key as it is ([`earliest_expiry`]).
pub fn spec_for_edit(
    catalogue: &Catalogue,
    key: &KeyRow,
    input: &KeyFormInput,
    today: Date,
) -> Result<KeySpec, KeyError> {
    input
        .parse(catalogue, earliest_expiry(key.expires_on(), today))
        .map_err(KeyError::Invalid)
}

/// Makes a key with `token` (its only copy goes back to the caller for the one reveal).
pub async fn create(
    store: &Store,
    ws: WorkspaceId,
    spec: &KeySpec,
    token: &ApiToken,
    actor: &Actor,
    _: Cleared,
) -> Result<KeyId, KeyError> {
    Ok(store.create_key(ws, spec, token, actor).await?)
}

/// A request's `Idempotency-Key` and the SHA-256 of its body (hex).
pub struct Once<'a> {
    pub key: &'a str,
    pub request_hash: &'a str,
}

/// [`create`] at most once per `Idempotency-Key` and body within 24 hours (the API's
/// retries): a repeat is [`Created::Replay`] of the key made first, without its token.
pub async fn create_once(
    store: &Store,
    ws: WorkspaceId,
    spec: &KeySpec,
    token: &ApiToken,
    once: Once<'_>,
    actor: &Actor,
    _: Cleared,
) -> Result<Created, KeyError> {
    Ok(store
        .create_key_once(ws, spec, token, once.key, once.request_hash, actor)
        .await?)
}

/// Replaces a live key's name and scoping and, when asked, turns it on or off: one
/// transaction, so a change is never half made.
pub async fn update(
    store: &Store,
    ws: WorkspaceId,
    key: KeyId,
    spec: &KeySpec,
    switch: Option<KeySwitch>,
    actor: &Actor,
) -> Result<(), KeyError> {
    Ok(store.update_key(ws, key, spec, switch, actor).await?)
}

/// Gives a key a new secret; the previous one retires as `retire` says.
pub async fn roll(
    store: &Store,
    ws: WorkspaceId,
    key: KeyId,
    retire: Retirement,
    actor: &Actor,
    _: Cleared,
) -> Result<ApiToken, KeyError> {
    let token = ApiToken::generate();
    store.roll_key(ws, key, &token, retire, actor).await?;
    Ok(token)
}

/// Rolls several API keys and management keys in one transaction (Roll all): every key gets
/// its new secret, or none does, so no secret is made that nobody sees. The API keys' tokens
/// come back in `keys`' order.
pub async fn roll_all(
    store: &Store,
    ws: WorkspaceId,
    keys: &[KeyId],
    management: &[ManagementKeyPublicId],
    retire: Retirement,
    actor: &Actor,
    _: Cleared,
) -> Result<RolledAll, KeyError> {
    let tokens: Vec<ApiToken> = keys.iter().map(|_| ApiToken::generate()).collect();
    let rolls: Vec<(KeyId, &ApiToken)> = keys.iter().copied().zip(tokens.iter()).collect();
    let mk_tokens: Vec<ManagementToken> = management
        .iter()
        .map(|_| ManagementToken::generate())
        .collect();
    let mk_rolls: Vec<_> = management.iter().zip(mk_tokens.iter()).collect();
    let rolled = store
        .roll_keys(ws, &rolls, &mk_rolls, retire, actor)
        .await?;
    let mut mk_tokens: Vec<Option<ManagementToken>> = mk_tokens.into_iter().map(Some).collect();
    let management = rolled
        .into_iter()
        .filter_map(|(row, i)| Some((row, mk_tokens[i].take()?)))
        .collect();
    Ok(RolledAll {
        keys: tokens,
        management,
    })
}

/// What Roll all made: the API keys' new tokens in the order asked, and each management
/// key rolled with its new token (one revoked meanwhile is left out).
pub struct RolledAll {
    pub keys: Vec<ApiToken>,
    pub management: Vec<(ManagementKeyRow, ManagementToken)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn an_edit_may_keep_a_past_expiry_but_not_set_a_new_past_one() {
        let today = date!(2026 - 12 - 07);
        assert_eq!(earliest_expiry(None, today), today);
        assert_eq!(earliest_expiry(Some(date!(2027 - 01 - 01)), today), today);
        let past = date!(2026 - 11 - 30);
        assert_eq!(earliest_expiry(Some(past), today), past);
    }

    #[test]
    fn a_taken_name_is_an_error_of_the_name_field_and_store_errors_keep_their_kind() {
        let e = KeyError::from(StoreError::Conflict);
        assert!(matches!(e, KeyError::NameTaken));
        let fields = e.field_errors().unwrap();
        assert_eq!(fields.first(), Some(("name", NAME_TAKEN)));
        assert!(matches!(
            KeyError::from(StoreError::NotFound),
            KeyError::NotFound
        ));
        assert!(KeyError::NotFound.field_errors().is_none());
    }

    #[test]
    fn a_new_key_refuses_a_past_expiry_and_a_negative_limit_field_by_field() {
        let catalogue = Catalogue::load(None).unwrap();
        let today = date!(2026 - 12 - 07);
        let bad = KeyFormInput {
            name: "svc".into(),
            daily_limit: "-1".into(),
            expires: "2026-12-01".into(),
            ..KeyFormInput::default()
        };
        let fields = spec_for_create(&catalogue, &bad, today)
            .unwrap_err()
            .field_errors()
            .unwrap();
        assert!(fields.daily_limit.is_some() && fields.expires.is_some());
        assert!(fields.name.is_none());
        let good = KeyFormInput {
            name: "svc".into(),
            ..KeyFormInput::default()
        };
        assert_eq!(
            spec_for_create(&catalogue, &good, today).unwrap().name,
            "svc"
        );
    }
}
