//! Domain types: values that exist are valid. Input is parsed into these at the edge
//! (forms, CLI, config, HTTP headers) and the rest of the code never re-checks it.

pub mod audit;
pub mod client_hint;
pub mod credits;
pub mod email;
pub mod error_code;
pub mod event_id;
pub mod ids;
pub mod key_form;
pub mod key_name;
pub mod password;
pub mod public_id;
pub mod reasons;
pub mod roll_form;
pub mod team;
pub mod text;
pub mod time_util;
pub mod token;
pub mod verify_token;

pub use credits::Credits;
pub use email::Email;
pub use error_code::ErrorCode;
pub use ids::{KeyId, LeaseId, UserId, WorkspaceId};
pub use password::Password;
pub use token::{ApiToken, ManagementToken, TokenError, TokenHash};
pub use verify_token::VerifyToken;
