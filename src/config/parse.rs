//! Parsing single setting values: origins, the public base URL, proxies, SQLite paths.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::ConfigError;

/// Origins as browsers send them: scheme, host and port only (`https://app.example.com`),
/// checked here so that a typo fails at start with a message, not in the CORS middleware.
pub(super) fn parse_origins(
    name: &'static str,
    list: Vec<String>,
) -> Result<Vec<String>, ConfigError> {
    for o in &list {
        let exact = reqwest::Url::parse(o)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .map(|u| u.origin().ascii_serialization());
        if exact.as_deref() != Some(o.as_str()) {
            return Err(ConfigError::Env {
                name,
                message: format!("{o:?} is not an origin like https://app.example.com (no path, no trailing slash)"),
            });
        }
    }
    Ok(list)
}

/// `https://keys.example.com` or `http://127.0.0.1:8080/prefix`: http(s), a host, no user,
/// query or fragment; kept without its trailing slash, so `{base}/verify-email` is a link.
pub(super) fn parse_base_url(v: &str) -> Result<String, String> {
    let bad = |why: &str| format!("{v:?} {why}; expected a URL like https://keys.example.com");
    let url = reqwest::Url::parse(v.trim()).map_err(|_| bad("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("is not an http(s) address"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("holds a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("has a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// One `trusted_proxies` entry: an address (`10.0.0.1`, `::1`) or a CIDR range
/// (`10.0.0.0/8`, `fd00::/8`).
pub fn parse_proxy(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))
}

/// `sqlite://relative.db` in a config file means relative to that file.
pub(super) fn resolve_sqlite_url(url: &str, base: &Path) -> String {
    match url.strip_prefix("sqlite://") {
        Some(rest) if !rest.starts_with('/') && !rest.starts_with(':') => {
            format!("sqlite://{}", base.join(rest).display())
        }
        _ => url.to_owned(),
    }
}
