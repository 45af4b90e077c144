//! Client addresses: the peer, or what a trusted proxy says the client was; and per-source allowlists.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// TradingView's published webhook sender addresses (tradingview.com/support/solutions/43000529348).
pub const TRADINGVIEW_SENDERS: [&str; 4] = [
    "52.89.214.238",
    "34.212.75.30",
    "54.218.53.128",
    "52.32.178.7",
];

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is the IPv4 address it carries, so it matches IPv4 rules.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Who a per-client limit counts against: an IPv4 address, or an IPv6 /64. A /64 is the smallest network a
/// provider hands out, so one subscriber (or one rented server) rotates through 2^64 addresses of it for free; keyed
/// by the exact address, each of them would get a budget of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6Net(u64),
}

impl ClientKey {
    /// The key of a client address; IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is the IPv4 address it carries.
    pub fn of(ip: IpAddr) -> ClientKey {
        match canonical(ip) {
            IpAddr::V4(v4) => ClientKey::V4(v4),
            IpAddr::V6(v6) => ClientKey::V6Net((v6.to_bits() >> 64) as u64),
        }
    }
}

impl fmt::Display for ClientKey {
    /// `203.0.113.9` or `2001:db8:1:2::/64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::V4(v4) => v4.fmt(f),
            ClientKey::V6Net(prefix) => {
                write!(f, "{}/64", Ipv6Addr::from_bits(u128::from(*prefix) << 64))
            }
        }
    }
}

/// Networks, any of which lets a client in. Empty: everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist(Vec<IpNet>);

impl Allowlist {
    /// Parses entries: addresses, CIDRs, or `tradingview` for TradingView's senders.
    pub fn parse(entries: &[String]) -> Result<Allowlist, String> {
        let mut nets = Vec::new();
        for entry in entries {
            if entry.eq_ignore_ascii_case("tradingview") {
                nets.extend(
                    TRADINGVIEW_SENDERS
                        .iter()
                        .map(|ip| IpNet::from(ip.parse::<IpAddr>().expect("valid"))),
                );
                continue;
            }
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{entry}` is not an address, a CIDR or `tradingview`"))?;
            nets.push(net);
        }
        Ok(Allowlist(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.is_empty() || self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether `ip` is in the list (an empty list holds nobody).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// The client's address. Forwarding headers are believed only when the peer is a trusted proxy, and then the
/// right-most address that is not itself a trusted proxy is the client (the left part is whatever the client said).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, proxies: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    let trusted_proxies = &proxies.addresses;
    if !trusted_proxies.contains(peer) {
        return peer;
    }
    let chain = forwarded_chain(headers, proxies.header);
    chain
        .into_iter()
        .rev()
        .find(|ip| !trusted_proxies.contains(*ip))
        .unwrap_or(peer)
}

/// Which header the trusted proxies set. Only that one is read: a client can send the other one through a proxy
/// that neither sets nor strips it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1` (nginx, HAProxy, most load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client` (RFC 7239).
    Forwarded,
}

/// The proxies whose forwarding header is believed, and which header that is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    pub addresses: Allowlist,
    pub header: ForwardedHeader,
}

/// The addresses in the forwarding header, in order, client first.
fn forwarded_chain(headers: &HeaderMap, header: ForwardedHeader) -> Vec<IpAddr> {
    match header {
        ForwardedHeader::Forwarded => headers
            .get_all("forwarded")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .flat_map(|element| element.split(';'))
            .filter_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(value))?
            })
            .collect(),
        ForwardedHeader::XForwardedFor => headers
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(parse_node)
            .collect(),
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = raw.strip_prefix('[') {
        return rest
            .split_once(']')
            .and_then(|(ip, _)| ip.parse().ok())
            .map(canonical);
    }
    raw.rsplit_once(':')
        .and_then(|(ip, _)| ip.parse().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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

    #[test]
    fn clients_are_keyed_by_ipv4_address_or_ipv6_slash_64() {
        let key = |s: &str| ClientKey::of(ip(s));
        assert_eq!(
            key("203.0.113.9"),
            ClientKey::V4("203.0.113.9".parse().unwrap())
        );
        assert_ne!(key("203.0.113.9"), key("203.0.113.10"));
        assert_eq!(
            key("::ffff:203.0.113.9"),
            key("203.0.113.9"),
            "IPv4-mapped is IPv4"
        );
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(key("::1").to_string(), "::/64");
        assert_eq!(key("203.0.113.9").to_string(), "203.0.113.9");
    }

    #[test]
    fn allowlists_take_cidrs_and_the_tradingview_shorthand() {
        let list = Allowlist::parse(&[
            "tradingview".into(),
            "10.0.0.0/8".into(),
            "2001:db8::/32".into(),
        ])
        .unwrap();
        assert!(list.allows(ip("52.89.214.238")));
        assert!(list.allows(ip("10.1.2.3")));
        assert!(
            list.allows(ip("::ffff:10.1.2.3")),
            "IPv4-mapped IPv6 matches the IPv4 rule"
        );
        assert!(list.allows(ip("2001:db8::1")));
        assert!(!list.allows(ip("52.89.214.239")));
        assert!(Allowlist::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(Allowlist::default().allows(ip("1.2.3.4")));
    }

    #[test]
    fn forwarding_headers_only_from_trusted_proxies() {
        let addresses = Allowlist::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        let proxies = TrustedProxies {
            addresses: addresses.clone(),
            header: ForwardedHeader::XForwardedFor,
        };
        let rfc7239 = TrustedProxies {
            addresses,
            header: ForwardedHeader::Forwarded,
        };
        let spoof = headers(&[("x-forwarded-for", "52.89.214.238")]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &spoof, &proxies),
            ip("203.0.113.9"),
            "untrusted peer"
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &spoof, &proxies),
            ip("52.89.214.238")
        );
        // The client prepends a fake address; the proxy appends the real one.
        let chain = headers(&[("x-forwarded-for", "52.89.214.238, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &chain, &proxies),
            ip("198.51.100.7")
        );
        let fwd = headers(&[(
            "forwarded",
            "for=\"[2001:db8::1]:4711\";proto=https, for=198.51.100.8",
        )]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &fwd, &rfc7239),
            ip("198.51.100.8")
        );
        // A client's own `Forwarded` header through an X-Forwarded-For proxy is not believed.
        assert_eq!(client_ip(ip("127.0.0.1"), &fwd, &proxies), ip("127.0.0.1"));
        assert_eq!(
            client_ip(ip("127.0.0.1"), &HeaderMap::new(), &proxies),
            ip("127.0.0.1")
        );
    }
}
