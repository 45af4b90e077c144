//! Rate limits per client address and per source (governor's GCRA), with bounded memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::{RateLimit, ServerConfig, SourceConfig};

/// Most client addresses tracked at once; past that the per-address state is reset (the per-source limit still
/// holds), so a flood of distinct addresses cannot grow memory without bound.
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

/// One source's limit, shared by all its senders.
pub struct SourceLimiter {
    inner: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl SourceLimiter {
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
    pub per_address: Limiter<IpAddr>,
    pub per_source: HashMap<String, SourceLimiter>,
}

impl RateLimits {
    pub fn new(server: &ServerConfig, sources: &[SourceConfig]) -> Self {
        Self {
            per_address: Limiter::new(server.per_address.per_minute, server.per_address.burst),
            per_source: sources
                .iter()
                .map(|s| (s.name.clone(), SourceLimiter::new(s.rate_limit)))
                .collect(),
        }
    }

    /// Checks `source`'s limit (a source without one is not limited).
    pub fn check_source(&self, source: &str) -> Result<(), Duration> {
        self.per_source
            .get(source)
            .map_or(Ok(()), SourceLimiter::check)
    }

    pub fn prune(&self) {
        self.per_address.prune(MAX_TRACKED_ADDRESSES);
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
    fn memory_stays_bounded_under_many_addresses() {
        let l = Limiter::new(n(60), n(1));
        for i in 0..5000u32 {
            let _ = l.check(&IpAddr::from(i.to_be_bytes()));
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
