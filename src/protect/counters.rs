//! Counts of refused webhooks per source and reason, for the operator (`GET /api/security`), and for the log.
//!
//! A flood of refusals must not become a flood of log lines (200,000 refusals once wrote 26 MB), so only the first
//! refusal of each source and reason in a window is logged in full; the rest are counted, and the housekeeping task
//! logs one summary per source and reason at the end of the window (`take_unlogged`). Memory stays bounded: the
//! keys are configured sources and fixed reasons, never anything a client chose.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

#[derive(Default)]
struct Count {
    total: AtomicU64,
    /// Refusals since the window began; the first of them was logged.
    in_window: AtomicU64,
}

#[derive(Default)]
pub struct RefusalCounters {
    counts: DashMap<(String, &'static str), Count>,
}

/// Refusals of one source and reason in the window just ended, of which only the first was logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlogged {
    pub source: String,
    pub reason: &'static str,
    /// All refusals in the window, the logged first one included.
    pub count: u64,
}

impl RefusalCounters {
    /// Counts a refusal of `source` (a configured source's name). `true` when it is the first of its source and
    /// reason in the current window: the caller logs it in full; the rest go into the window's summary.
    pub fn record(&self, source: &str, reason: &'static str) -> bool {
        let bump = |count: &Count| {
            count.total.fetch_add(1, Ordering::Relaxed);
            count.in_window.fetch_add(1, Ordering::Relaxed) == 0
        };
        if let Some(count) = self.counts.get(&(source.to_string(), reason)) {
            return bump(&count);
        }
        bump(&self.counts.entry((source.to_string(), reason)).or_default())
    }

    /// `source -> reason -> count`.
    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<&'static str, u64>> {
        let mut out: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
        for entry in self.counts.iter() {
            let (source, reason) = entry.key();
            out.entry(source.clone())
                .or_default()
                .insert(reason, entry.value().total.load(Ordering::Relaxed));
        }
        out
    }

    /// Ends the window: the sources and reasons with refusals that were not logged one by one, for a summary line.
    pub fn take_unlogged(&self) -> Vec<Unlogged> {
        let mut out = Vec::new();
        for entry in self.counts.iter() {
            let count = entry.value().in_window.swap(0, Ordering::Relaxed);
            if count > 1 {
                let (source, reason) = entry.key();
                out.push(Unlogged {
                    source: source.clone(),
                    reason,
                    count,
                });
            }
        }
        out.sort_by(|a, b| (&a.source, a.reason).cmp(&(&b.source, b.reason)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_refusal_of_a_window_is_logged_and_the_rest_are_summed_up() {
        let counters = RefusalCounters::default();
        let logged = (0..1000)
            .filter(|_| counters.record("tv", "ip_not_allowed"))
            .count();
        assert_eq!(logged, 1);
        assert!(counters.record("tv", "bad_passphrase"), "another reason");
        assert!(
            counters.record("signals", "ip_not_allowed"),
            "another source"
        );
        assert_eq!(
            counters.take_unlogged(),
            vec![Unlogged {
                source: "tv".into(),
                reason: "ip_not_allowed",
                count: 1000
            }]
        );
        assert!(counters.take_unlogged().is_empty(), "the window was reset");
        assert!(
            counters.record("tv", "ip_not_allowed"),
            "a new window logs again"
        );
        assert_eq!(counters.snapshot()["tv"]["ip_not_allowed"], 1001);
    }
}
