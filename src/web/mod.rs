//! The server-rendered dashboard. Handlers are thin: parse (domain types), call the store,
//! render a template or redirect (post/redirect/get), with errors as [`error::WebError`].

pub mod alerts;
pub mod assets;
pub mod auth;
pub mod client;
pub mod error;
mod error_summary;
pub mod form;
pub mod headers;
pub mod home;
pub mod key_life;
pub mod key_view;
pub mod keys;
pub mod management_keys;
mod not_found;
pub use not_found::with_layout as not_found_with_layout;
pub mod password;
pub mod reasons;
pub mod session;
mod snippets;
pub mod throttle;
pub mod usage;
mod usage_chart;
mod usage_csv;
pub mod verify;
pub mod when;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use crate::state::AppState;
use crate::store::accounts::AccountRow;
use crate::store::key_secrets::LeakedSecret;
use error::WebError;
use session::TypedSession;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home::index))
        .route("/signup", web::get().to(auth::signup_form))
        .route("/signup", web::post().to(auth::signup))
        .route("/login", web::get().to(auth::login_form))
        .route("/login", web::post().to(auth::login))
        .route("/logout", web::post().to(auth::logout))
        .route(
            "/sessions/others/logout",
            web::post().to(auth::log_out_others),
        )
        .route("/keys", web::get().to(keys::list))
        .route("/keys", web::post().to(keys::create))
        .route("/keys/new", web::get().to(keys::new_form))
        .route("/keys/{id}/edit", web::get().to(keys::edit_form))
        .route("/keys/{id}/edit", web::post().to(keys::update))
        .route("/keys/{id}/disable", web::post().to(keys::disable))
        .route("/keys/{id}/enable", web::post().to(keys::enable))
        .route("/keys/{id}/delete", web::get().to(keys::confirm_delete))
        .route("/keys/{id}/delete", web::post().to(keys::delete))
        .route("/keys/{id}", web::get().to(key_life::show))
        .route("/keys/{id}/roll", web::get().to(key_life::roll_form))
        .route("/keys/{id}/roll", web::post().to(key_life::roll))
        .route("/keys/{id}/retire", web::post().to(key_life::retire))
        .route("/keys/{id}/extend", web::post().to(key_life::extend))
        .route("/management-keys", web::get().to(management_keys::list))
        .route("/management-keys", web::post().to(management_keys::create))
        .route(
            "/management-keys/{id}/revoke",
            web::post().to(management_keys::revoke),
        )
        .route("/alerts", web::get().to(alerts::list))
        .route("/alerts/read", web::post().to(alerts::mark_read))
        .route("/alerts/settings", web::get().to(alerts::settings))
        .route("/alerts/settings", web::post().to(alerts::save_settings))
        .route("/alerts/webhooks", web::post().to(alerts::create_endpoint))
        .route(
            "/alerts/webhooks/{id}/delete",
            web::post().to(alerts::delete_endpoint),
        )
        .route(
            "/alerts/webhooks/{id}/test",
            web::post().to(alerts::send_test),
        )
        .route(
            "/alerts/keys/{id}/auto-disable",
            web::post().to(alerts::auto_disable),
        )
        .route("/usage", web::get().to(usage::list))
        .route("/usage.csv", web::get().to(usage_csv::export_csv))
        .route("/usage/{generation_id}", web::get().to(usage::detail))
        .route("/verify-email", web::get().to(verify::confirm_page))
        .route("/verify-email", web::post().to(verify::verify))
        .route("/verify-email/resend", web::post().to(verify::resend))
        .route("/static/{file}", web::get().to(assets::serve));
}

/// The session cookie's name (set in `startup`).
pub const SESSION_COOKIE: &str = "lowrouter_session";
/// The largest dashboard form body (the biggest, the key form with every model ticked, is a
/// few KiB): the gateway's much larger `max_body_bytes` is for chat requests with images.
pub const FORM_BODY_LIMIT: usize = 256 * 1024;

/// What every dashboard page's layout shows: who is signed in, the balance, and the CSRF
/// token for the logout button (and the page's own forms).
pub struct Layout {
    pub email: String,
    pub balance: String,
    pub csrf: String,
    pub nav: &'static str,
    pub flash: Option<String>,
    /// A neutral notice (nothing changed), e.g. a re-sent New key form.
    pub info: Option<String>,
    /// The account must still verify its email (`require_email_verification`): the banner
    /// with Resend shows, and key creation is refused.
    pub unverified: bool,
    /// What verification will add, for the banner ("" when nothing).
    pub pending_grant: String,
    /// Secrets reported as leaked and not retired: a banner on every page.
    pub leaks: Vec<LeakBanner>,
    /// Unread alerts (the nav's count; 100 means 100 or more).
    pub unread: i64,
}

/// One leaked secret in the layout's banner, with a one-click Roll of its key.
pub struct LeakBanner {
    pub key_id: i64,
    pub name: String,
    pub masked: String,
    pub url: String,
}

/// A signed-in account. Extracting it from a request that has none answers with a
/// redirect to the login page.
pub struct Dashboard {
    pub account: AccountRow,
    pub session: TypedSession,
    pub csrf: String,
    /// See [`Layout::unverified`].
    pub unverified: bool,
    pending_grant: crate::domain::Credits,
    pub leaks: Vec<LeakedSecret>,
    unread: i64,
}

impl Dashboard {
    pub fn layout(&self, nav: &'static str) -> Layout {
        Layout {
            email: self.account.email.clone(),
            balance: self.account.available().display_places(2),
            csrf: self.csrf.clone(),
            nav,
            flash: self.session.take_flash(),
            info: self.session.take_info(),
            unverified: self.unverified,
            pending_grant: if self.unverified && self.pending_grant != crate::domain::Credits::ZERO
            {
                self.pending_grant.to_string()
            } else {
                String::new()
            },
            leaks: self
                .leaks
                .iter()
                .map(|l| LeakBanner {
                    key_id: l.key_id,
                    name: l.name.clone(),
                    masked: crate::domain::token::masked(&l.token_prefix, &l.token_last4),
                    url: l
                        .quarantine_url
                        .clone()
                        .unwrap_or_else(|| "an unknown place".into()),
                })
                .collect(),
            unread: self.unread,
        }
    }

    pub fn id(&self) -> i64 {
        self.account.id
    }
}

impl FromRequest for Dashboard {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .expect("AppState registered")
                .clone();
            let session = TypedSession(actix_session::SessionExt::get_session(&req));
            let Some(id) = session.account_id()? else {
                return Err(WebError::LoginRequired.into());
            };
            // Every page shows the balance, and several show usage and spend: all of them
            // must see every request answered so far.
            state.usage.settled().await;
            state.ledger.return_account_leases(id).await;
            let account = match state.store.account(id).await {
                Ok(a) => a,
                Err(crate::store::StoreError::NotFound) => {
                    session.log_out();
                    return Err(WebError::LoginRequired.into());
                }
                Err(e) => return Err(WebError::from(e).into()),
            };
            let csrf = session.ensure_csrf_token()?;
            let unverified = state.settings.require_email_verification && !account.email_verified();
            let leaks = state
                .store
                .leaked_secrets(id)
                .await
                .map_err(WebError::from)?;
            let unread = state
                .store
                .unread_alerts(id)
                .await
                .map_err(WebError::from)?;
            Ok(Dashboard {
                unread,
                account,
                session,
                csrf,
                unverified,
                pending_grant: state.settings.signup_grant,
                leaks,
            })
        })
    }
}

/// Post/redirect/get.
pub fn see_other(location: &str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, location))
        .finish()
}
