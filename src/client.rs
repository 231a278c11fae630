//! Who is asking: the client's address (for the login and sign-up throttles), the host it
//! asked for (for the CSRF Origin check) and the scheme (for a base URL when
//! `public_base_url` is not set).
//!
//! Forwarding headers are written by whoever sends the request, so they are believed only
//! when the TCP peer is one of the configured `trusted_proxies`, and then only the one
//! family the operator names (`trusted_proxy_header`): a proxy that appends
//! `X-Forwarded-For` passes a client's own `Forwarded` through untouched, so reading both
//! would let the client choose its address. The chain is read from the right (the hop our
//! proxy appended) leftwards, skipping further trusted proxies: the first address that is
//! not one is the client. Anything to its left was written by the client and is ignored.

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderMap};
use actix_web::HttpRequest;
use ipnet::IpNet;

/// The one forwarding header the operator's proxy writes (`trusted_proxy_header`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For` (with `X-Forwarded-Host` and `X-Forwarded-Proto`): nginx's
    /// `$proxy_add_x_forwarded_for`, most load balancers.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded` (`for=`, `host=`, `proto=`).
    Forwarded,
    /// `X-Real-IP`: one address the proxy sets (with `X-Forwarded-Host`/`-Proto`).
    XRealIp,
}

impl ProxyHeader {
    /// The setting's spellings: the header names, in any case.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ProxyHeader::XForwardedFor),
            "forwarded" => Ok(ProxyHeader::Forwarded),
            "x-real-ip" => Ok(ProxyHeader::XRealIp),
            _ => Err(format!(
                "{s:?} is not one of x-forwarded-for, forwarded, x-real-ip"
            )),
        }
    }
}

/// The configured reverse proxies and the header they write.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ProxyHeader,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>, header: ProxyHeader) -> Self {
        TrustedProxies { nets, header }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    fn peer_is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|p| self.contains(p))
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

    /// `scheme://host` the client used: what a trusted proxy says, else what this socket
    /// is (plain HTTP: TLS ends at a proxy). For snippets and links when no
    /// `public_base_url` is set.
    pub fn origin(&self, req: &HttpRequest) -> String {
        let peer = req.peer_addr().map(|a| a.ip());
        let scheme = self
            .peer_is_trusted(peer)
            .then(|| self.proto(req.headers()))
            .flatten()
            .unwrap_or_else(|| req.uri().scheme_str().unwrap_or("http").to_owned());
        let host = self
            .requested_host(req)
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{scheme}://{host}")
    }

    pub fn client_ip_from(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut current = canonical(peer?);
        if !self.contains(current) {
            return Some(current);
        }
        for hop in self.chain(headers).iter().rev() {
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
        if !self.peer_is_trusted(peer) {
            return direct;
        }
        // The last value is the one our proxy wrote (a proxy that appends leaves the client's
        // own to its left).
        self.last_of(headers, "host")
            .filter(|h| valid_host(h))
            .or(direct)
    }

    /// The scheme our proxy says the client used (`https`/`http` only).
    fn proto(&self, headers: &HeaderMap) -> Option<String> {
        self.last_of(headers, "proto")
            .map(|p| p.to_ascii_lowercase())
            .filter(|p| p == "https" || p == "http")
    }

    /// The last value of `host` or `proto` in this family's header.
    fn last_of(&self, headers: &HeaderMap, what: &str) -> Option<String> {
        match self.header {
            ProxyHeader::Forwarded => header_values(headers, "forwarded")
                .iter()
                .flat_map(|v| forwarded_pairs(v, what))
                .last(),
            ProxyHeader::XForwardedFor | ProxyHeader::XRealIp => {
                list_values(headers, &format!("x-forwarded-{what}")).pop()
            }
        }
    }

    /// The forwarding chain from the named header only, left (client end) to right
    /// (nearest hop). `None` marks a hop that is not an address.
    fn chain(&self, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
        match self.header {
            ProxyHeader::Forwarded => header_values(headers, "forwarded")
                .iter()
                .flat_map(|v| forwarded_pairs(v, "for"))
                .map(|s| parse_node(&s))
                .collect(),
            ProxyHeader::XForwardedFor => list_values(headers, "x-forwarded-for")
                .iter()
                .map(|s| parse_node(s))
                .collect(),
            // One address; several headers (the client's and the proxy's) are read as a list.
            ProxyHeader::XRealIp => list_values(headers, "x-real-ip")
                .iter()
                .map(|s| parse_node(s))
                .collect(),
        }
    }
}

/// A host as a `Host` header may hold it: name or address and port, nothing that would
/// change a URL's meaning when put after `scheme://`.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
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

/// The comma-separated values of every `name` header, in order.
fn list_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    header_values(headers, name)
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
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

    fn proxies_with(list: &[&str], header: ProxyHeader) -> TrustedProxies {
        TrustedProxies::new(
            list.iter()
                .map(|p| crate::config::parse_proxy(p).unwrap())
                .collect(),
            header,
        )
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        proxies_with(list, ProxyHeader::XForwardedFor)
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
    fn only_the_named_header_is_read() {
        // nginx appends X-Forwarded-For and passes the client's own Forwarded through.
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7, 5.5.5.5"),
            ("x-real-ip", "8.8.8.8"),
        ]);
        let loopback = Some(ip("127.0.0.1"));
        let xff = proxies(&["127.0.0.1"]);
        assert_eq!(xff.client_ip_from(loopback, &h), Some(ip("5.5.5.5")));
        let fwd = proxies_with(&["127.0.0.1"], ProxyHeader::Forwarded);
        assert_eq!(fwd.client_ip_from(loopback, &h), Some(ip("6.6.6.6")));
        let real = proxies_with(&["127.0.0.1"], ProxyHeader::XRealIp);
        assert_eq!(real.client_ip_from(loopback, &h), Some(ip("8.8.8.8")));
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https",
        )]);
        assert_eq!(fwd.client_ip_from(loopback, &h), Some(ip("2001:db8::1")));
        assert_eq!(
            xff.client_ip_from(loopback, &h),
            Some(ip("127.0.0.1")),
            "no X-Forwarded-For: the proxy itself, whatever Forwarded says"
        );
        assert_eq!(
            ProxyHeader::parse(" X-Forwarded-For "),
            Ok(ProxyHeader::XForwardedFor)
        );
        assert!(ProxyHeader::parse("x-client-ip").is_err());
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
            p.requested_host_from(Some(ip("127.0.0.1")), &h, direct.clone()),
            direct,
            "Forwarded is not the named header"
        );
        let fwd = proxies_with(&["127.0.0.1"], ProxyHeader::Forwarded);
        assert_eq!(
            fwd.requested_host_from(Some(ip("127.0.0.1")), &h, direct.clone())
                .as_deref(),
            Some("app.example")
        );
        let h = headers(&[("x-forwarded-host", "app.example/evil?")]);
        assert_eq!(
            p.requested_host_from(Some(ip("127.0.0.1")), &h, direct.clone()),
            direct,
            "a host that is not a host is not believed"
        );
    }
}
