//! Event rules: how long a decision takes in the runner (conditions in exact decimals over an event's fields), and
//! event-to-action latency through the real daemon over loopback HTTP, by the daemon's own timestamps.
//!
//! `cargo bench --bench rules` (optionally `-- <events>`; default 500 through the daemon).

use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use sentinel::rules::Engine;
use sentinel_actors::event::Observation;
use sentinel_actors::types::{Symbol, Timestamp};
use serde_json::json;

/// `n` rules over a few event types, as a busy configuration might have.
fn rules(n: usize) -> String {
    (0..n)
        .map(|i| {
            let (on, when, then) = match i % 4 {
                0 => ("funding_rate", format!("abs(funding_rate) >= 0.000{} && mark_price > 1000", i % 9 + 1), "pause"),
                1 => ("risk", format!("var_pct > {} || drawdown_pct >= 10", i % 7 + 3), "close"),
                2 => ("news", format!("sentiment <= -0.{} && relevance >= 0.5", i % 9 + 1), "pause"),
                _ => ("margin_ratio", format!("margin_ratio >= 0.{}", i % 9 + 1), "close"),
            };
            format!(
                "\n[[rules]]\nname = \"r{i}\"\non = \"{on}\"\nwhen = \"{when}\"\nrearm_when = \"mark_price < 0\"\ncooldown_secs = 0\nthen = {{ action = \"{then}\" }}\n"
            )
        })
        .collect()
}

fn decide_in_process(rule_count: usize) {
    let text = common::config("", &rules(rule_count));
    let config =
        sentinel::Config::parse(&text, ".".into(), &common::test_env).expect("valid rules");
    let symbol = Symbol::new("BTCUSDT").unwrap();
    let events: Vec<Observation> = (0..1000)
        .map(|i| Observation {
            source: "binance-futures".into(),
            event_type: "funding_rate".into(),
            symbol: Some(symbol.clone()),
            received_at: Timestamp(i),
            fields: json!({"funding_rate": format!("0.000{}", i % 10), "mark_price": "65000.10"})
                .as_object()
                .unwrap()
                .clone(),
            delivery: None,
        })
        .collect();
    let mut engine = Engine::default();
    let rounds = 200;
    let started = Instant::now();
    let mut fired = 0usize;
    for _ in 0..rounds {
        for event in &events {
            fired += engine
                .decide(&config.rules, event, event.received_at, &|_| false)
                .iter()
                .filter(|d| d.verdict == sentinel::rules::Verdict::Fire)
                .count();
        }
    }
    let per_event = started.elapsed() / (rounds * events.len()) as u32;
    let listening = rule_count.div_ceil(4);
    println!(
        "decide: {rule_count} rules ({listening} listening to the event type): {per_event:?} per event ({fired} firings)"
    );
}

async fn through_the_daemon(events: usize) {
    let daemon = common::Daemon::start(&common::config(
        "fee_rate = \"0\"\nslippage = \"0\"",
        r#"
[[rules]]
name = "pause"
on = "risk"
when = "var_pct > 5"
rearm_when = "var_pct < 1"
cooldown_secs = 0
then = { action = "pause" }
"#,
    ));
    let client = daemon.client();
    for i in 0..events {
        // Alternating: every other event fires (after one that re-arms it).
        let var = if i % 2 == 0 { 9 } else { 0 };
        let body =
            json!({"event": "risk", "symbol": "BTCUSDT", "var_pct": var, "id": format!("b{i}")})
                .to_string();
        let (status, answer) = client.signed(&body).await;
        assert_eq!(status.as_u16(), 202, "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = events.div_ceil(2);
    let fired = loop {
        let fired = common::journal_events(&daemon.journal_path(), "rule_fired");
        if fired.len() >= expected || Instant::now() > deadline {
            break fired;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let mut latencies: Vec<i64> = fired
        .iter()
        .map(|(_, at, e)| at - e["observed_at"].as_i64().unwrap())
        .collect();
    latencies.sort_unstable();
    let q = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "through the daemon: {} events, {} firings; event received -> rule_fired journaled: p50 {} ms, p99 {} ms, max {} ms",
        events,
        latencies.len(),
        q(0.5),
        q(0.99),
        latencies.last().unwrap()
    );
}

fn main() {
    let events: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    for n in [10, 100] {
        decide_in_process(n);
    }
    actix_web::rt::System::new().block_on(through_the_daemon(events));
}
