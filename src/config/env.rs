//! `LOWROUTER_*` environment variables, applied over the file's settings.

use std::fmt;
use std::time::Duration;

use super::*;

impl Settings {
    /// Long on purpose: one line per environment variable, as in the README's table.
    pub(super) fn apply_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: fmt::Display,
        {
            v.trim().parse().map_err(|e: T::Err| ConfigError::Env {
                name,
                message: e.to_string(),
            })
        }
        if let Some(v) = get("LOWROUTER_WEBHOOK_ALLOW_PRIVATE_TARGETS") {
            self.webhook_allow_private_targets =
                parse("LOWROUTER_WEBHOOK_ALLOW_PRIVATE_TARGETS", &v)?;
        }
        if let Some(v) = get("LOWROUTER_BIND") {
            self.bind = v;
        }
        if let Some(v) = get("LOWROUTER_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("LOWROUTER_SESSION_SECRET") {
            self.session_secret = Some(Secret(v));
        }
        if let Some(v) = get("LOWROUTER_COOKIE_SECURE") {
            // Empty: derived from public_base_url again (over the file's value).
            self.cookie_secure = match v.trim() {
                "" => None,
                v => Some(parse("LOWROUTER_COOKIE_SECURE", v)?),
            };
        }
        if let Some(v) = get("LOWROUTER_SESSION_IDLE_MINUTES") {
            self.session_idle =
                Duration::from_secs(parse::<u64>("LOWROUTER_SESSION_IDLE_MINUTES", &v)? * 60);
        }
        if let Some(v) = get("LOWROUTER_SIGNUP_GRANT") {
            self.signup_grant = parse("LOWROUTER_SIGNUP_GRANT", &v)?;
        }
        if let Some(v) = get("LOWROUTER_AUDIT_RETENTION_DAYS") {
            self.audit_retention_days = parse::<u32>("LOWROUTER_AUDIT_RETENTION_DAYS", &v)?.max(1);
        }
        if let Some(v) = get("LOWROUTER_USAGE_RETENTION_DAYS") {
            self.usage_retention_days = parse::<u32>("LOWROUTER_USAGE_RETENTION_DAYS", &v)?;
        }
        if let Some(v) = get("LOWROUTER_CATALOGUE") {
            self.catalogue_path = Some(PathBuf::from(v));
        }
        if let Some(v) = get("LOWROUTER_CORS_ALLOWED_ORIGINS") {
            let list = v
                .split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty());
            self.cors_allowed_origins =
                parse_origins("LOWROUTER_CORS_ALLOWED_ORIGINS", list.collect())?;
        }
        if let Some(v) = get("LOWROUTER_METRICS_BIND") {
            // Empty turns metrics off again (over the file's value).
            self.metrics_bind = Some(v).filter(|v| !v.trim().is_empty());
        }
        if let Some(v) = get("LOWROUTER_SHUTDOWN_TIMEOUT_SECS") {
            self.shutdown_timeout =
                Duration::from_secs(parse("LOWROUTER_SHUTDOWN_TIMEOUT_SECS", &v)?);
        }
        if let Some(v) = get("LOWROUTER_UPSTREAM_TIMEOUT_SECS") {
            self.upstream_timeout =
                Duration::from_secs(parse("LOWROUTER_UPSTREAM_TIMEOUT_SECS", &v)?);
        }
        if let Some(v) = get("LOWROUTER_TRUSTED_PROXIES") {
            self.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(parse_proxy)
                .collect::<Result<_, _>>()
                .map_err(|message| ConfigError::Env {
                    name: "LOWROUTER_TRUSTED_PROXIES",
                    message,
                })?;
        }
        if let Some(v) = get("LOWROUTER_TRUSTED_PROXY_HEADER") {
            self.trusted_proxy_header =
                ProxyHeader::parse(&v).map_err(|message| ConfigError::Env {
                    name: "LOWROUTER_TRUSTED_PROXY_HEADER",
                    message,
                })?;
        }
        if let Some(v) = get("LOWROUTER_UPSTREAM_MAX_BODY_BYTES") {
            self.upstream_max_body_bytes =
                parse::<usize>("LOWROUTER_UPSTREAM_MAX_BODY_BYTES", &v)?.max(1024);
        }
        if let Some(v) = get("LOWROUTER_MAX_BODY_BYTES") {
            self.max_body_bytes = parse("LOWROUTER_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("LOWROUTER_SIGNUP_MAX_PER_HOUR") {
            self.signup_max_per_hour = parse("LOWROUTER_SIGNUP_MAX_PER_HOUR", &v)?;
        }
        if let Some(v) = get("LOWROUTER_SESSION_MAX_AGE_DAYS") {
            self.session_max_age =
                Duration::from_secs(parse::<u64>("LOWROUTER_SESSION_MAX_AGE_DAYS", &v)? * 86_400);
        }
        if let Some(v) = get("LOWROUTER_REQUIRE_EMAIL_VERIFICATION") {
            self.require_email_verification = parse("LOWROUTER_REQUIRE_EMAIL_VERIFICATION", &v)?;
        }
        // Empty unsets (over the file's value), as for `metrics_bind`.
        if let Some(v) = get("LOWROUTER_SMTP_URL") {
            self.smtp_url = Some(v).filter(|v| !v.trim().is_empty()).map(Secret);
        }
        if let Some(v) = get("LOWROUTER_MAIL_FROM") {
            self.mail_from = Some(v).filter(|v| !v.trim().is_empty());
        }
        if let Some(v) = get("LOWROUTER_PUBLIC_BASE_URL") {
            self.public_base_url = match v.trim() {
                "" => None,
                v => Some(parse_base_url(v).map_err(|message| ConfigError::Env {
                    name: "LOWROUTER_PUBLIC_BASE_URL",
                    message,
                })?),
            };
        }
        let budget = &mut self.invitation_budget;
        for (name, field) in [
            (
                "LOWROUTER_INVITATIONS_PER_INVITER_PER_DAY",
                &mut budget.per_inviter,
            ),
            (
                "LOWROUTER_INVITATIONS_PER_WORKSPACE_PER_DAY",
                &mut budget.per_workspace,
            ),
            (
                "LOWROUTER_INVITATIONS_PER_ADDRESS_PER_DAY",
                &mut budget.per_address,
            ),
        ] {
            if let Some(v) = get(name) {
                *field = parse::<u32>(name, &v)?.max(1);
            }
        }
        Ok(())
    }
}
