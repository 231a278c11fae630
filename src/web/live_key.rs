//! The [`LiveKey`] extractor: what every page and action about one key starts from.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use super::error::WebError;
use super::Dashboard;
use crate::domain::KeyId;
use crate::state::AppState;
use crate::store::keys::{KeyRow, KeyStatus};

/// The signed-in member and the live key of their current workspace that the route's
/// `{id}` names. A malformed id, another workspace's key and a deleted key are all 404:
/// ids reveal nothing.
pub struct LiveKey {
    pub user: Dashboard,
    pub key: KeyRow,
}

impl FromRequest for LiveKey {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let user = super::dashboard(&req).await?;
            let id = req
                .match_info()
                .get("id")
                .and_then(KeyId::parse)
                .ok_or(WebError::NotFound)?;
            let state = req
                .app_data::<web::Data<AppState>>()
                .expect("AppState registered");
            let key = live_key(state, &user, id).await?;
            Ok(LiveKey { user, key })
        })
    }
}

/// A key of `user`'s current workspace that is not deleted.
pub(super) async fn live_key(
    state: &AppState,
    user: &Dashboard,
    id: KeyId,
) -> Result<KeyRow, WebError> {
    let key = state.store.key(user.workspace(), id).await?;
    if key.status == KeyStatus::Revoked {
        return Err(WebError::NotFound);
    }
    Ok(key)
}
