//! `GET /metrics` on the API listener: well-formed Prometheus text, and counters that move with what the daemon does.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{free_config, Client, Daemon};
use serde_json::json;

/// Samples by series (`name{labels}` exactly as written), after checking every line of the exposition.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// Parses the text format: comments are `# HELP`, `# TYPE`, `# UNIT` or the closing `# EOF`; every other line is
    /// `name{labels} value` or `name value`, and belongs to a family declared by a `# TYPE` line before it.
    fn parse(text: &str) -> Scrape {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = BTreeMap::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(comment) = line.strip_prefix("# ") {
                let mut words = comment.splitn(3, ' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("EOF"), None, None) => {
                        assert!(lines.peek().is_none(), "`# EOF` is the last line");
                    }
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        assert!(
                            [
                                "counter",
                                "gauge",
                                "histogram",
                                "summary",
                                "info",
                                "unknown"
                            ]
                            .contains(&kind),
                            "{line}"
                        );
                        assert!(
                            types.insert(name.to_string(), kind.to_string()).is_none(),
                            "one `# TYPE` per family: {line}"
                        );
                    }
                    (Some("HELP" | "UNIT"), Some(_), _) => {}
                    _ => panic!("unexpected comment: {line}"),
                }
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("bad value in {line}: {e}"));
            let name = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    for label in labels.split("\",").filter(|l| !l.is_empty()) {
                        let (key, _) = label
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label in {line}"));
                        assert!(
                            !key.is_empty()
                                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                            "bad label name in {line}"
                        );
                    }
                    name
                }
                None => series,
            };
            assert!(name.starts_with("sentinel_"), "unprefixed: {line}");
            let family = ["_total", "_bucket", "_sum", "_count", "_created", ""]
                .iter()
                .find_map(|suffix| {
                    let family = name.strip_suffix(suffix)?;
                    types.contains_key(family).then_some(family)
                })
                .unwrap_or_else(|| panic!("no `# TYPE` for {line}"));
            if types[family] == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "a counter sample ends in _total: {line}"
                );
                assert!(value >= 0.0, "{line}");
            }
            assert!(
                samples.insert(series.to_string(), value).is_none(),
                "series written twice: {line}"
            );
        }
        assert!(
            text.ends_with("# EOF\n"),
            "the exposition ends with `# EOF`"
        );
        Scrape { samples }
    }

    /// The value of one series, 0 when it was never written (a counter nothing has moved yet).
    fn value(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// The sum over a family's series (every label value).
    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| series.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }

    /// A histogram's buckets never decrease with their bound, and the last (`+Inf`) counts everything.
    fn assert_cumulative(&self, name: &str) {
        let bucket = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|(series, &n)| {
                let le = series.strip_prefix(&bucket)?.strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, n))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.len() > 2, "{name} has buckets");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{name}: {buckets:?}"
        );
        let (last, all) = buckets[buckets.len() - 1];
        assert_eq!(last, f64::INFINITY, "{name}");
        assert_eq!(all, self.value(&format!("{name}_count")), "{name}");
    }

    fn names(&self) -> BTreeSet<&str> {
        self.samples
            .keys()
            .map(|s| s.split('{').next().unwrap())
            .collect()
    }
}

async fn scrape(c: &Client) -> Scrape {
    let http = awc::Client::default();
    let mut req = http.get(format!("{}/metrics", c.api_base));
    if let Some(token) = &c.read_token {
        req = req.insert_header(("authorization", format!("Bearer {token}")));
    }
    let mut res = req.send().await.expect("scrape sent");
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res
        .headers()
        .get("content-type")
        .expect("a content type")
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let body = res.body().limit(1 << 20).await.expect("scrape read");
    Scrape::parse(std::str::from_utf8(&body).expect("UTF-8"))
}

/// Scrapes until `done` holds; the journal's outcomes are counted as they become durable, just after.
async fn scrape_until(c: &Client, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = scrape(c).await;
        if done(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "metrics did not move: {scrape:#?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

const ACCEPTED: &str = r#"sentinel_webhooks_total{source="tradingview",answer="202"}"#;
const UNAUTHORIZED: &str = r#"sentinel_webhooks_total{source="tradingview",answer="401"}"#;
const FILLED: &str = r#"sentinel_signals_total{outcome="filled"}"#;
const BAD_PASSPHRASE: &str =
    r#"sentinel_refusals_total{source="tradingview",reason="bad_passphrase"}"#;

#[actix_web::test]
async fn metrics_parse_and_move_with_webhooks_and_signals() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let before = scrape(&c).await;
    for gauge in [
        "sentinel_backlog_signals",
        "sentinel_admission_in_use",
        "sentinel_equity",
        "sentinel_open_positions",
        "sentinel_log_offset",
        "sentinel_ack_latency_seconds_count",
        "sentinel_journal_commits_total",
        "sentinel_journal_commit_seconds_bucket",
        "sentinel_journal_commit_events_bucket",
    ] {
        assert!(
            before.names().contains(gauge),
            "{gauge} missing: {before:#?}"
        );
    }
    assert_eq!(before.value("sentinel_equity"), 10_000.0);
    assert_eq!(before.value("sentinel_open_positions"), 0.0);
    assert_eq!(
        before.value(r#"sentinel_trading_state{state="active"}"#),
        1.0
    );
    assert_eq!(
        before.value(r#"sentinel_trading_state{state="halted"}"#),
        0.0
    );

    let record = c
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "position_size": "0.1", "price": "40000"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    let after = scrape_until(&c, |s| {
        s.sum("sentinel_signals_total") > before.sum("sentinel_signals_total")
    })
    .await;
    assert_eq!(after.value(ACCEPTED), before.value(ACCEPTED) + 1.0);
    assert_eq!(
        after.sum("sentinel_signals_total"),
        before.sum("sentinel_signals_total") + 1.0
    );
    assert_eq!(after.value(FILLED), before.value(FILLED) + 1.0);
    assert_eq!(after.value("sentinel_open_positions"), 1.0);
    assert_eq!(after.value("sentinel_ack_latency_seconds_count"), 1.0);
    for histogram in [
        "sentinel_ack_latency_seconds",
        "sentinel_signal_to_fill_seconds",
        "sentinel_journal_commit_seconds",
        "sentinel_journal_commit_events",
    ] {
        after.assert_cumulative(histogram);
    }
    // Every commit is in both journal histograms, and every event in the size histogram's sum.
    let commits = after.value("sentinel_journal_commits_total");
    assert!(commits > before.value("sentinel_journal_commits_total"));
    assert_eq!(
        after.value("sentinel_journal_commit_seconds_count"),
        commits
    );
    assert_eq!(after.value("sentinel_journal_commit_events_count"), commits);
    assert_eq!(
        after.value("sentinel_journal_commit_events_sum"),
        after.value("sentinel_journal_events_total")
    );
    assert!(after.value("sentinel_log_offset") > before.value("sentinel_log_offset"));

    // A wrong passphrase: answered 401, and counted as a refusal by reason.
    let (status, _) = c
        .post(
            "tradingview",
            &json!({"symbol": "BTCUSDT", "action": "close_long", "passphrase": "wrong"})
                .to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A source nobody configured is not a label value: strangers cannot grow the series.
    let (status, _) = c
        .post("made-up", "{}", &[("content-type", "application/json")])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let last = scrape(&c).await;
    assert_eq!(last.value(UNAUTHORIZED), after.value(UNAUTHORIZED) + 1.0);
    assert_eq!(
        last.value(BAD_PASSPHRASE),
        after.value(BAD_PASSPHRASE) + 1.0
    );
    assert_eq!(
        last.value(ACCEPTED),
        after.value(ACCEPTED),
        "nothing else was accepted"
    );
    assert!(
        !last.samples.keys().any(|s| s.contains("made-up")),
        "{last:#?}"
    );
}
