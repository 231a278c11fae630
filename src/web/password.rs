//! Password hashing: argon2id with the crate's defaults, which are OWASP's recommendation
//! (19 MiB, 2 iterations, 1 lane). Always off the async executor.

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordVerifier};

use crate::domain::Password;

pub fn hash(password: &Password) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.expose().as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify(candidate: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(candidate.as_bytes(), phc)
        .is_ok()
}

/// Hash of a password nobody knows: verified when the email is unknown, so a wrong email
/// costs the same time as a wrong password.
pub fn dummy_hash() -> String {
    let p = Password::parse(crate::web::session::random_token()).expect("32 characters");
    hash(&p).expect("argon2 with default parameters")
}

pub async fn hash_blocking(password: Password) -> Result<String, String> {
    actix_web::rt::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| e.to_string())?
}

pub async fn verify_blocking(candidate: String, phc: String) -> bool {
    actix_web::rt::task::spawn_blocking(move || verify(&candidate, &phc))
        .await
        .unwrap_or(false)
}
