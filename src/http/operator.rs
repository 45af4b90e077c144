//! Who may use the operator API: the `Host` it was asked under (DNS rebinding) and the read and admin bearer tokens,
//! whose guesses are limited per client and in total.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HOST};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tracing::warn;

use super::error::ApiError;
use super::AppState;
use crate::config::{ApiConfig, ServerConfig};
use crate::protect::limits::{retry_after_secs, Limiter, MAX_TRACKED_ADDRESSES};
use crate::protect::network::{client_ip, ClientKey};
use crate::secret::Secret;

/// Admin requests per client a minute (and in a burst): far above what a person at a kill switch needs.
const ATTEMPTS_PER_CLIENT_PER_MINUTE: u32 = 10;
/// Wrong tokens from everyone together a minute, for reads and for writes each; past this every request of that kind
/// waits until its budget refills, so guessing from many addresses is as slow as from one. The two budgets are apart
/// so a dashboard or scraper left with an old read token cannot lock the operator out of the kill switch.
const FAILURES_PER_MINUTE: u32 = 30;

/// What a request asks to do with the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `GET /api/*`: the read token or the admin token.
    Read,
    /// `POST /api/trading-state`, `POST /api/flatten`: the admin token only.
    Admin,
}

impl Access {
    fn index(self) -> usize {
        match self {
            Access::Read => 0,
            Access::Admin => 1,
        }
    }
}

/// The limits on token attempts: per client for writes, and a failure budget for reads and one for writes.
pub struct AdminGuard {
    per_client: Limiter<ClientKey>,
    /// By `Access::index`.
    failures: [DefaultDirectRateLimiter; 2],
    /// While set and in the future, every request of that kind is answered 429: its failure budget is spent.
    locked_until: [Mutex<Option<Instant>>; 2],
    clock: DefaultClock,
}

impl Default for AdminGuard {
    fn default() -> Self {
        let n = |v| NonZeroU32::new(v).expect("non-zero");
        Self {
            per_client: Limiter::new(
                n(ATTEMPTS_PER_CLIENT_PER_MINUTE),
                n(ATTEMPTS_PER_CLIENT_PER_MINUTE),
            ),
            failures: [(); 2].map(|_| {
                RateLimiter::direct(
                    Quota::per_minute(n(FAILURES_PER_MINUTE)).allow_burst(n(FAILURES_PER_MINUTE)),
                )
            }),
            locked_until: Default::default(),
            clock: DefaultClock::default(),
        }
    }
}

impl AdminGuard {
    /// Checks the request's bearer token for `access`: 403 when that kind of access is off, 429 past the attempt
    /// limits, 401 for a wrong or missing token. Admin requests count against the per-client limit whether they
    /// succeed or not; reads are many (dashboards poll), so only their failures count, against the shared budget.
    pub fn authorize(
        &self,
        req: &HttpRequest,
        server: &ServerConfig,
        api: &ApiConfig,
        access: Access,
    ) -> Result<(), ApiError> {
        let tokens: Vec<&Secret> = match access {
            Access::Read => api.read_token.iter().chain(&api.admin_token).collect(),
            Access::Admin => api.admin_token.iter().collect(),
        };
        let off = match access {
            Access::Read if api.read_token.is_none() => {
                Some(format!("reads are off: set {}", api.read_token_env))
            }
            Access::Admin if tokens.is_empty() => Some(format!(
                "operator writes are off: set {}",
                api.admin_token_env
            )),
            _ => None,
        };
        if let Some(message) = off {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message));
        }
        let peer = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let client = client_ip(peer, req.headers(), &server.trusted_proxies);
        if let Some(wait) = self.locked_for(access) {
            return Err(ApiError::too_many_requests(retry_after_secs(wait)));
        }
        if access == Access::Admin {
            if self.per_client.tracked() > MAX_TRACKED_ADDRESSES {
                self.per_client.prune(MAX_TRACKED_ADDRESSES);
            }
            self.per_client
                .check(&ClientKey::of(client))
                .map_err(|wait| ApiError::too_many_requests(retry_after_secs(wait)))?;
        }
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .unwrap_or_default();
        // Every token is compared, so the time taken does not say which one nearly matched.
        let matched = tokens
            .iter()
            .fold(false, |any, token| token.matches(given.as_bytes()) | any);
        if matched {
            return Ok(());
        }
        warn!(%client, ?access, "operator request with a wrong or missing token");
        if let Err(not_until) = self.failures[access.index()].check() {
            let wait = not_until.wait_time_from(self.clock.now());
            *self.locked_until[access.index()]
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + wait);
        }
        Err(ApiError::unauthorized())
    }

    fn locked_for(&self, access: Access) -> Option<Duration> {
        let until = (*self.locked_until[access.index()]
            .lock()
            .unwrap_or_else(|e| e.into_inner()))?;
        until.checked_duration_since(Instant::now())
    }
}

/// The credentials of `Bearer <token>`; the scheme's case does not matter (RFC 7235 section 2.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// Whether the API may answer a request that named `host`: `localhost`, an IP address, or a configured name. A DNS
/// rebinding page reaches the API under its own domain name, which is none of these.
pub fn host_allowed(host: Option<&str>, configured: &[String]) -> bool {
    let Some(host) = host else {
        // Browsers always send one; a request without one is not a rebound page.
        return true;
    };
    let name = strip_port(host.trim()).to_ascii_lowercase();
    let name = name.trim_end_matches('.');
    name == "localhost"
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
        || configured.iter().any(|c| c == name)
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split_once(']').map_or(host, |(ip, _)| ip);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Middleware for `/api/*`: a read (`GET`, `HEAD`) needs the read or the admin token, or a dashboard session's
/// cookie (`POST /api/session`). Writes check the admin token
/// in their handlers, before their bodies are read.
pub async fn check_read_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
            return Err(ApiError::unavailable("the API is not set up").into());
        };
        // The dashboard's session cookie stands in for the read token (EventSource sends no headers); writes never
        // reach this branch, so a cookie cannot press the kill switch.
        if !state.dashboard.has_session(req.request()) {
            let config = state.config();
            state
                .admin
                .authorize(req.request(), &config.server, &config.api, Access::Read)?;
        }
    }
    next.call(req).await
}

/// Middleware for `/api/*`: refuses a `Host` the API does not answer to.
pub async fn check_host(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let configured = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.config().server.api_hosts.clone())
        .unwrap_or_default();
    let host = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if !host_allowed(host.as_deref(), &configured) {
        return Err(ApiError::host_not_allowed().into());
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn hosts() {
        let configured = vec!["sentinel.example.com".to_string()];
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "10.0.0.5",
            "Sentinel.Example.com:443",
            "sentinel.example.com.",
        ] {
            assert!(host_allowed(Some(ok), &configured), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert!(!host_allowed(Some(bad), &configured), "{bad}");
        }
        assert!(host_allowed(None, &configured));
    }
}
