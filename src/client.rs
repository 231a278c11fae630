//! Who is asking: the client's address (for the login and sign-up throttles) and the host it
//! asked for (for the CSRF Origin check).
//!
//! Forwarding headers (`Forwarded`, `X-Forwarded-For`, `X-Forwarded-Host`) are written by
//! whoever sends the request, so they are believed only when the TCP peer is one of the
//! configured `trusted_proxies`. The chain is then read from the right (the hop our proxy
//! appended) leftwards, skipping further trusted proxies: the first address that is not one
//! is the client. Anything to its left was written by the client and is ignored.

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderMap};
use actix_web::HttpRequest;
use ipnet::IpNet;

/// The configured reverse proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for `req` (see the module doc).
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        self.client_ip_from(req.peer_addr().map(|a| a.ip()), req.headers())
    }

    /// The host the client asked for: the `Host` header, or what a trusted proxy says it was.
    pub fn requested_host(&self, req: &HttpRequest) -> Option<String> {
        let direct = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        self.requested_host_from(req.peer_addr().map(|a| a.ip()), req.headers(), direct)
    }

    pub fn client_ip_from(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut current = canonical(peer?);
        if !self.contains(current) {
            return Some(current);
        }
        let chain = forwarded_for(headers);
        for hop in chain.iter().rev() {
            let Some(ip) = hop else {
                // "unknown" or an obfuscated name: nothing to the left can be placed.
                return Some(current);
            };
            current = canonical(*ip);
            if !self.contains(current) {
                return Some(current);
            }
        }
        Some(current)
    }

    pub fn requested_host_from(
        &self,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
        direct: Option<String>,
    ) -> Option<String> {
        if !peer.is_some_and(|p| self.contains(p)) {
            return direct;
        }
        // The last value is the one our proxy wrote (a proxy that appends leaves the client's
        // own to its left).
        let forwarded = header_values(headers, "forwarded")
            .into_iter()
            .flat_map(|v| forwarded_pairs(&v, "host"))
            .last();
        let x_forwarded = header_values(headers, "x-forwarded-host")
            .into_iter()
            .flat_map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
            .last();
        forwarded.or(x_forwarded).or(direct)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, from dual-stack sockets) as plain IPv4, so
/// one client has one throttle key and `127.0.0.1` matches a mapped loopback.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

/// The forwarding chain, left (client end) to right (nearest hop): from `Forwarded` if the
/// request has one, else from `X-Forwarded-For`. `None` marks a hop that is not an address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded = header_values(headers, "forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| forwarded_pairs(v, "for"))
            .map(|s| parse_node(&s))
            .collect();
    }
    header_values(headers, "x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_node)
        .collect()
}

/// The values of `key` in an RFC 7239 `Forwarded` header, element by element.
fn forwarded_pairs(value: &str, key: &str) -> Vec<String> {
    value
        .split(',')
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case(key)
                    .then(|| v.trim().trim_matches('"').to_owned())
            })
        })
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]`, `[2001:db8::1]:443`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, _port) = s.rsplit_once(':')?;
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            list.iter()
                .map(|p| crate::config::parse_proxy(p).unwrap())
                .collect(),
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let p = proxies(&[]);
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(
            p.client_ip_from(Some(ip("9.9.9.9")), &h),
            Some(ip("9.9.9.9"))
        );
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            p.client_ip_from(Some(ip("9.9.9.9")), &h),
            Some(ip("9.9.9.9"))
        );
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let p = proxies(&["10.0.0.0/8", "127.0.0.1"]);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 5.5.5.5, 10.1.1.1")]);
        assert_eq!(
            p.client_ip_from(Some(ip("127.0.0.1")), &h),
            Some(ip("5.5.5.5")),
            "the spoofed left-most entry is not believed"
        );
        let h = headers(&[
            ("x-forwarded-for", "5.5.5.5"),
            ("x-forwarded-for", "10.2.2.2"),
        ]);
        assert_eq!(
            p.client_ip_from(Some(ip("10.9.9.9")), &h),
            Some(ip("5.5.5.5"))
        );
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https",
        )]);
        assert_eq!(
            p.client_ip_from(Some(ip("127.0.0.1")), &h),
            Some(ip("2001:db8::1"))
        );
        let h = headers(&[("x-forwarded-for", "6.6.6.6, unknown")]);
        assert_eq!(
            p.client_ip_from(Some(ip("127.0.0.1")), &h),
            Some(ip("127.0.0.1")),
            "an unplaceable hop stops the walk at the proxy"
        );
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "5.5.5.5:1234")]);
        assert_eq!(p.client_ip_from(Some(mapped), &h), Some(ip("5.5.5.5")));
        assert_eq!(p.client_ip_from(None, &h), None);
    }

    #[test]
    fn forwarded_host_only_from_a_trusted_proxy() {
        let p = proxies(&["127.0.0.1"]);
        let h = headers(&[("x-forwarded-host", "evil.example, app.example")]);
        let direct = Some("127.0.0.1:8080".to_owned());
        assert_eq!(
            p.requested_host_from(Some(ip("9.9.9.9")), &h, direct.clone()),
            direct
        );
        assert_eq!(
            p.requested_host_from(Some(ip("127.0.0.1")), &h, direct.clone())
                .as_deref(),
            Some("app.example")
        );
        let h = headers(&[("forwarded", "host=app.example;proto=https")]);
        assert_eq!(
            p.requested_host_from(Some(ip("127.0.0.1")), &h, direct)
                .as_deref(),
            Some("app.example")
        );
    }
}
