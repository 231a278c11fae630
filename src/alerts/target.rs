//! Webhook targets are untrusted input (a workspace member types the URL). A target must be
//! http(s) with a host, no user or password, and every address it resolves to must be
//! public: not loopback, private, link-local (cloud metadata), shared (CGNAT), multicast,
//! broadcast, documentation or unspecified, in IPv4 or IPv6 (IPv4-mapped included).
//! Checked when the endpoint is saved and again at each delivery, where the client's
//! resolver ([`CheckedResolver`]) hands the connection only the addresses it checked, so a
//! name that changes its answer between check and connect (DNS rebinding) cannot slip
//! through. The operator's `webhook_allow_private_targets` lifts the address rule (for
//! self-hosted receivers and the tests), never the scheme rule.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Longest accepted URL.
pub const MAX_URL: usize = 2048;

/// Words of [`TargetError::Private`]'s message, to find it in a client error's chain.
pub const REFUSED_MARK: &str = "otherwise not public";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("Enter an http:// or https:// URL.")]
    Scheme,
    #[error("Enter a URL like https://hooks.example.com/lowrouter (at most 2048 characters, no user name or password).")]
    Malformed,
    #[error("This address is private, loopback, link-local or otherwise not public; webhooks go to public addresses only.")]
    Private,
    #[error("This host name does not resolve.")]
    Unresolved,
}

/// Parses a target URL (no I/O). IP literals are checked here; names by [`check_resolved`].
pub fn parse(s: &str, allow_private: bool) -> Result<Url, TargetError> {
    let s = s.trim();
    if s.is_empty() || s.len() > MAX_URL || s.chars().any(char::is_control) {
        return Err(TargetError::Malformed);
    }
    let url = Url::parse(s).map_err(|_| TargetError::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Malformed);
    }
    if let Some(ip) = literal_ip(&url) {
        if !allow_private && !is_public(ip) {
            return Err(TargetError::Private);
        }
    }
    Ok(url)
}

/// The URL's host when it is an IP address.
pub fn literal_ip(url: &Url) -> Option<IpAddr> {
    // The URL parser has already normalised IPv4 forms (`127.1`, `2130706433`).
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Resolves the URL's host now and refuses it if any address is not public (save time).
pub async fn check_resolved(url: &Url, allow_private: bool) -> Result<(), TargetError> {
    if literal_ip(url).is_some() || allow_private {
        return Ok(());
    }
    let host = url.host_str().ok_or(TargetError::Malformed)?;
    let port = url.port_or_known_default().unwrap_or(443);
    resolve_checked(host, port).await.map(|_| ())
}

async fn resolve_checked(host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| TargetError::Unresolved)?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolved);
    }
    // One private answer refuses the name: a mix is how rebinding attacks look.
    if addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(TargetError::Private);
    }
    Ok(addrs)
}

/// Whether an address may receive webhooks.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, shared (CGNAT)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64: an IPv4 address inside
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible
        }
    }
}

/// The delivery client's resolver: resolves, refuses names with any non-public address,
/// and returns exactly the addresses it checked (the connection goes to one of them).
struct CheckedResolver;

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve_checked(&host, 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The client deliveries use: no redirects, no proxy from the environment, short timeouts,
/// and (unless private targets are allowed) the checking resolver.
pub fn client(allow_private: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .user_agent("LowRouter-Webhooks/1");
    if !allow_private {
        b = b.dns_resolver(Arc::new(CheckedResolver));
    }
    b.build().expect("the webhook client builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad}");
        }
        for good in ["93.184.216.34", "2606:2800:220:1::1", "1.1.1.1"] {
            assert!(is_public(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn urls_are_parsed_strictly() {
        assert_eq!(parse("file:///etc/passwd", true), Err(TargetError::Scheme));
        assert_eq!(parse("gopher://x", true), Err(TargetError::Scheme));
        assert_eq!(
            parse("http://u:p@example.com/", true),
            Err(TargetError::Malformed)
        );
        assert_eq!(parse("http://[::1]/", false), Err(TargetError::Private));
        assert_eq!(parse("http://127.1/", false), Err(TargetError::Private));
        assert_eq!(
            parse("http://2130706433/", false),
            Err(TargetError::Private)
        );
        assert!(parse("http://127.0.0.1:9/", true).is_ok());
        assert_eq!(
            parse("https://a\0b.example/", true),
            Err(TargetError::Malformed)
        );
    }
}
