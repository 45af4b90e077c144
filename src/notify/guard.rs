//! Outbound safety: a notification goes only to a public https address, never follows a redirect, and never waits
//! long. Names are checked as they are resolved for the connection itself, so a name that changes its answer
//! between a check and the connect (DNS rebinding) cannot reach a private address either.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// How long one delivery attempt may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Networks no notification goes to unless the channel allows private addresses: this host, private and shared
/// networks, link-local (cloud metadata endpoints live there), unique-local and unspecified addresses.
const FORBIDDEN: [&str; 10] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::/127",
    "fc00::/7",
    "fe80::/10",
];

/// Whether `ip` is an address a notification must not reach (IPv4-mapped IPv6 counts as the IPv4 it carries).
pub fn is_forbidden(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_multicast()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
        || FORBIDDEN.iter().any(|net| {
            net.parse::<IpNet>()
                .expect("the forbidden networks parse")
                .contains(&ip)
        })
}

/// Why a delivery was not attempted.
pub fn check_url(url: &Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err(format!(
            "refused: only https goes out ({} needs allow_private = true)",
            url.scheme()
        ));
    }
    let host = url.host_str().unwrap_or_default();
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>();
    match literal.ok() {
        Some(ip) if is_forbidden(ip) => Err(refusal(ip)),
        _ => Ok(()),
    }
}

fn refusal(ip: IpAddr) -> String {
    format!(
        "refused: {ip} is a loopback, private, link-local or unspecified address (set allow_private = true for a \
         receiver on this host or network)"
    )
}

/// Resolves names for the connection, refusing every answer that holds a forbidden address.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
                return Err(refusal(bad.ip()).into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client of one channel: rustls, no redirects, no proxy from the environment, a 5 s limit per request,
/// and (unless `allow_private`) only public addresses.
pub fn client(allow_private: bool) -> reqwest::Result<reqwest::Client> {
    crate::tls::install_crypto_provider();
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("sentinel/", env!("CARGO_PKG_VERSION")));
    if allow_private {
        builder.build()
    } else {
        builder.dns_resolver(Arc::new(PublicOnly)).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_forbidden_and_public_ones_are_not() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "255.255.255.255",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip} allowed");
        }
        for ip in ["1.1.1.1", "149.154.167.220", "2606:4700::1111"] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip} forbidden");
        }
    }

    #[test]
    fn urls_are_checked_unless_private_is_allowed() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(check_url(&url("https://hooks.example.com/x"), false).is_ok());
        assert!(check_url(&url("http://hooks.example.com/x"), false).is_err());
        assert!(check_url(&url("https://127.0.0.1:8443/x"), false).is_err());
        assert!(check_url(&url("https://[::1]/x"), false).is_err());
        assert!(check_url(&url("http://127.0.0.1:8443/x"), true).is_ok());
    }

    #[actix_web::test]
    async fn names_that_resolve_to_this_host_are_refused() {
        let refused = PublicOnly
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost refused");
        assert!(refused.to_string().contains("refused"), "{refused}");
    }
}
