//! Rate limits per client (an IPv4 address or an IPv6 /64) and per source (governor's GCRA), with bounded memory,
//! and the gate every webhook passes first.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::failures::{Attempt, FailureBudgets, Throttle, Throttled};
use super::network::ClientKey;
use crate::config::{RateLimit, ServerConfig, SourceConfig};

/// Most clients tracked at once by one keyed limit; past that its state is reset (the per-source and failed-auth
/// limits still hold), so a flood of distinct addresses cannot grow memory without bound.
pub const MAX_TRACKED_ADDRESSES: usize = 100_000;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// A keyed limiter: `per_minute` requests a minute per key, in bursts of up to `burst`.
pub struct Limiter<K: Hash + Eq + Clone> {
    quota: Quota,
    // Replaced wholesale when it tracks too many keys; checks take the read side, which is uncontended.
    inner: RwLock<Keyed<K>>,
    clock: DefaultClock,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            quota,
            inner: RwLock::new(RateLimiter::dashmap(quota)),
            clock: DefaultClock::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keyed<K>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// `Ok` to go ahead, or how long until a request from `key` would be allowed.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.read()
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    pub fn tracked(&self) -> usize {
        self.read().len()
    }

    /// Forgets keys whose limit has fully recovered; starts afresh past `max` keys.
    pub fn prune(&self, max: usize) {
        let over = {
            let inner = self.read();
            inner.retain_recent();
            inner.shrink_to_fit();
            inner.len() > max
        };
        if over {
            *self.inner.write().unwrap_or_else(|e| e.into_inner()) =
                RateLimiter::dashmap(self.quota);
        }
    }
}

/// One limit shared by all its callers: a source's, or the one on failed authentications.
pub struct SharedLimiter {
    inner: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl SharedLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            inner: RateLimiter::direct(
                Quota::per_minute(limit.per_minute).allow_burst(limit.burst),
            ),
            clock: DefaultClock::default(),
        }
    }

    pub fn check(&self) -> Result<(), Duration> {
        self.inner
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// The limits of the whole ingress.
pub struct RateLimits {
    /// Every webhook request, before anything is checked (`server.rate_limit_per_address_*`).
    pub per_address: Limiter<ClientKey>,
    pub per_source: HashMap<String, SharedLimiter>,
    pub failures: FailureBudgets,
}

impl RateLimits {
    pub fn new(server: &ServerConfig, sources: &[SourceConfig]) -> Self {
        Self {
            per_address: Limiter::new(server.per_address.per_minute, server.per_address.burst),
            per_source: sources
                .iter()
                .filter_map(|s| Some((s.name.clone(), SharedLimiter::new(s.rate_limit?))))
                .collect(),
            failures: FailureBudgets::new(server.refusals_per_address, server.failed_auth),
        }
    }

    /// The first check of a webhook, before the source, the allowlist or the body is looked at: a client past its
    /// refusal budget, or past its request rate, gets 429. The returned `Attempt` charges the client's refusal
    /// budget unless the request authenticates.
    pub fn admit(&self, client: ClientKey) -> Result<Attempt<'_>, Throttled> {
        // The refusal budget first: a client turned away for it does not also use up its request rate.
        self.failures.check_client(client)?;
        // A client that authenticated lately is bounded by admission control instead: a candle close brings one
        // alert per symbol at once from the same few addresses.
        if !self.failures.is_vouched(client) {
            self.per_address.check(&client).map_err(|wait| Throttled {
                throttle: Throttle::Rate,
                wait,
            })?;
        }
        Ok(Attempt::new(&self.failures, client))
    }

    /// Checks `source`'s limit (a source without one is not limited).
    pub fn check_source(&self, source: &str) -> Result<(), Duration> {
        self.per_source
            .get(source)
            .map_or(Ok(()), SharedLimiter::check)
    }

    pub fn prune(&self) {
        self.per_address.prune(MAX_TRACKED_ADDRESSES);
        self.failures.prune(MAX_TRACKED_ADDRESSES);
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn limits_per_key_after_the_burst() {
        let l = Limiter::new(n(60), n(3));
        for _ in 0..3 {
            assert!(l.check(&"a".to_string()).is_ok());
        }
        let wait = l.check(&"a".to_string()).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert!(l.check(&"b".to_string()).is_ok(), "keys are independent");
    }

    #[test]
    fn addresses_of_one_ipv6_slash_64_share_a_limit() {
        let l = Limiter::new(n(60), n(3));
        for i in 0..3u16 {
            let ip = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, i, 0, 0, 1);
            assert!(l.check(&ClientKey::of(ip.into())).is_ok());
        }
        let rotated = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(
            l.check(&ClientKey::of(rotated)).is_err(),
            "a new address, the same /64"
        );
        let next_net = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.check(&ClientKey::of(next_net)).is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let l = Limiter::new(n(60), n(1));
        for i in 0..5000u32 {
            let _ = l.check(&ClientKey::V4(i.into()));
        }
        assert_eq!(l.tracked(), 5000);
        l.prune(1000);
        assert!(l.tracked() <= 1000, "{}", l.tracked());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
