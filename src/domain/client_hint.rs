//! Where a key was last used from, coarsened: the client's network (/24 for IPv4, /48 for
//! IPv6) and the user agent's product token (`curl`, `OpenAI`), nothing finer. Enough for an
//! owner to recognise their own deployment, not enough to track a person.

use std::net::IpAddr;

/// Characters of a product token kept.
const PRODUCT_MAX: usize = 40;

/// `203.0.113.0/24 · curl`, or the part that is known; None when neither is.
pub fn client_hint(address: Option<IpAddr>, user_agent: Option<&str>) -> Option<String> {
    let network = address.map(coarse_network);
    let product = user_agent.and_then(product_token);
    match (network, product) {
        (Some(n), Some(p)) => Some(format!("{n} · {p}")),
        (n, p) => n.or(p),
    }
}

fn coarse_network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => coarse_network(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

/// The product name of a `User-Agent` (`curl/8.5.0 (x86_64)` -> `curl`): its first token
/// before `/` or a space, if it is made of letters, digits, `.`, `_` and `-` only.
fn product_token(ua: &str) -> Option<String> {
    let token = ua.trim().split(['/', ' ']).next()?;
    let ok = !token.is_empty()
        && token.len() <= PRODUCT_MAX
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_products_only() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:abcd:12:1:2:3:4".parse().unwrap();
        assert_eq!(
            client_hint(Some(v4), Some("curl/8.5.0 (x86_64-pc-linux-gnu)")).as_deref(),
            Some("203.0.113.0/24 · curl")
        );
        assert_eq!(
            client_hint(Some(v6), None).as_deref(),
            Some("2001:db8:abcd::/48")
        );
        assert_eq!(
            client_hint(None, Some("OpenAI/Python 1.0")).as_deref(),
            Some("OpenAI")
        );
        for bad in ["", "  ", "<script>/1", "a\u{0}b/1", &"x".repeat(41)] {
            assert_eq!(client_hint(None, Some(bad)), None, "{bad:?}");
        }
    }
}
