//! LowRouter Keys: the API-key dashboard and the key-enforcing OpenAI-compatible gateway.
//! See ARCHITECTURE.md for the map.

// One `unsafe` block in all (a glibc malloc tuning call, `web::password`), allowed there alone.
#![deny(unsafe_code)]

pub mod alerts;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod domain;
pub mod gateway;
pub mod health;
pub mod mail;
pub mod metrics;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod transport;
pub mod web;
