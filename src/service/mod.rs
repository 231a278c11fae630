//! Services: the rules and actions that more than one surface shares, between the store
//! (SQL) and the surfaces (`web`, the dashboard; `gateway::management`, the API), which only
//! parse and render. A service imports neither surface.

pub mod email_gate;
pub mod invitations;
pub mod keys;
pub mod management_keys;
pub mod usage_export;
pub mod usage_filter;
