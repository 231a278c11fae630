//! The server-rendered dashboard. Handlers are thin: parse (domain types), call the store,
//! render a template or redirect (post/redirect/get), with errors as [`error::WebError`].

pub mod access;
pub mod alerts;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod error;
mod error_summary;
pub mod form;
pub mod headers;
pub mod home;
mod invitation;
pub mod key_life;
pub mod key_view;
pub mod keys;
mod live_key;
pub mod management_keys;
pub mod members;
mod not_found;
mod offboarding;
pub use not_found::with_layout as not_found_with_layout;
pub mod session;
mod snippets;
pub mod throttle;
pub mod usage;
mod usage_chart;
mod usage_csv;
pub mod verify;
mod webhooks;
pub mod when;
pub mod workspaces;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use crate::domain::audit::Actor;
use crate::domain::team::Role;
use crate::domain::{KeyId, UserId, WorkspaceId};
use crate::service::email_gate::{self, Cleared, Unverified};
use crate::state::AppState;
use crate::store::accounts::AccountRow;
use crate::store::key_secrets::LeakedSecret;
use crate::store::members::MembershipRow;
use error::WebError;
use session::TypedSession;

/// Registers every route of the table and makes the table [`RULES`]: a route cannot exist
/// without the rule that says who may call it (`web::access`).
macro_rules! dashboard_routes {
    ($($method:ident $path:literal => $handler:path, $need:expr;)*) => {
        /// Every dashboard route and what it needs (`web::access`).
        pub const RULES: &[access::Rule] = &[
            $(access::Rule { method: stringify!($method), path: $path, need: $need },)*
        ];

        pub fn routes(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

use crate::domain::team::Role::{Admin, Developer, Owner, Viewer};
use access::Need::{OwnKey, Public, Role as At};

dashboard_routes! {
    get "/" => home::index, Public;
    get "/signup" => auth::signup_form, Public;
    post "/signup" => auth::signup, Public;
    get "/login" => auth::login_form, Public;
    post "/login" => auth::login, Public;
    post "/logout" => auth::logout, Public;
    post "/sessions/others/logout" => auth::log_out_others, At(Viewer);
    get "/keys" => keys::list, At(Viewer);
    post "/keys" => keys::create, At(Developer);
    get "/keys/new" => keys::new_form, At(Developer);
    get "/keys/{id}/edit" => keys::edit_form, OwnKey;
    post "/keys/{id}/edit" => keys::update, OwnKey;
    post "/keys/{id}/disable" => keys::disable, OwnKey;
    post "/keys/{id}/enable" => keys::enable, OwnKey;
    get "/keys/{id}/delete" => keys::confirm_delete, OwnKey;
    post "/keys/{id}/delete" => keys::delete, OwnKey;
    get "/keys/{id}" => key_life::show, At(Viewer);
    get "/keys/{id}/roll" => key_life::roll_form, OwnKey;
    post "/keys/{id}/roll" => key_life::roll, OwnKey;
    post "/keys/{id}/retire" => key_life::retire, OwnKey;
    post "/keys/{id}/extend" => key_life::extend, OwnKey;
    get "/management-keys" => management_keys::list, At(Admin);
    post "/management-keys" => management_keys::create, At(Admin);
    post "/management-keys/{id}/revoke" => management_keys::revoke, At(Admin);
    post "/management-keys/{id}/roll" => management_keys::roll, At(Admin);
    get "/alerts" => alerts::list, At(Viewer);
    post "/alerts/read" => alerts::mark_read, At(Viewer);
    get "/alerts/settings" => alerts::settings, At(Admin);
    post "/alerts/settings" => alerts::save_settings, At(Admin);
    post "/alerts/webhooks" => webhooks::create_endpoint, At(Admin);
    post "/alerts/webhooks/{id}/delete" => webhooks::delete_endpoint, At(Admin);
    post "/alerts/webhooks/{id}/test" => webhooks::send_test, At(Admin);
    post "/alerts/webhooks/{id}/roll" => webhooks::roll_endpoint, At(Admin);
    post "/alerts/keys/{id}/auto-disable" => alerts::auto_disable, OwnKey;
    get "/usage" => usage::list, At(Viewer);
    get "/usage.csv" => usage_csv::export_csv, At(Viewer);
    get "/usage/{generation_id}" => usage::detail, At(Viewer);
    get "/verify-email" => verify::confirm_page, Public;
    post "/verify-email" => verify::verify, Public;
    post "/verify-email/resend" => verify::resend, At(Viewer);
    post "/workspace" => members::switch, At(Viewer);
    get "/workspaces/new" => workspaces::new_form, At(Viewer);
    post "/workspaces" => workspaces::create, At(Viewer);
    get "/workspace/settings" => workspaces::settings, At(Owner);
    post "/workspace/settings" => workspaces::rename, At(Owner);
    get "/workspace/delete" => workspaces::confirm_delete, At(Owner);
    post "/workspace/delete" => workspaces::delete, At(Owner);
    get "/members" => members::list, At(Viewer);
    post "/members/invite" => members::invite, At(Admin);
    post "/members/{user}/role" => members::change_role, At(Admin);
    post "/members/{user}/remove" => members::remove, At(Admin);
    post "/members/leave" => members::leave, At(Viewer);
    get "/members/{user}/offboarding" => offboarding::offboarding, At(Admin);
    post "/members/{user}/offboarding/roll-all" => offboarding::roll_all, At(Admin);
    post "/members/{user}/offboarding/hand-over" => offboarding::hand_over, At(Admin);
    post "/invitations/{id}/revoke" => members::revoke_invitation, At(Admin);
    get "/invitations/{token}" => invitation::show, Public;
    post "/invitations/{token}" => invitation::accept, At(Viewer);
    get "/audit" => audit::list, At(Admin);
    get "/audit.csv" => audit::export_csv, At(Admin);
    get "/static/{file}" => assets::serve, Public;
}

/// The session cookie's name (set in `startup`).
pub const SESSION_COOKIE: &str = "lowrouter_session";
/// The largest dashboard form body (the biggest, the key form with every model ticked, is a
/// few KiB): the gateway's much larger `max_body_bytes` is for chat requests with images.
pub const FORM_BODY_LIMIT: usize = 256 * 1024;

/// What every dashboard page's layout shows: who is signed in, the workspace and its
/// balance, the switcher, and the CSRF token for the logout button (and the page's forms).
pub struct Layout {
    pub email: String,
    pub balance: String,
    pub csrf: String,
    pub nav: &'static str,
    pub flash: Option<String>,
    /// Undoes what the flash reports (Disable: Enable), as a button beside it.
    pub undo: Option<session::Undo>,
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
    /// The current workspace's name, and every workspace of this person (the switcher).
    pub workspace: String,
    pub workspace_id: WorkspaceId,
    pub workspaces: Vec<MembershipRow>,
    /// What this member may do, for showing only the actions the server would accept.
    pub can: Can,
    /// The one-time id of this page's state-changing forms (`form_id`): each form's action
    /// claims it once ([`form::CsrfForm::claim`]).
    pub form_id: String,
}

/// The actions a page offers, from the member's role (the server checks again: `access`).
#[derive(Debug, Clone, Copy)]
pub struct Can {
    /// Create keys (developers and up).
    pub create_keys: bool,
    /// Change any key (admins and owners); developers: their own, see [`Can::change_key`].
    pub change_any_key: bool,
    pub developer: bool,
    /// Members, invitations, management keys and the audit log (admins and owners).
    pub admin: bool,
    /// Workspace settings: rename, delete (owners).
    pub owner: bool,
    pub user_id: UserId,
}

impl Can {
    fn of(role: Role, user: UserId) -> Can {
        Can {
            create_keys: role >= Role::Developer,
            change_any_key: role >= Role::Admin,
            developer: role == Role::Developer,
            admin: role >= Role::Admin,
            owner: role == Role::Owner,
            user_id: user,
        }
    }

    /// Whether this member may change a key created by `created_by`.
    pub fn change_key(&self, created_by: &Option<UserId>) -> bool {
        self.change_any_key || (self.developer && *created_by == Some(self.user_id))
    }
}

/// One leaked secret in the layout's banner, with a one-click Roll of its key.
pub struct LeakBanner {
    pub key_id: KeyId,
    pub name: String,
    pub masked: String,
    pub url: String,
}

/// A signed-in member of the current workspace, allowed by the route's rule. Extracting it
/// from a request that has no session answers with a redirect to the login page; a role
/// below the rule's, 403.
pub struct Dashboard {
    /// The current workspace's row (balance, and the id every key and usage query uses).
    pub account: AccountRow,
    /// The person and their email.
    pub user: UserId,
    pub email: String,
    pub role: Role,
    pub workspaces: Vec<MembershipRow>,
    pub session: TypedSession,
    pub csrf: String,
    /// See [`Layout::unverified`]: `gate` failed.
    pub unverified: bool,
    /// The email gate for this person (`service::email_gate`): what minting a secret,
    /// inviting and accepting an invitation need.
    gate: Result<Cleared, Unverified>,
    pending_grant: crate::domain::Credits,
    pub leaks: Vec<LeakedSecret>,
    unread: i64,
    /// The person as the audit log records them, with the request's address and agent.
    pub actor: Actor,
}

impl Dashboard {
    pub fn layout(&self, nav: &'static str) -> Layout {
        Layout {
            email: self.email.clone(),
            balance: self.account.available().display_places(2),
            csrf: self.csrf.clone(),
            nav,
            flash: self.session.take_flash(),
            undo: self.session.take_undo(),
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
            workspace: self.account.name.clone(),
            workspace_id: self.account.id,
            workspaces: self.workspaces.clone(),
            can: Can::of(self.role, self.user),
            form_id: session::random_token(),
        }
    }

    /// The email gate's pass, or 403 saying to verify first (`service::email_gate`).
    pub fn cleared(&self) -> Result<Cleared, WebError> {
        Ok(self.gate?)
    }

    /// The current workspace (the account every key, credit and usage query is keyed by).
    pub fn workspace(&self) -> WorkspaceId {
        self.account.id
    }
}

impl FromRequest for Dashboard {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { dashboard(&req).await.map_err(Into::into) })
    }
}

/// The signed-in person, their current workspace and role (read on every request: a
/// removed member loses the workspace on their next request), checked against the route's
/// rule.
pub(super) async fn dashboard(req: &HttpRequest) -> Result<Dashboard, WebError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .expect("AppState registered")
        .clone();
    let session = TypedSession(actix_session::SessionExt::get_session(req));
    let Some(user) = session.user_id()? else {
        return Err(WebError::LoginRequired);
    };
    let person = match state.store.account(user.personal_workspace()).await {
        Ok(a) => a,
        Err(crate::store::StoreError::NotFound) => {
            session.log_out();
            return Err(WebError::LoginRequired);
        }
        Err(e) => return Err(e.into()),
    };
    let workspaces = state.store.memberships(user).await?;
    let own = user.personal_workspace();
    let wanted = session.workspace_id()?.unwrap_or(own);
    let (ws, role) = match workspaces.iter().find(|m| m.account_id == wanted) {
        Some(m) => (m.account_id, m.role),
        None => {
            // Removed from the workspace this session was in (or never a member): that
            // workspace is gone from this session at once; back to one of their own.
            let Some(first) = workspaces
                .iter()
                .find(|m| m.account_id == own)
                .or(workspaces.first())
            else {
                session.log_out();
                return Err(WebError::LoginRequired);
            };
            session.set_workspace(first.account_id)?;
            if wanted != own {
                session.set_flash("You are no longer a member of that workspace.")?;
            }
            (first.account_id, first.role)
        }
    };
    check_route(req, &state, ws, user, role).await?;
    // Every page shows the balance, and several show usage and spend: all of them must see
    // every request answered so far.
    state.usage.settled().await;
    state.ledger.return_account_leases(ws).await;
    let account = if ws == own {
        person.clone()
    } else {
        state.store.account(ws).await?
    };
    let csrf = session.ensure_csrf_token()?;
    let gate = email_gate::check(state.settings.require_email_verification, &person);
    let leaks = state.store.leaked_secrets(ws).await?;
    let unread = state.store.unread_alerts(ws).await?;
    let actor = Actor::user(user.0, &person.email).from_client(
        state.proxies.client_ip(req),
        req.headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    );
    Ok(Dashboard {
        unread,
        account,
        user,
        email: person.email,
        role,
        workspaces,
        session,
        csrf,
        unverified: gate.is_err(),
        gate,
        pending_grant: state.settings.signup_grant,
        leaks,
        actor,
    })
}

/// Whether `role` (and, for a developer, authorship of the key) allows the matched route's
/// rule (`dashboard_routes!`). 403 otherwise; a key of another workspace is 404.
async fn check_route(
    req: &HttpRequest,
    state: &AppState,
    ws: WorkspaceId,
    user: UserId,
    role: Role,
) -> Result<(), WebError> {
    // No route matched (the signed-in 404 page renders the layout): no handler runs, so
    // there is nothing to allow; every matched route has its rule (`dashboard_routes!`).
    let need = match req.match_pattern() {
        None => access::Need::Public,
        Some(pattern) => {
            access::rule_for(RULES, req.method().as_str(), &pattern).ok_or(WebError::Forbidden)?
        }
    };
    match access::judge(need, role) {
        access::Verdict::Allow => {}
        access::Verdict::Deny => return Err(WebError::Forbidden),
        access::Verdict::IfCreator => {
            let key_id = req
                .match_info()
                .get("id")
                .and_then(KeyId::parse)
                .ok_or(WebError::NotFound)?;
            let key = state.store.key(ws, key_id).await?;
            if key.created_by != Some(user) {
                return Err(WebError::Forbidden);
            }
        }
    }
    Ok(())
}

/// The answer to a form sent again (`FormUse::Repeat`): nothing is done a second time; the
/// page where the first submission's result lives says "Already done" and what it did.
pub fn already_done(
    user: &Dashboard,
    done: Option<session::FormDone>,
    fallback: &str,
) -> Result<actix_web::HttpResponse, WebError> {
    let (location, message) = match done {
        Some(d) => (d.location, format!("Already done: {}", d.message)),
        None => (
            fallback.to_owned(),
            "Already done: that form was sent before, so nothing was done again.".to_owned(),
        ),
    };
    user.session.set_info(&message)?;
    Ok(see_other(&location))
}

/// A page asking to confirm an action that would break something in use: its form sends
/// `confirm=1` to the same action.
#[derive(askama::Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub title: String,
    pub message: String,
    pub action: String,
    pub button: &'static str,
    pub cancel: String,
}

impl ConfirmPage {
    pub fn respond(self) -> Result<actix_web::HttpResponse, WebError> {
        use askama::Template as _;
        keys::html(actix_web::http::StatusCode::OK, self.render()?)
    }
}

/// Whether something last used at `last_used_at` served a request within the last hour:
/// then cutting it off asks first.
pub fn used_within_hour(last_used_at: Option<i64>, now: i64) -> bool {
    last_used_at.is_some_and(|t| now - t < 3_600_000)
}

/// Post/redirect/get.
pub fn see_other(location: &str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, location))
        .finish()
}
