//! Integration tests: the real server on a free port with a fresh database (SQLite by
//! default; PostgreSQL when LOWROUTER_TEST_DATABASE_URL points at one), driven over HTTP.

#[path = "../common/mod.rs"]
mod common;

mod alerts;
mod auth;
mod cli;
mod email_verify;
mod embeddings;
mod gateway;
mod helpers;
mod hostile;
mod invitation_budget;
mod keys;
mod lifecycle;
mod management;
mod offboarding;
mod one_rule;
mod openrouter;
mod ops;
mod providers;
mod rate_limits;
mod refusals;
mod resubmit;
mod schema_parity;
mod sdk;
mod security;
mod sessions;
mod smtp_sink;
mod teams;
mod throttle;
mod usage;
mod usage_scale;
mod verify_gate;
mod workspaces;
