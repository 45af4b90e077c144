//! Prometheus metrics: what is counted as it happens (webhook answers; signal outcomes and venue errors, from the
//! journal), and what is read at scrape time from the state the daemon keeps anyway (refusals, denials, latencies,
//! group commit, the portfolio, the venue's standing), so nothing is counted twice.
//!
//! Money is `Decimal` everywhere else; it becomes `f64` only here, as it is written out, because Prometheus samples
//! are floats.

use std::collections::{BTreeMap, HashMap};
use std::pin::pin;
use std::sync::{Arc, OnceLock};

use actix_web::http::StatusCode;
use futures_util::StreamExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    text, DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
    NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use sentinel_actors::event::{Event, Offset, RuleOutcome, Stamped};
use sentinel_actors::latency::Buckets;
use sentinel_actors::log::{tail, EventLog};
use sentinel_actors::risk::TradingState;
use sentinel_actors::venue::VenueError;
use serde::Deserialize;
use tracing::warn;

use crate::journal::JournalStats;

/// The answers a webhook commonly gets, each with a counter handle per configured source taken on first use, so
/// counting one is a lookup and an atomic add; any other status goes through the family's map.
const ANSWERS: [u16; 12] = [200, 202, 400, 401, 403, 404, 408, 413, 415, 422, 429, 503];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    source: String,
    answer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleNameLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

/// The bounds of the latency histograms (a webhook's acknowledgement, its first order and fill, a journal commit), in
/// microseconds: 100 µs to 10 s.
pub const LATENCY_BOUNDS_MICROS: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// The bounds of the events-per-commit histogram: group commit at work shows as the upper buckets filling.
pub const COMMIT_EVENTS_BOUNDS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// A rule's latency, from its event's arrival to its action taken, in seconds.
const RULE_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The daemon's series. Shared as `Arc<Metrics>` by the HTTP workers and the task that follows the journal.
pub struct Metrics {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
    /// Configured sources only: names a client makes up must not grow the series.
    by_source: HashMap<String, [OnceLock<Counter>; ANSWERS.len()]>,
    signals: Family<OutcomeLabels, Counter>,
    venue_errors: Family<KindLabels, Counter>,
    /// Rule names and sources come from the configuration (and the venue), so these series are bounded.
    rule_decisions: Family<RuleLabels, Counter>,
    rule_latency: Family<RuleNameLabels, Histogram>,
    observations: Family<SourceLabels, Counter>,
}

impl Metrics {
    pub fn new<'a>(sources: impl IntoIterator<Item = &'a str>) -> Metrics {
        let mut registry = Registry::with_prefix("sentinel");
        let webhooks = Family::<WebhookLabels, Counter>::default();
        let signals = Family::<OutcomeLabels, Counter>::default();
        let venue_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "webhooks",
            "Webhooks answered, by configured source and HTTP status",
            webhooks.clone(),
        );
        registry.register(
            "signals",
            "Signals finished since the daemon started, by outcome",
            signals.clone(),
        );
        registry.register(
            "venue_errors",
            "Orders the venue rejected, or whose sending failed or ended unknown, since the daemon started",
            venue_errors.clone(),
        );
        let rule_decisions = Family::<RuleLabels, Counter>::default();
        let rule_latency = Family::<RuleNameLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(RULE_BUCKETS)) as fn() -> Histogram,
        );
        let observations = Family::<SourceLabels, Counter>::default();
        registry.register(
            "rule_decisions",
            "Rules fired since the daemon started, by rule and outcome (signals, trading_state, margin_added, failed)",
            rule_decisions.clone(),
        );
        registry.register(
            "rule_latency_seconds",
            "From an event's arrival to its rule's action taken, by rule",
            rule_latency.clone(),
        );
        registry.register(
            "observations",
            "Events (not signals) journaled since the daemon started, by source or venue",
            observations.clone(),
        );
        Metrics {
            registry,
            rule_decisions,
            rule_latency,
            observations,
            webhooks,
            by_source: sources
                .into_iter()
                .map(|s| (s.to_string(), Default::default()))
                .collect(),
            signals,
            venue_errors,
        }
    }

    /// Adds the notifier's counts per channel: delivered, failed, dropped (its queue was full).
    pub fn with_notifications(
        mut self,
        notifications: Arc<crate::notify::Notifications>,
    ) -> Metrics {
        self.registry
            .register_collector(Box::new(NotificationCounts(notifications)));
        self
    }

    /// The counters of a configured source's webhook answers; `None` for a name no source has (answered 404 and
    /// not counted).
    pub fn webhooks_of(&self, source: &str) -> Option<SourceWebhooks<'_>> {
        let (source, slots) = self.by_source.get_key_value(source)?;
        Some(SourceWebhooks {
            family: &self.webhooks,
            source,
            slots,
        })
    }

    /// Follows the journal from `from`, counting signal outcomes and venue errors as they become durable; ends
    /// when the journal stops (or when aborted at shutdown, since it holds the journal open).
    pub async fn follow(self: Arc<Self>, log: Arc<dyn EventLog>, from: Offset) {
        let mut batches = pin!(tail(log, from, 1024));
        while let Some(batch) = batches.next().await {
            match batch {
                Ok(batch) => batch.iter().for_each(|stamped| self.count(stamped)),
                Err(e) => {
                    warn!(error = %e, "metrics stopped following the journal: signal and venue error counts stand still");
                    return;
                }
            }
        }
    }

    fn count(&self, stamped: &Stamped) {
        match &stamped.event {
            Event::RuleFired {
                rule,
                outcome,
                observed_at,
                ..
            } => {
                let outcome = match outcome {
                    RuleOutcome::Signals { .. } => "signals",
                    RuleOutcome::TradingState { .. } => "trading_state",
                    RuleOutcome::MarginRequested { .. } => "margin_requested",
                    RuleOutcome::MarginAdded { .. } => "margin_added",
                    RuleOutcome::Failed { .. } => "failed",
                };
                self.rule_decisions
                    .get_or_create(&RuleLabels {
                        rule: rule.clone(),
                        outcome,
                    })
                    .inc();
                // A margin request is the first half of one action: its latency is the second's.
                if outcome == "margin_requested" {
                    return;
                }
                let ms = stamped.at.0.saturating_sub(observed_at.0).max(0);
                self.rule_latency
                    .get_or_create(&RuleNameLabels { rule: rule.clone() })
                    .observe(ms as f64 / 1000.0);
            }
            Event::Observed { observation } => {
                self.observations
                    .get_or_create(&SourceLabels {
                        source: observation.source.clone(),
                    })
                    .inc();
            }
            Event::SignalFinished { outcome, .. } => {
                let labels = OutcomeLabels {
                    outcome: outcome.status(),
                };
                self.signals.get_or_create(&labels).inc();
            }
            Event::Rejected { error, .. } => {
                let kind = match error {
                    VenueError::Rejected { .. } => "rejected",
                    VenueError::Unavailable { .. } => "unavailable",
                    VenueError::Unknown { .. } => "unknown",
                };
                self.venue_errors.get_or_create(&KindLabels { kind }).inc();
            }
            _ => {}
        }
    }

    /// The text exposition (OpenMetrics) of every series: the counted ones, then `snapshot`'s.
    pub fn encode(&self, snapshot: Snapshot) -> String {
        let mut scrape = Registry::with_prefix("sentinel");
        scrape.register_collector(Box::new(snapshot));
        let mut out = String::with_capacity(8 * 1024);
        let written = text::encode_registry(&mut out, &self.registry)
            .and_then(|()| text::encode_registry(&mut out, &scrape))
            .and_then(|()| text::encode_eof(&mut out));
        written.expect("writing to a String cannot fail");
        out
    }
}

/// The notifier's counts, read at scrape time.
#[derive(Debug)]
struct NotificationCounts(Arc<crate::notify::Notifications>);

impl Collector for NotificationCounts {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.0.counts();
        let samples = counts.iter().flat_map(|c| {
            [
                ("delivered", c.delivered),
                ("failed", c.failed),
                ("dropped", c.dropped),
            ]
            .map(|(outcome, n)| ([("channel", c.name.as_str()), ("outcome", outcome)], n))
        });
        counters(
            &mut e,
            "notifications",
            "Notifications since the daemon started, by channel and outcome (dropped: the channel's queue was full)",
            samples,
        )
    }
}

/// One source's webhook answer counters.
pub struct SourceWebhooks<'a> {
    family: &'a Family<WebhookLabels, Counter>,
    source: &'a str,
    slots: &'a [OnceLock<Counter>; ANSWERS.len()],
}

impl SourceWebhooks<'_> {
    /// Counts one answer: after the first of its status, an atomic add.
    pub fn answered(&self, status: StatusCode) {
        let labels = || WebhookLabels {
            source: self.source.to_string(),
            answer: status.as_str().to_string(),
        };
        match ANSWERS.iter().position(|&a| a == status.as_u16()) {
            Some(i) => self.slots[i]
                .get_or_init(|| self.family.get_or_create(&labels()).clone())
                .inc(),
            None => self.family.get_or_create(&labels()).inc(),
        };
    }
}

/// What the daemon keeps that the scrape reads, taken once per scrape.
#[derive(Debug)]
pub struct Snapshot {
    /// `source -> reason -> count`, from the refusal counters.
    pub refusals: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Risk denials by code since the log began, from the ledger.
    pub denials: BTreeMap<String, u64>,
    /// Latencies read at `LATENCY_BOUNDS_MICROS`.
    pub ack: Buckets,
    pub signal_to_order: Buckets,
    pub signal_to_fill: Buckets,
    pub journal: JournalStats,
    /// Commit durations at `LATENCY_BOUNDS_MICROS`, and events per commit at `COMMIT_EVENTS_BOUNDS`.
    pub journal_commit: Buckets,
    pub journal_commit_events: Buckets,
    pub backlog_signals: usize,
    pub admission_in_use: usize,
    pub admission_limit: usize,
    /// `None` when the risk actor did not answer.
    pub trading_state: Option<TradingState>,
    pub equity: Decimal,
    pub open_positions: usize,
    pub resting_orders: usize,
    pub log_offset: u64,
    /// `None` for a venue that reports no rate-limit standing (paper).
    pub venue: Option<VenueStanding>,
}

/// The part of the venue's status (Binance's `standing`) that is a number worth graphing.
#[derive(Debug, Deserialize)]
pub struct VenueStanding {
    used_weight_1m: u32,
    order_count_10s: u32,
    halted: Option<String>,
    paused_until_ms: Option<i64>,
}

impl VenueStanding {
    /// Reads it from the venue's status JSON; `None` when the venue has none.
    pub fn from_status(status: &serde_json::Value) -> Option<VenueStanding> {
        serde_json::from_value(status.get("standing")?.clone()).ok()
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let refusals = self.refusals.iter().flat_map(|(source, reasons)| {
            reasons
                .iter()
                .map(move |(reason, n)| ([("source", source.as_str()), ("reason", reason)], *n))
        });
        counters(
            &mut e,
            "refusals",
            "Webhooks refused, by source and reason",
            refusals,
        )?;
        let denials = self
            .denials
            .iter()
            .map(|(code, n)| ([("reason", code.as_str())], *n));
        counters(
            &mut e,
            "denials",
            "Orders risk denied since the log began, by reason",
            denials,
        )?;
        let micros = |v: u64| v as f64 / 1e6;
        for (name, what, buckets) in [
            (
                "ack_latency_seconds",
                "Webhook arrival to its 202",
                &self.ack,
            ),
            (
                "signal_to_order_seconds",
                "Webhook arrival to its first order leaving for the venue",
                &self.signal_to_order,
            ),
            (
                "signal_to_fill_seconds",
                "Webhook arrival to its first fill",
                &self.signal_to_fill,
            ),
            (
                "journal_commit_seconds",
                "A journal commit, begin to durable",
                &self.journal_commit,
            ),
        ] {
            histogram(&mut e, name, what, buckets, micros)?;
        }
        histogram(
            &mut e,
            "journal_commit_events",
            "Events made durable by one commit (one fsync)",
            &self.journal_commit_events,
            |n| n as f64,
        )?;
        let j = &self.journal;
        counter(
            &mut e,
            "journal_commits",
            "Journal transactions committed (one fsync each)",
            j.commits,
        )?;
        counter(
            &mut e,
            "journal_batches",
            "Appends made durable by those commits",
            j.batches,
        )?;
        counter(
            &mut e,
            "journal_events",
            "Events written to the journal",
            j.events,
        )?;
        gauge(
            &mut e,
            "backlog_signals",
            "Signals acknowledged and not finished",
            self.backlog_signals,
        )?;
        gauge(
            &mut e,
            "admission_in_use",
            "Signals admitted and not finished",
            self.admission_in_use,
        )?;
        gauge(
            &mut e,
            "admission_limit",
            "Admitted signals past which webhooks get 503",
            self.admission_limit,
        )?;
        if let Some(current) = self.trading_state {
            let states = [
                TradingState::Active,
                TradingState::Reducing,
                TradingState::Halted,
            ]
            .map(|s| (s.to_string(), u64::from(s == current)));
            let states = states.iter().map(|(s, v)| ([("state", s.as_str())], *v));
            family(
                &mut e,
                "trading_state",
                "1 for the current trading state",
                MetricType::Gauge,
                states,
            )?;
        }
        gauge(
            &mut e,
            "equity",
            "Account equity in the quote currency",
            money(self.equity),
        )?;
        gauge(
            &mut e,
            "open_positions",
            "Symbols with an open position",
            self.open_positions,
        )?;
        gauge(
            &mut e,
            "resting_orders",
            "Limit entries resting on the venue",
            self.resting_orders,
        )?;
        gauge(
            &mut e,
            "log_offset",
            "The last journal offset the ledger has folded",
            self.log_offset,
        )?;
        if let Some(v) = &self.venue {
            gauge(
                &mut e,
                "venue_used_weight_1m",
                "Request weight used this minute",
                v.used_weight_1m,
            )?;
            gauge(
                &mut e,
                "venue_order_count_10s",
                "Orders placed in this 10 s window",
                v.order_count_10s,
            )?;
            gauge(
                &mut e,
                "venue_halted",
                "1 while the venue client is halted",
                i64::from(v.halted.is_some()),
            )?;
            let paused = i64::from(v.paused_until_ms.is_some());
            gauge(
                &mut e,
                "venue_paused",
                "1 while requests are paused by a rate limit",
                paused,
            )?;
        }
        Ok(())
    }
}

/// A latency summary as gauges by quantile (`1` is the maximum), in seconds, with its observation count.
/// A histogram read from the daemon's own (`Buckets`), its values scaled to the unit the name ends in.
fn histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    b: &Buckets,
    unit: impl Fn(u64) -> f64,
) -> Result<(), std::fmt::Error> {
    let buckets: Vec<(f64, u64)> = b
        .buckets
        .iter()
        .map(|&(bound, n)| {
            let le = if bound == u64::MAX {
                f64::INFINITY
            } else {
                unit(bound)
            };
            (le, n)
        })
        .collect();
    e.encode_descriptor(name, &format!("{help}."), None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(unit(b.sum), b.count, &buckets, None)
}

fn money(value: Decimal) -> f64 {
    value.to_f64().unwrap_or(f64::NAN)
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue + Send + Sync + std::fmt::Debug,
) -> Result<(), std::fmt::Error> {
    let m = ConstCounter::new(value);
    m.encode(e.encode_descriptor(name, &format!("{help}."), None, m.metric_type())?)
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue + Send + Sync + std::fmt::Debug,
) -> Result<(), std::fmt::Error> {
    let m = ConstGauge::new(value);
    m.encode(e.encode_descriptor(name, &format!("{help}."), None, m.metric_type())?)
}

fn counters<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    family(e, name, help, MetricType::Counter, samples)
}

/// One labelled family of constant samples, counters or gauges.
fn family<L: EncodeLabelSet, V>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl Iterator<Item = (L, V)>,
) -> Result<(), std::fmt::Error>
where
    V: EncodeCounterValue + EncodeGaugeValue + Send + Sync + std::fmt::Debug,
{
    let help = format!("{help}.");
    let mut m = e.encode_descriptor(name, &help, None, kind)?;
    for (labels, value) in samples {
        let sample = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value).encode(sample)?,
            _ => ConstGauge::new(value).encode(sample)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            refusals: BTreeMap::from([("tv".to_string(), BTreeMap::from([("bad_passphrase", 3)]))]),
            denials: BTreeMap::from([("notional_above_limit".to_string(), 2)]),
            ack: Buckets {
                count: 5,
                sum: 26_000,
                buckets: vec![(1_000, 1), (2_500, 3), (25_000, 1), (u64::MAX, 0)],
            },
            signal_to_order: Buckets::default(),
            signal_to_fill: Buckets::default(),
            journal: JournalStats::default(),
            journal_commit: Buckets::default(),
            journal_commit_events: Buckets {
                count: 2,
                sum: 40,
                buckets: vec![(1, 0), (64, 2), (u64::MAX, 0)],
            },
            backlog_signals: 4,
            admission_in_use: 4,
            admission_limit: 1024,
            trading_state: Some(TradingState::Reducing),
            equity: Decimal::new(1_234_567, 2),
            open_positions: 1,
            resting_orders: 0,
            log_offset: 42,
            venue: VenueStanding::from_status(&serde_json::json!({
                "standing": {"used_weight_1m": 120, "order_count_10s": 3, "halted": "banned until 12:00",
                             "paused_until_ms": null, "clock_offset_ms": 4}
            })),
        }
    }

    #[test]
    fn counts_answers_of_configured_sources_and_writes_the_snapshot() {
        let metrics = Metrics::new(["tv", "signals"]);
        let tv = metrics.webhooks_of("tv").expect("a configured source");
        for _ in 0..3 {
            tv.answered(StatusCode::ACCEPTED);
        }
        tv.answered(StatusCode::INTERNAL_SERVER_ERROR);
        assert!(metrics.webhooks_of("made-up").is_none());
        let text = metrics.encode(snapshot());
        for line in [
            r#"sentinel_webhooks_total{source="tv",answer="202"} 3"#,
            r#"sentinel_webhooks_total{source="tv",answer="500"} 1"#,
            r#"sentinel_refusals_total{source="tv",reason="bad_passphrase"} 3"#,
            r#"sentinel_denials_total{reason="notional_above_limit"} 2"#,
            "# TYPE sentinel_ack_latency_seconds histogram",
            r#"sentinel_ack_latency_seconds_bucket{le="0.001"} 1"#,
            r#"sentinel_ack_latency_seconds_bucket{le="0.0025"} 4"#,
            r#"sentinel_ack_latency_seconds_bucket{le="0.025"} 5"#,
            r#"sentinel_ack_latency_seconds_bucket{le="+Inf"} 5"#,
            "sentinel_ack_latency_seconds_count 5",
            "sentinel_ack_latency_seconds_sum 0.026",
            r#"sentinel_journal_commit_events_bucket{le="64.0"} 2"#,
            "sentinel_journal_commit_events_sum 40.0",
            r#"sentinel_trading_state{state="reducing"} 1"#,
            r#"sentinel_trading_state{state="active"} 0"#,
            "sentinel_equity 12345.67",
            "sentinel_backlog_signals 4",
            "sentinel_log_offset 42",
            "sentinel_venue_used_weight_1m 120",
            "sentinel_venue_halted 1",
            "sentinel_venue_paused 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(!text.contains("signals\",answer"), "no answer counted yet");
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }

    #[test]
    fn a_venue_without_a_standing_writes_no_venue_gauges() {
        let paper = VenueStanding::from_status(&serde_json::json!({"feeds": []}));
        assert!(paper.is_none());
        let text = Metrics::new(["tv"]).encode(Snapshot {
            venue: paper,
            trading_state: None,
            ..snapshot()
        });
        assert!(!text.contains("sentinel_venue_"), "{text}");
        assert!(!text.contains("sentinel_trading_state"), "{text}");
    }
}
