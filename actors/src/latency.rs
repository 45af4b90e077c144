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

/// The three histograms; recorded from any thread (each lock is held for a few nanoseconds).
pub struct Latencies {
    ack: Mutex<Histogram<u64>>,
    signal_to_order: Mutex<Histogram<u64>>,
    signal_to_fill: Mutex<Histogram<u64>>,
}

impl Default for Latencies {
    fn default() -> Self {
        let histogram = || {
            Mutex::new(
                Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid histogram bounds"),
            )
        };
        Self {
            ack: histogram(),
            signal_to_order: histogram(),
            signal_to_fill: histogram(),
        }
    }
}

impl Latencies {
    fn histogram(&self, span: Span) -> &Mutex<Histogram<u64>> {
        match span {
            Span::Ack => &self.ack,
            Span::SignalToOrder => &self.signal_to_order,
            Span::SignalToFill => &self.signal_to_fill,
        }
    }

    pub fn record(&self, span: Span, took: Duration) {
        let micros = (took.as_micros() as u64).clamp(1, HIGHEST_MICROS);
        let mut histogram = self
            .histogram(span)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let _ = histogram.record(micros);
    }

    pub fn summary(&self, span: Span) -> Summary {
        let histogram = self
            .histogram(span)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Summary {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
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
}
