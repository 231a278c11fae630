//! Sign up, log in, log out.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::{WebError, WebResult};
use super::form::CsrfForm;
use super::session::TypedSession;
use super::{password, see_other};
use crate::domain::{Email, Password};
use crate::startup::AppState;
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
}

fn render(page: AuthPage, status: StatusCode) -> WebResult<HttpResponse> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

async fn form_page(session: TypedSession, signup: bool) -> WebResult<HttpResponse> {
    if session.account_id()?.is_some() {
        return Ok(see_other("/keys"));
    }
    let csrf = session.ensure_csrf_token()?;
    render(
        AuthPage {
            signup,
            csrf,
            flash: session.take_flash(),
            ..Default::default()
        },
        StatusCode::OK,
    )
}

pub async fn signup_form(session: TypedSession) -> WebResult<HttpResponse> {
    form_page(session, true).await
}

pub async fn login_form(session: TypedSession) -> WebResult<HttpResponse> {
    form_page(session, false).await
}

pub async fn signup(
    state: web::Data<AppState>,
    session: TypedSession,
    mut form: CsrfForm,
) -> WebResult<HttpResponse> {
    let raw_email = form.take("email");
    let email = Email::parse(&raw_email);
    let password = Password::parse(form.take("password"));
    let mut page = AuthPage {
        signup: true,
        csrf: session.ensure_csrf_token()?,
        email: raw_email,
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
    let hash = password::hash_blocking(password)
        .await
        .map_err(WebError::Internal)?;
    match state
        .store
        .create_account(&email, &hash, state.settings.signup_grant)
        .await
    {
        Ok(id) => {
            tracing::info!(account_id = id, "account created");
            session.log_in(id)?;
            session.set_flash(&format!(
                "Welcome! Your account has {} credits to start with. Create your first API key below.",
                state.settings.signup_grant
            ))?;
            Ok(see_other("/keys"))
        }
        Err(StoreError::Conflict) => {
            page.email_error =
                Some("An account with this email already exists. Log in instead.".into());
            render(page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn login(
    state: web::Data<AppState>,
    session: TypedSession,
    req: HttpRequest,
    mut form: CsrfForm,
) -> WebResult<HttpResponse> {
    let raw_email = form.take("email");
    let candidate = form.take("password");
    let mut page = AuthPage {
        signup: false,
        csrf: session.ensure_csrf_token()?,
        email: raw_email.clone(),
        ..Default::default()
    };
    let email = match Email::parse(&raw_email) {
        Ok(e) => e,
        Err(e) => {
            page.email_error = Some(capitalise(&e.to_string()));
            return render(page, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    let ip = format!(
        "ip:{}",
        req.peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default()
    );
    let email_key = format!("email:{}", email.as_str());
    let keys = [email_key.as_str(), ip.as_str()];
    if let Some(wait) = state.throttle.blocked_for(&keys) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        page.error = Some(format!(
            "Too many failed attempts. For your security, wait {minutes} minute{} and try again.",
            if minutes == 1 { "" } else { "s" }
        ));
        return render(page, StatusCode::TOO_MANY_REQUESTS);
    }
    // Unknown email and wrong password take the same path through argon2 and give the
    // same answer.
    let account = state.store.account_by_email(&email).await?;
    let phc = account
        .as_ref()
        .map_or_else(|| state.dummy_hash.to_string(), |a| a.password_hash.clone());
    let ok = password::verify_blocking(candidate, phc).await;
    match account {
        Some(a) if ok => {
            state.throttle.clear(&email_key);
            session.log_in(a.id)?;
            tracing::info!(account_id = a.id, "logged in");
            Ok(see_other("/keys"))
        }
        _ => {
            state.throttle.record_failure(&keys);
            page.error = Some("Email or password is incorrect.".into());
            render(page, StatusCode::UNAUTHORIZED)
        }
    }
}

pub async fn logout(session: TypedSession, _form: CsrfForm) -> WebResult<HttpResponse> {
    session.log_out();
    Ok(see_other("/login"))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}
