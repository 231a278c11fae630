//! Workspaces a person makes and their owners run: New workspace (zero credits, the creator
//! its owner, at most `CREATE_LIMIT` live ones each), Workspace settings (rename) and
//! Delete workspace (type the name to confirm; a personal workspace, the account someone
//! signs in with, is never deleted). The SQL is in `store/accounts/workspaces.rs`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::{WebError, WebResult};
use super::form::CsrfForm;
use super::keys::html;
use super::session::FormUse;
use super::{already_done, see_other, Dashboard, Layout};
use crate::domain::team::{WorkspaceKind, WorkspaceName, CREATE_LIMIT};
use crate::state::AppState;
use crate::store::accounts::workspaces::{Personal, TooMany};
use crate::store::keys::KeyStatus;

const PERSONAL: &str = "This is your personal workspace: the account you sign in with. \
    It cannot be deleted.";

/// A one-field form's state: what was typed and what is wrong with it.
#[derive(Default)]
struct NameField {
    name: String,
    error: Option<String>,
}

impl NameField {
    fn failed(name: &str, error: String) -> NameField {
        NameField {
            name: name.to_owned(),
            error: Some(error),
        }
    }
}

/// The form's `name`, or the field to show back with its error (what was typed kept).
fn name_field(form: &CsrfForm) -> Result<WorkspaceName, NameField> {
    let raw = form.get("name");
    WorkspaceName::parse(raw).map_err(|e| NameField::failed(raw, e))
}

#[derive(Template)]
#[template(path = "workspace_new.html")]
struct NewPage {
    layout: Layout,
    field: NameField,
    limit: i64,
}

fn new_page(user: &Dashboard, field: NameField, status: StatusCode) -> WebResult<HttpResponse> {
    let page = NewPage {
        layout: user.layout("members"),
        field,
        limit: CREATE_LIMIT,
    };
    html(status, page.render()?)
}

pub async fn new_form(user: Dashboard) -> WebResult<HttpResponse> {
    new_page(&user, NameField::default(), StatusCode::OK)
}

/// Makes the workspace and switches the session into it. A re-sent form (used form id)
/// makes no second one.
pub async fn create(
    state: web::Data<AppState>,
    user: Dashboard,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let name = match name_field(&form) {
        Ok(n) => n,
        Err(field) => return new_page(&user, field, StatusCode::UNPROCESSABLE_ENTITY),
    };
    let ticket = match form.claim(&user.session)? {
        FormUse::First(t) => t,
        FormUse::Repeat(done) => return already_done(&user, done, "/members"),
    };
    let made = state
        .store
        .create_workspace(user.user, &name, CREATE_LIMIT, &user.actor)
        .await?;
    let ws = match made {
        Ok(ws) => ws,
        Err(TooMany) => {
            let e = format!(
                "You already have {CREATE_LIMIT} workspaces you made. Delete one you no longer \
                 need first."
            );
            let field = NameField::failed(name.as_str(), e);
            return new_page(&user, field, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    tracing::info!(account_id = %ws, "workspace created");
    user.session.form_done(
        ticket,
        "/members",
        format!("the workspace “{}” was created.", name.as_str()),
    )?;
    user.session.set_workspace(ws)?;
    user.session.set_flash(&format!(
        "Created “{}”: you are its owner and are working in it now. It starts with no credits.",
        name.as_str()
    ))?;
    Ok(see_other("/members"))
}

#[derive(Template)]
#[template(path = "workspace_settings.html")]
struct SettingsPage {
    layout: Layout,
    field: NameField,
    personal: Option<&'static str>,
}

fn settings_page(
    user: &Dashboard,
    field: NameField,
    status: StatusCode,
) -> WebResult<HttpResponse> {
    let page = SettingsPage {
        layout: user.layout("members"),
        field,
        personal: (user.account.kind == WorkspaceKind::Personal).then_some(PERSONAL),
    };
    html(status, page.render()?)
}

pub async fn settings(user: Dashboard) -> WebResult<HttpResponse> {
    let field = NameField {
        name: user.account.name.clone(),
        error: None,
    };
    settings_page(&user, field, StatusCode::OK)
}

/// Renames the workspace; a name that breaks the rules is shown back with its error and
/// nothing changes.
pub async fn rename(
    state: web::Data<AppState>,
    user: Dashboard,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let name = match name_field(&form) {
        Ok(n) => n,
        Err(field) => return settings_page(&user, field, StatusCode::UNPROCESSABLE_ENTITY),
    };
    state
        .store
        .rename_workspace(user.workspace(), &name, &user.actor)
        .await?;
    user.session
        .set_flash(&format!("Renamed to “{}”.", name.as_str()))?;
    Ok(see_other("/workspace/settings"))
}

#[derive(Template)]
#[template(path = "workspace_delete.html")]
struct DeletePage {
    layout: Layout,
    name: String,
    keys: usize,
    management_keys: usize,
    members: usize,
    balance: String,
    typed: String,
    error: Option<String>,
}

async fn delete_page(
    state: &AppState,
    user: &Dashboard,
    typed: String,
    error: Option<String>,
    status: StatusCode,
) -> WebResult<HttpResponse> {
    let ws = user.workspace();
    let keys = state.store.list_keys(ws).await?;
    let mks = state.store.list_management_keys(ws).await?;
    let page = DeletePage {
        layout: user.layout("members"),
        name: user.account.name.clone(),
        keys: keys
            .iter()
            .filter(|k| k.status != KeyStatus::Revoked)
            .count(),
        management_keys: mks.iter().filter(|k| k.revoked_at.is_none()).count(),
        members: state.store.members(ws).await?.len(),
        balance: user.account.available().display_places(2),
        typed,
        error,
    };
    html(status, page.render()?)
}

/// A personal workspace has no Delete: its settings page says why, and a crafted POST is
/// refused here (and by the store).
fn refuse_personal(user: &Dashboard) -> WebResult<()> {
    match user.account.kind {
        WorkspaceKind::Personal => Err(WebError::BadRequest(PERSONAL.into())),
        WorkspaceKind::Team => Ok(()),
    }
}

pub async fn confirm_delete(
    state: web::Data<AppState>,
    user: Dashboard,
) -> WebResult<HttpResponse> {
    refuse_personal(&user)?;
    delete_page(&state, &user, String::new(), None, StatusCode::OK).await
}

/// Deletes the workspace once its name is typed exactly; the owner goes back to their own.
pub async fn delete(
    state: web::Data<AppState>,
    user: Dashboard,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    refuse_personal(&user)?;
    let typed = form.get("confirm_name");
    if typed.trim() != user.account.name {
        let e = format!(
            "Type the workspace's name, “{}”, exactly. Nothing was deleted.",
            user.account.name
        );
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return delete_page(&state, &user, typed.to_owned(), Some(e), status).await;
    }
    let deleted = state
        .store
        .delete_workspace(user.workspace(), &user.actor)
        .await?
        .map_err(|Personal| WebError::BadRequest(PERSONAL.into()))?;
    tracing::info!(account_id = %user.workspace(), "workspace deleted");
    user.session.set_workspace(user.user.personal_workspace())?;
    user.session.set_flash(&format!(
        "Deleted “{}”: {} API keys and {} management keys revoked, {} members removed.",
        deleted.name, deleted.keys, deleted.management_keys, deleted.members
    ))?;
    Ok(see_other("/keys"))
}
