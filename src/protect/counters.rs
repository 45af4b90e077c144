//! Counts of refused webhooks per source and reason, for the operator (`GET /api/security`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

#[derive(Default)]
pub struct RefusalCounters {
    counts: DashMap<(String, &'static str), AtomicU64>,
}

impl RefusalCounters {
    pub fn record(&self, source: &str, reason: &'static str) {
        if let Some(count) = self.counts.get(&(source.to_string(), reason)) {
            count.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counts
            .entry((source.to_string(), reason))
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// `source -> reason -> count`.
    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<&'static str, u64>> {
        let mut out: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
        for entry in self.counts.iter() {
            let (source, reason) = entry.key();
            out.entry(source.clone())
                .or_default()
                .insert(reason, entry.value().load(Ordering::Relaxed));
        }
        out
    }
}
