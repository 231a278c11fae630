//! URL-encoded form bodies with repeated fields (`models=a&models=b`), which serde's
//! urlencoded deserializer cannot express as a `Vec`. Every POST reads its body through
//! [`CsrfForm`], so no state-changing handler can forget the CSRF check.

use std::future::Future;
use std::pin::Pin;

use actix_session::SessionExt;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use super::error::WebError;
use super::session::TypedSession;

pub const CSRF_FIELD: &str = "csrf_token";

/// A form body whose CSRF token and origin were checked.
pub struct CsrfForm(pub Vec<(String, String)>);

impl CsrfForm {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn get_all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn take(&mut self, name: &str) -> String {
        match self.0.iter().position(|(k, _)| k == name) {
            Some(i) => self.0.swap_remove(i).1,
            None => String::new(),
        }
    }
}

/// A request from another site is refused even before the token is compared: browsers
/// send `Origin` on every cross-site POST.
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let host = req.connection_info().host().to_owned();
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        == Some(host.as_str())
}

impl FromRequest for CsrfForm {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let body = body.await?;
            if !same_origin(&req) {
                return Err(WebError::Csrf.into());
            }
            let fields: Vec<(String, String)> = form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let session = TypedSession(req.get_session());
            let expected = session.csrf_token().map_err(|_| WebError::Csrf)?;
            let given = fields
                .iter()
                .find(|(k, _)| k == CSRF_FIELD)
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            match expected {
                Some(exp) if bool::from(exp.as_bytes().ct_eq(given.as_bytes())) => {
                    Ok(CsrfForm(fields))
                }
                _ => Err(WebError::Csrf.into()),
            }
        })
    }
}
