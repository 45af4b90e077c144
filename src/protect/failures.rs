//! Budgets for failure: a client that keeps being refused is turned away before anything is looked at, and once
//! too many strangers have failed to authenticate, strangers are no longer verified for a while.
//!
//! Two budgets, because there are two floods. One client (an IPv4 address or an IPv6 /64) sending refused requests
//! spends its own budget of refusals and then gets cheap 429s. An attacker rotating through thousands of addresses
//! refuses each of them only once, so a per-client budget never bites; the shared budget on failed
//! authentications does. It only counts, and only throttles, clients with no reason to be trusted: a client is
//! vouched for when its source's `allow_ips` lets it in, or when it authenticated within `VOUCHED_FOR`. The
//! trade-off: while an attack keeps the shared budget spent, a genuine sender that is neither gets 429 until the
//! attack stops (TradingView does not retry, so put TradingView sources behind `allow_ips = ["tradingview"]`).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::limits::{Limiter, SharedLimiter};
use super::network::ClientKey;
use crate::config::RateLimit;

/// How long a client that authenticated stays vouched for. A day covers senders that alert once a day.
pub const VOUCHED_FOR: Duration = Duration::from_secs(24 * 3600);

/// Which limit turned a request away; each is answered 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The client's request rate (`server.rate_limit_per_address_*`).
    Rate,
    /// The client was refused too often (`server.refusals_per_address_*`).
    Refusals,
    /// Strangers failed to authenticate too often (`server.failed_auth_*`).
    FailedAuth,
}

impl Throttle {
    /// A stable label for logs and counters.
    pub fn reason(self) -> &'static str {
        match self {
            Throttle::Rate => "rate_limited_address",
            Throttle::Refusals => "too_many_refusals",
            Throttle::FailedAuth => "auth_throttled",
        }
    }
}

/// A request turned away, and how long until the same client may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub throttle: Throttle,
    pub wait: Duration,
}

pub struct FailureBudgets {
    per_client: Limiter<ClientKey>,
    /// Clients past their refusal budget, until it lets one more refusal through. Checked first on every request,
    /// so a blocked client costs one map lookup.
    blocked: DashMap<ClientKey, Instant>,
    failed_auth: SharedLimiter,
    /// Until when strangers are not verified, in milliseconds since `started` (0: not throttled).
    auth_closed_until: AtomicU64,
    /// When each client last authenticated.
    vouched: DashMap<ClientKey, Instant>,
    started: Instant,
}

impl FailureBudgets {
    pub fn new(refusals_per_client: RateLimit, failed_auth: RateLimit) -> Self {
        Self {
            per_client: Limiter::new(refusals_per_client.per_minute, refusals_per_client.burst),
            blocked: DashMap::new(),
            failed_auth: SharedLimiter::new(failed_auth),
            auth_closed_until: AtomicU64::new(0),
            vouched: DashMap::new(),
            started: Instant::now(),
        }
    }

    /// `Err` while `client` is past its refusal budget.
    pub fn check_client(&self, client: ClientKey) -> Result<(), Throttled> {
        let Some(until) = self.blocked.get(&client).map(|until| *until) else {
            return Ok(());
        };
        match until.checked_duration_since(Instant::now()) {
            Some(wait) if !wait.is_zero() => Err(Throttled {
                throttle: Throttle::Refusals,
                wait,
            }),
            _ => Ok(()),
        }
    }

    /// Counts a refusal of `client`; past its budget, it is blocked until the budget has room again.
    fn charge(&self, client: ClientKey) {
        if let Err(wait) = self.per_client.check(&client) {
            self.blocked.insert(client, Instant::now() + wait);
        }
    }

    pub(super) fn is_vouched(&self, client: ClientKey) -> bool {
        self.vouched
            .get(&client)
            .is_some_and(|at| at.elapsed() < VOUCHED_FOR)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// `Err` while the shared failed-authentication budget is spent.
    fn check_auth(&self) -> Result<(), Throttled> {
        let until = self.auth_closed_until.load(Ordering::Relaxed);
        match until.checked_sub(self.now_ms()) {
            Some(wait) if wait > 0 => Err(Throttled {
                throttle: Throttle::FailedAuth,
                wait: Duration::from_millis(wait),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a stranger's failed authentication; past the budget, strangers are throttled until it has room.
    fn charge_auth(&self) {
        if let Err(wait) = self.failed_auth.check() {
            let until = self.now_ms() + wait.as_millis().max(1) as u64;
            self.auth_closed_until.fetch_max(until, Ordering::Relaxed);
        }
    }

    /// Forgets what has expired; a map past `max` entries starts afresh, so memory stays bounded.
    pub fn prune(&self, max: usize) {
        self.per_client.prune(max);
        let now = Instant::now();
        self.blocked.retain(|_, until| *until > now);
        if self.blocked.len() > max {
            self.blocked.clear();
        }
        // Only clients that authenticated are in here, but bound it all the same.
        self.vouched.retain(|_, at| at.elapsed() < VOUCHED_FOR);
        if self.vouched.len() > max {
            self.vouched.clear();
        }
    }

    /// Clients currently blocked for too many refusals.
    pub fn blocked(&self) -> usize {
        self.blocked.len()
    }
}

/// One request's standing with the failure budgets. Dropped before `authenticated`, it is a refusal of its client,
/// whatever refused it (404, 403, 413, 415, 401, a throttle) or if the client hung up: every early return counts
/// without each having to remember to.
pub struct Attempt<'a> {
    budgets: &'a FailureBudgets,
    client: ClientKey,
    /// Whether the request was subject to the shared failed-authentication budget (a stranger).
    stranger: Cell<bool>,
    authenticated: Cell<bool>,
}

impl<'a> Attempt<'a> {
    pub(super) fn new(budgets: &'a FailureBudgets, client: ClientKey) -> Self {
        Self {
            budgets,
            client,
            stranger: Cell::new(false),
            authenticated: Cell::new(false),
        }
    }

    /// Before authentication is checked: `Err` if the client is a stranger (not let in by `allowlisted`, not
    /// recently authenticated) while the shared failed-authentication budget is spent.
    pub fn may_verify(&self, allowlisted: bool) -> Result<(), Throttled> {
        if allowlisted || self.budgets.is_vouched(self.client) {
            return Ok(());
        }
        self.stranger.set(true);
        self.budgets.check_auth()
    }

    /// Authentication failed; a stranger's failure spends the shared budget.
    pub fn auth_failed(&self) {
        if self.stranger.get() {
            self.budgets.charge_auth();
        }
    }

    /// Whether the client authenticated lately (or is let in by an allowlist: see `may_verify`).
    pub fn vouched(&self) -> bool {
        self.budgets.is_vouched(self.client)
    }

    /// The request was shed for load, not refused for anything the client did: it costs the client nothing.
    pub fn shed(&self) {
        self.authenticated.set(true);
    }

    /// The request authenticated: it is no refusal, and its client is vouched for from now on.
    pub fn authenticated(&self) {
        self.authenticated.set(true);
        self.budgets.vouched.insert(self.client, Instant::now());
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.authenticated.get() {
            self.budgets.charge(self.client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn rate(per_minute: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_minute: NonZeroU32::new(per_minute).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    fn client(last: u8) -> ClientKey {
        ClientKey::V4([203, 0, 113, last].into())
    }

    #[test]
    fn a_client_refused_past_its_budget_is_blocked_and_others_are_not() {
        let budgets = FailureBudgets::new(rate(60, 3), rate(60, 100));
        for _ in 0..3 {
            assert!(budgets.check_client(client(1)).is_ok());
            drop(Attempt::new(&budgets, client(1)));
        }
        assert!(
            budgets.check_client(client(1)).is_ok(),
            "the budget is spent, not exceeded"
        );
        drop(Attempt::new(&budgets, client(1)));
        let throttled = budgets.check_client(client(1)).unwrap_err();
        assert_eq!(throttled.throttle, Throttle::Refusals);
        assert!(throttled.wait <= Duration::from_secs(1), "{throttled:?}");
        assert!(budgets.check_client(client(2)).is_ok());
        assert_eq!(budgets.blocked(), 1);
    }

    #[test]
    fn authenticated_requests_spend_no_refusals() {
        let budgets = FailureBudgets::new(rate(60, 1), rate(60, 100));
        for _ in 0..10 {
            let attempt = Attempt::new(&budgets, client(1));
            attempt.authenticated();
        }
        assert!(budgets.check_client(client(1)).is_ok());
    }

    #[test]
    fn spent_failed_auth_budget_throttles_strangers_only() {
        let budgets = FailureBudgets::new(rate(60, 100), rate(60, 2));
        let known = client(200);
        Attempt::new(&budgets, known).authenticated();
        // Rotating addresses, each failing once.
        for last in 1..=3 {
            let attempt = Attempt::new(&budgets, client(last));
            assert!(attempt.may_verify(false).is_ok(), "within the budget");
            attempt.auth_failed();
        }
        let stranger = Attempt::new(&budgets, client(4));
        let throttled = stranger.may_verify(false).unwrap_err();
        assert_eq!(throttled.throttle, Throttle::FailedAuth);
        assert!(throttled.wait <= Duration::from_secs(1), "{throttled:?}");
        assert!(
            Attempt::new(&budgets, known).may_verify(false).is_ok(),
            "vouched for"
        );
        assert!(
            Attempt::new(&budgets, client(5)).may_verify(true).is_ok(),
            "allowlisted"
        );
    }

    #[test]
    fn failures_of_trusted_clients_spend_no_shared_budget() {
        let budgets = FailureBudgets::new(rate(60, 100), rate(60, 1));
        for _ in 0..5 {
            let attempt = Attempt::new(&budgets, client(1));
            assert!(attempt.may_verify(true).is_ok());
            attempt.auth_failed();
        }
        assert!(Attempt::new(&budgets, client(2)).may_verify(false).is_ok());
    }

    #[test]
    fn pruning_forgets_expired_blocks() {
        let budgets = FailureBudgets::new(rate(60_000, 1), rate(60, 1));
        for _ in 0..2 {
            drop(Attempt::new(&budgets, client(1)));
        }
        assert_eq!(budgets.blocked(), 1);
        std::thread::sleep(Duration::from_millis(5));
        budgets.prune(1000);
        assert_eq!(budgets.blocked(), 0);
        assert!(budgets.check_client(client(1)).is_ok());
    }
}
