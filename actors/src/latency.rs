//! The daemon's own latency histograms: webhook to acknowledgement, to its first order leaving for the venue, and to
//! its fill. Microseconds, with three significant digits; each histogram is bounded (about 30 KiB) whatever it counts.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The longest latency recorded as itself (a minute); longer ones count as this.
const HIGHEST_MICROS: u64 = 60_000_000;

/// Which span a latency measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// Webhook arrival to the 202 (the acceptance is durable).
    Ack,
    /// Webhook arrival to its first order handed to risk on its way to the venue.
    SignalToOrder,
    /// Webhook arrival to its first fill recorded.
    SignalToFill,
}

/// A summary of one histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// A histogram read at fixed bounds, the way Prometheus exports one: each bucket's own count (not cumulative), the
/// last bucket unbounded (`u64::MAX`), and the sum of the values as the histogram holds them (three significant
/// digits).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    pub count: u64,
    pub sum: u64,
    pub buckets: Vec<(u64, u64)>,
}

/// One bounded histogram of whole numbers (microseconds, or a count per commit), recorded from any thread: each lock
/// is held for a few nanoseconds.
pub struct Recorded {
    histogram: Mutex<Histogram<u64>>,
    highest: u64,
}

impl Recorded {
    /// Values up to `highest` are kept to three significant digits; larger ones count as `highest`.
    pub fn new(highest: u64) -> Recorded {
        Recorded {
            histogram: Mutex::new(
                Histogram::new_with_bounds(1, highest.max(2), 3).expect("valid histogram bounds"),
            ),
            highest,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        self.histogram.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, value: u64) {
        let _ = self.lock().record(value.min(self.highest));
    }

    pub fn summary(&self) -> Summary {
        let h = self.lock();
        Summary {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    /// The counts at `bounds` (ascending, inclusive upper bounds) plus the unbounded bucket.
    pub fn buckets(&self, bounds: &[u64]) -> Buckets {
        let mut buckets: Vec<(u64, u64)> = bounds
            .iter()
            .chain(std::iter::once(&u64::MAX))
            .map(|&b| (b, 0))
            .collect();
        // A copy (about 30 KiB) is read outside the lock, so a scrape never holds up a webhook's ack being recorded.
        let h = self.lock().clone();
        let mut sum = 0u64;
        for v in h.iter_recorded() {
            let (value, n) = (
                h.median_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            );
            sum = sum.saturating_add(value.saturating_mul(n));
            let i = bounds.partition_point(|&b| b < value);
            buckets[i].1 += n;
        }
        Buckets {
            count: h.len(),
            sum,
            buckets,
        }
    }
}

/// The three latency histograms, in microseconds.
pub struct Latencies {
    ack: Recorded,
    signal_to_order: Recorded,
    signal_to_fill: Recorded,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            ack: Recorded::new(HIGHEST_MICROS),
            signal_to_order: Recorded::new(HIGHEST_MICROS),
            signal_to_fill: Recorded::new(HIGHEST_MICROS),
        }
    }
}

impl Latencies {
    pub fn of(&self, span: Span) -> &Recorded {
        match span {
            Span::Ack => &self.ack,
            Span::SignalToOrder => &self.signal_to_order,
            Span::SignalToFill => &self.signal_to_fill,
        }
    }

    pub fn record(&self, span: Span, took: Duration) {
        self.of(span)
            .record(took.as_micros().min(u64::MAX as u128) as u64);
    }

    pub fn summary(&self, span: Span) -> Summary {
        self.of(span).summary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_summarises_in_microseconds() {
        let l = Latencies::default();
        for ms in 1..=100 {
            l.record(Span::Ack, Duration::from_millis(ms));
        }
        l.record(Span::SignalToFill, Duration::from_secs(3600));
        let ack = l.summary(Span::Ack);
        assert_eq!(ack.count, 100);
        assert!((49_900..=50_100).contains(&ack.p50), "{ack:?}");
        assert!(ack.p99 >= 99_000, "{ack:?}");
        assert_eq!(l.summary(Span::SignalToOrder).count, 0);
        // Past the highest value it counts as the highest.
        assert!(l.summary(Span::SignalToFill).max >= HIGHEST_MICROS - 100_000);
    }

    #[test]
    fn buckets_count_each_value_once_at_its_bound() {
        let r = Recorded::new(HIGHEST_MICROS);
        for micros in [50, 100, 101, 900, 1_000, 5_000, 70_000_000] {
            r.record(micros);
        }
        let b = r.buckets(&[100, 1_000]);
        // 50 and 100 at or below 100; 101, 900 and 1000 at or below 1000; the rest above.
        assert_eq!(b.buckets, vec![(100, 2), (1_000, 3), (u64::MAX, 2)]);
        assert_eq!(b.count, 7);
        let exact = 50 + 100 + 101 + 900 + 1_000 + 5_000 + HIGHEST_MICROS;
        assert!(
            b.sum.abs_diff(exact) * 1000 <= exact,
            "{} vs {exact}",
            b.sum
        );
        assert_eq!(
            Recorded::new(10).buckets(&[1]).buckets,
            vec![(1, 0), (u64::MAX, 0)]
        );
    }
}
