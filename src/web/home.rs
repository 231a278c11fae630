//! Dashboard home: balance, spend, top keys and models, latest requests: unexpected usage
//! is visible at a glance.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::WebResult;
use super::keys::html;
use super::usage::UsageView;
use super::{see_other, Dashboard, Layout};
use crate::domain::{time_util, Credits};
use crate::state::AppState;
use crate::store::keys::KeyStatus;
use crate::store::usage::{Ranked, UsageFilter};

pub struct RankedView {
    pub name: String,
    pub requests: i64,
    pub cost: String,
}

/// Ranked lines whose costs share one number of decimals (aligned decimal points).
fn ranked(rows: Vec<Ranked>) -> Vec<RankedView> {
    let costs: Vec<Credits> = rows.iter().map(|r| r.cost).collect();
    rows.into_iter()
        .zip(Credits::display_column(&costs))
        .map(|(r, cost)| RankedView {
            name: r.name,
            requests: r.requests,
            cost,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    balance: String,
    spent_today: String,
    spent_month: String,
    active_keys: usize,
    top_keys: Vec<RankedView>,
    top_models: Vec<RankedView>,
    recent: Vec<UsageView>,
}

pub async fn index(state: web::Data<AppState>, user: Option<Dashboard>) -> WebResult<HttpResponse> {
    let Some(user) = user else {
        return Ok(see_other("/login"));
    };
    let now = time_util::now_ms();
    let today = time_util::day_number(now);
    let month_start = today - i64::from(time_util::from_ms(now).day()) + 1;
    let store = &state.store;
    let keys = store.list_keys(user.workspace()).await?;
    let names = super::usage::KeyNames::new(&keys);
    let recent = store
        .list_usage(user.workspace(), &UsageFilter::default(), None, 8)
        .await?;
    let page = HomePage {
        balance: user.account.available().display_places(2),
        spent_today: Credits::from_micros(store.spend_since_day(user.workspace(), today).await?)
            .display(),
        spent_month: Credits::from_micros(
            store.spend_since_day(user.workspace(), month_start).await?,
        )
        .display(),
        active_keys: keys
            .iter()
            .filter(|k| k.status != KeyStatus::Revoked)
            .count(),
        top_keys: ranked(
            store
                .top_since_day(user.workspace(), today - 29, true, 5)
                .await?,
        ),
        top_models: ranked(
            store
                .top_since_day(user.workspace(), today - 29, false, 5)
                .await?,
        ),
        recent: super::usage::views(&recent, &names),
        layout: user.layout("home"),
    };
    html(StatusCode::OK, page.render()?)
}
