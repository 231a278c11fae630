//! Sign up, log in, log out, log out other sessions.
//!
//! The sign-up and log-in pages write no session (see `web::form` for their CSRF token); a
//! session row is first written when someone actually signs in.

use crate::domain::audit::{Action, Actor};
use crate::store::audit::AuditEvent;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::{WebError, WebResult};
use super::form::{public_form_token, with_form_cookie, CsrfForm, PublicForm};
use super::session::TypedSession;
use super::{see_other, Dashboard};
use crate::domain::{Email, Password, UserId, VerifyToken};
use crate::state::AppState;
use crate::store::StoreError;

#[derive(Template, Default)]
#[template(path = "auth.html")]
struct AuthPage {
    signup: bool,
    csrf: String,
    email: String,
    email_error: Option<String>,
    password_error: Option<String>,
    error: Option<String>,
    flash: Option<String>,
    /// An open invitation the person came from: the page says so, the email is prefilled,
    /// and signing in or up leads back to it to accept.
    invitation: Option<Invited>,
}

/// An invitation carried through sign-up and log-in (`?invitation=<token>`, then a hidden
/// field): the same secret as the invitation link's path, kept out of logs like it (only
/// route patterns are logged) and never stored in a session.
struct Invited {
    token: String,
    workspace: String,
    email: String,
    role: &'static str,
}

/// The open invitation `token` names, if any (a wrong or used one is simply not carried).
async fn invited(state: &AppState, token: &str) -> Option<Invited> {
    let token = VerifyToken::parse(token).ok()?;
    let link = state
        .store
        .invitation_by_token(&token.hash())
        .await
        .ok()??;
    let inv = link.invitation;
    inv.is_open(crate::domain::time_util::now_ms())
        .then(|| Invited {
            token: token.expose().to_owned(),
            workspace: link.workspace,
            email: inv.email,
            role: inv.role.label(),
        })
}

/// Where a person goes once signed in: back to their invitation to accept it, or Keys.
fn landing(invitation: &Option<Invited>) -> String {
    match invitation {
        Some(i) => format!("/invitations/{}", i.token),
        None => "/keys".to_owned(),
    }
}

fn render(page: AuthPage, status: StatusCode) -> WebResult<HttpResponse> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

/// The form's CSRF token for a re-rendered page (the POST carried a valid nonce cookie).
fn public_csrf(state: &AppState, req: &HttpRequest) -> String {
    public_form_token(req, &state.form_key, state.settings.cookie_secure()).0
}

async fn form_page(
    state: web::Data<AppState>,
    session: TypedSession,
    req: HttpRequest,
    query: web::Query<std::collections::HashMap<String, String>>,
    signup: bool,
) -> WebResult<HttpResponse> {
    let invitation = match query.get("invitation") {
        Some(t) => invited(&state, t).await,
        None => None,
    };
    if session.user_id()?.is_some() {
        return Ok(see_other(&landing(&invitation)));
    }
    let (csrf, cookie) = public_form_token(&req, &state.form_key, state.settings.cookie_secure());
    let response = render(
        AuthPage {
            signup,
            csrf,
            flash: session.take_flash(),
            email: invitation
                .as_ref()
                .map(|i| i.email.clone())
                .unwrap_or_default(),
            invitation,
            ..Default::default()
        },
        StatusCode::OK,
    )?;
    with_form_cookie(response, cookie)
}

pub async fn signup_form(
    state: web::Data<AppState>,
    session: TypedSession,
    req: HttpRequest,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> WebResult<HttpResponse> {
    form_page(state, session, req, query, true).await
}

pub async fn login_form(
    state: web::Data<AppState>,
    session: TypedSession,
    req: HttpRequest,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> WebResult<HttpResponse> {
    form_page(state, session, req, query, false).await
}

/// Long on purpose: the sign-up in the order it must happen (parse, throttle, hash off the
/// executor, create, sign in, mail the link), each refusal re-rendering the form.
pub async fn signup(
    state: web::Data<AppState>,
    session: TypedSession,
    req: HttpRequest,
    mut form: PublicForm,
) -> WebResult<HttpResponse> {
    let raw_email = form.take("email");
    let email = Email::parse(&raw_email);
    let password = Password::parse(form.take("password"), email.as_ref().ok());
    let invitation = invited(&state, &form.take("invitation")).await;
    let mut page = AuthPage {
        signup: true,
        csrf: public_csrf(&state, &req),
        email: raw_email,
        invitation,
        ..Default::default()
    };
    if let Err(e) = &email {
        page.email_error = Some(capitalise(&e.to_string()));
    }
    if let Err(e) = &password {
        page.password_error = Some(capitalise(&e.to_string()));
    }
    let (Ok(email), Ok(password)) = (email, password) else {
        return render(page, StatusCode::UNPROCESSABLE_ENTITY);
    };
    // Counted before hashing (each sign-up costs an argon2 run), per client address.
    let attempt = match state.signups.begin(state.proxies.client_ip(&req)) {
        Ok(a) => a,
        Err(wait) => {
            page.error = Some(format!(
                "Too many accounts were created from your network. Try again in {}.",
                minutes(wait)
            ));
            return render(page, StatusCode::TOO_MANY_REQUESTS);
        }
    };
    let hash = match state.hasher.hash(password).await {
        Ok(h) => h,
        Err(e) => {
            state.signups.abandoned(attempt);
            return Err(e.into());
        }
    };
    // With verification on, the account starts unverified and without its grant, and the
    // link goes out by mail (`web::verify`).
    let grant = state.settings.signup_grant;
    let token = state
        .settings
        .require_email_verification
        .then(VerifyToken::generate);
    let created = match &token {
        Some(t) => {
            state
                .store
                .create_unverified_account(&email, &hash, &t.hash())
                .await
        }
        None => state.store.create_account(&email, &hash, grant).await,
    };
    match created {
        Ok(id) => {
            tracing::info!(account_id = %id, "account created");
            session.log_in(id)?;
            let welcome = match &token {
                Some(t) => {
                    super::verify::mail_link(&state, id, &email, t);
                    format!("Welcome! We sent a link to {}.", email.as_str())
                }
                None => format!(
                    "Welcome! Your account has {grant} credits to start with. Create your first API key below."
                ),
            };
            session.set_flash(&welcome)?;
            Ok(see_other(&landing(&page.invitation)))
        }
        Err(StoreError::Conflict) => {
            page.email_error =
                Some("An account with this email already exists. Log in instead.".into());
            render(page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(e) => Err(e.into()),
    }
}

/// Long on purpose: the login in the order it must happen (throttle by address and email,
/// verify against the account or the dummy hash so timing says nothing, audit, sign in).
pub async fn login(
    state: web::Data<AppState>,
    session: TypedSession,
    req: HttpRequest,
    mut form: PublicForm,
) -> WebResult<HttpResponse> {
    let raw_email = form.take("email");
    let candidate = form.take("password");
    let invitation = invited(&state, &form.take("invitation")).await;
    let mut page = AuthPage {
        signup: false,
        csrf: public_csrf(&state, &req),
        email: raw_email.clone(),
        invitation,
        ..Default::default()
    };
    let email = match Email::parse(&raw_email) {
        Ok(e) => e,
        Err(e) => {
            page.email_error = Some(capitalise(&e.to_string()));
            return render(page, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    // Counted before argon2 runs, as one step with the check (see `web::throttle`).
    let attempt = match state
        .throttle
        .begin(email.as_str(), state.proxies.client_ip(&req))
    {
        Ok(a) => a,
        Err(wait) => {
            page.error = Some(format!(
                "Too many failed attempts. For your security, wait {} and try again.",
                minutes(wait)
            ));
            return render(page, StatusCode::TOO_MANY_REQUESTS);
        }
    };
    // Unknown email and wrong password take the same path through argon2 and give the
    // same answer.
    let account = match state.store.account_by_email(&email).await {
        Ok(a) => a,
        Err(e) => {
            state.throttle.abandoned(attempt);
            return Err(e.into());
        }
    };
    let phc = account
        .as_ref()
        .map_or_else(|| state.dummy_hash.to_string(), |a| a.password_hash.clone());
    let ok = match state.hasher.verify(candidate, phc).await {
        Ok(ok) => ok,
        Err(e) => {
            state.throttle.abandoned(attempt);
            return Err(e.into());
        }
    };
    // Logins are audited in the person's own workspace; an unknown email has none.
    let audit = |a: &crate::store::accounts::AccountRow, action| {
        let actor = Actor::user(a.id.0, &a.email).from_client(
            state.proxies.client_ip(&req),
            req.headers()
                .get(actix_web::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        );
        AuditEvent::new(a.id, &actor, action)
    };
    match account {
        Some(a) if ok => {
            state.throttle.succeeded(attempt);
            state
                .store
                .record_audit(&audit(&a, Action::LoginSucceeded))
                .await?;
            session.log_in(UserId(a.id.0))?;
            tracing::info!(account_id = %a.id, "logged in");
            Ok(see_other(&landing(&page.invitation)))
        }
        other => {
            drop(attempt); // a failure: it stays counted
            if let Some(a) = &other {
                state
                    .store
                    .record_audit(&audit(a, Action::LoginFailed))
                    .await?;
            }
            crate::metrics::login_failure();
            page.error = Some("Email or password is incorrect.".into());
            render(page, StatusCode::UNAUTHORIZED)
        }
    }
}

pub async fn logout(session: TypedSession, _form: CsrfForm) -> WebResult<HttpResponse> {
    session.log_out();
    Ok(see_other("/login"))
}

/// "1 minute", "15 minutes" (rounded up, at least one).
fn minutes(wait: std::time::Duration) -> String {
    let m = wait.as_secs().div_ceil(60).max(1);
    format!("{m} minute{}", if m == 1 { "" } else { "s" })
}

/// Ends every other session of the signed-in account: other browsers, other devices, a
/// cookie someone copied. The current session is recognised by its cookie (encrypted with the
/// session key; the store keeps only its id's hash).
pub async fn log_out_others(
    state: web::Data<AppState>,
    user: Dashboard,
    req: HttpRequest,
    _form: CsrfForm,
) -> WebResult<HttpResponse> {
    let current = current_session_hash(&req, &state.session_key)
        .ok_or_else(|| WebError::internal("signed in without a readable session cookie"))?;
    let ended = state
        .store
        .delete_other_sessions(user.user, &current)
        .await
        .map_err(crate::store::StoreError::from)?;
    tracing::info!(account_id = user.user.0, ended, "logged out other sessions");
    user.session.set_flash(&match ended {
        0 => "There were no other sessions to log out.".to_owned(),
        1 => "Logged out 1 other session.".to_owned(),
        n => format!("Logged out {n} other sessions."),
    })?;
    Ok(see_other("/"))
}

/// The stored hash of the session this request carries, read from its (encrypted) cookie
/// the way actix-session reads it.
fn current_session_hash(req: &HttpRequest, key: &actix_web::cookie::Key) -> Option<String> {
    let cookie = req.cookie(super::SESSION_COOKIE)?;
    let mut jar = actix_web::cookie::CookieJar::new();
    jar.add_original(cookie);
    let id = jar.private(key).get(super::SESSION_COOKIE)?;
    Some(crate::store::sessions::session_id_hash(id.value()))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}
