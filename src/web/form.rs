//! URL-encoded form bodies with repeated fields (`models=a&models=b`), which serde's
//! urlencoded deserializer cannot express as a `Vec`. Every POST reads its body through
//! [`CsrfForm`] (signed in: the token is kept in the session) or [`PublicForm`] (sign-up,
//! log-in and the email verification link's form: maybe no session yet), so no state-changing handler can forget the CSRF check.
//!
//! **Why the public forms have no session.** Showing the sign-up or log-in form to a stranger
//! must not write anything (it wrote a session row per GET: 500 requests, 500 rows). Their
//! token is a signed double submit instead: a random nonce in a cookie of its own
//! ([`FORM_COOKIE`], HttpOnly, SameSite=Lax) and, in the form, HMAC-SHA256 of that nonce under
//! a key derived from the session secret. A POST passes when the token is the HMAC of the
//! nonce its cookie carries. Another site can make a browser send the cookie, but it can
//! neither read it nor compute its HMAC, and the `Origin` check still runs first. (Unlike a
//! session token, the nonce is not bound to a server-side row, so a sibling domain able to
//! plant cookies could pair its own nonce and token: that only lets it submit a log-in or
//! sign-up form, never an action of a signed-in account, which stays on [`CsrfForm`].)

use std::future::Future;
use std::pin::Pin;

use actix_session::SessionExt;
use actix_web::cookie::{Cookie, Key, SameSite};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::WebError;
use super::session::{FormUse, TypedSession};
use crate::state::AppState;

pub const CSRF_FIELD: &str = "csrf_token";

/// A form body whose CSRF token and origin were checked, and the path it was sent to.
pub struct CsrfForm {
    fields: Vec<(String, String)>,
    action: String,
}

impl CsrfForm {
    fn new(fields: Vec<(String, String)>, req: &HttpRequest) -> Self {
        CsrfForm {
            fields,
            action: req.path().to_owned(),
        }
    }

    /// Claims the form's one-time `form_id` for the path it was sent to: see
    /// [`TypedSession::claim_form`]. Every form that makes something (a key, a secret, an
    /// invitation, an endpoint, a workspace) carries one, so a reload never acts twice.
    pub fn claim(&self, session: &TypedSession) -> Result<FormUse, WebError> {
        session.claim_form(&self.action, self.get("form_id"))
    }

    pub fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn get_all(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn take(&mut self, name: &str) -> String {
        match self.fields.iter().position(|(k, _)| k == name) {
            Some(i) => self.fields.swap_remove(i).1,
            None => String::new(),
        }
    }
}

/// A request from another site is refused even before the token is compared: browsers
/// send `Origin` on every cross-site POST. The host it must match is the `Host` header, or
/// what a trusted proxy says the client asked for (never `X-Forwarded-Host` from anyone
/// else: see `crate::client`).
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let host = req
        .app_data::<web::Data<AppState>>()
        .and_then(|state| state.proxies.requested_host(req));
    let Some(host) = host else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        == Some(host.as_str())
}

/// The body's fields, once its `Origin` passed.
async fn read_fields(
    req: &HttpRequest,
    body: impl Future<Output = Result<web::Bytes, actix_web::Error>>,
) -> Result<Vec<(String, String)>, actix_web::Error> {
    let body = body.await?;
    if !same_origin(req) {
        return Err(WebError::Csrf.into());
    }
    Ok(form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

fn given_token(fields: &[(String, String)]) -> &str {
    fields
        .iter()
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

impl FromRequest for CsrfForm {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let fields = read_fields(&req, body).await?;
            let session = TypedSession(req.get_session());
            let expected = session.csrf_token().map_err(|_| WebError::Csrf)?;
            match expected {
                Some(exp) if bool::from(exp.as_bytes().ct_eq(given_token(&fields).as_bytes())) => {
                    Ok(CsrfForm::new(fields, &req))
                }
                _ => Err(WebError::Csrf.into()),
            }
        })
    }
}

/// The cookie carrying the public forms' nonce.
pub const FORM_COOKIE: &str = "lowrouter_form";
const NONCE_CHARS: usize = 32;

/// The HMAC key of the public forms' tokens.
pub struct FormKey(Vec<u8>);

impl FormKey {
    /// From the session key's signing half, with its own label, so a form token is never
    /// valid as anything else that key signs.
    pub fn derive(session_key: &Key) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(session_key.signing())
            .expect("HMAC takes keys of any length");
        mac.update(b"lowrouter public form csrf v1");
        FormKey(mac.finalize().into_bytes().to_vec())
    }

    fn mac(&self, nonce: &str) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(nonce.as_bytes());
        mac
    }

    /// The form token for `nonce`.
    pub fn token(&self, nonce: &str) -> String {
        hex::encode(self.mac(nonce).finalize().into_bytes())
    }

    /// Constant time.
    pub fn verify(&self, nonce: &str, token: &str) -> bool {
        match hex::decode(token) {
            Ok(bytes) => self.mac(nonce).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

/// The nonce of the request's form cookie, if it has a well-formed one.
fn form_nonce(req: &HttpRequest) -> Option<String> {
    let c = req.cookie(FORM_COOKIE)?;
    let v = c.value();
    (v.len() == NONCE_CHARS && v.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| v.to_owned())
}

/// `response` (a page with a public form) with the form's nonce cookie, when
/// [`public_form_token`] made one.
pub fn with_form_cookie(
    mut response: actix_web::HttpResponse,
    cookie: Option<Cookie<'static>>,
) -> Result<actix_web::HttpResponse, WebError> {
    if let Some(cookie) = cookie {
        response.add_cookie(&cookie).map_err(WebError::internal)?;
    }
    Ok(response)
}

/// The token to put in a public form for this request, and the cookie to set with the page
/// when the request had none.
pub fn public_form_token(
    req: &HttpRequest,
    key: &FormKey,
    secure: bool,
) -> (String, Option<Cookie<'static>>) {
    if let Some(nonce) = form_nonce(req) {
        return (key.token(&nonce), None);
    }
    let nonce = crate::domain::token::random_token();
    let cookie = Cookie::build(FORM_COOKIE, nonce.clone())
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .finish();
    (key.token(&nonce), Some(cookie))
}

/// A public form body (sign-up, log-in, email verification) whose origin and signed double-submit token were checked
/// (see the module doc). Derefs to [`CsrfForm`] for reading fields.
pub struct PublicForm(pub CsrfForm);

impl std::ops::Deref for PublicForm {
    type Target = CsrfForm;
    fn deref(&self) -> &CsrfForm {
        &self.0
    }
}

impl std::ops::DerefMut for PublicForm {
    fn deref_mut(&mut self) -> &mut CsrfForm {
        &mut self.0
    }
}

impl FromRequest for PublicForm {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let fields = read_fields(&req, body).await?;
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or(WebError::Csrf)?;
            let nonce = form_nonce(&req).ok_or(WebError::Csrf)?;
            if !state.form_key.verify(&nonce, given_token(&fields)) {
                return Err(WebError::Csrf.into());
            }
            Ok(PublicForm(CsrfForm::new(fields, &req)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_tokens_are_bound_to_their_nonce_and_key() {
        let key = FormKey::derive(&Key::generate());
        let t = key.token("a".repeat(32).as_str());
        assert!(key.verify(&"a".repeat(32), &t));
        assert!(!key.verify(&"b".repeat(32), &t), "another nonce");
        assert!(!key.verify(&"a".repeat(32), "zz"), "not hex");
        assert!(!key.verify(&"a".repeat(32), ""), "empty");
        let other = FormKey::derive(&Key::generate());
        assert!(!other.verify(&"a".repeat(32), &t), "another server's key");
    }
}
