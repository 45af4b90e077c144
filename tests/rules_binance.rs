//! Event rules on the venue's own events, through the real daemon against a local server that speaks Binance USD-M
//! futures' wire protocol: a funding rate from the mark price stream adjusts the position, and a margin call from
//! the user data stream adds isolated margin, each inside its budget by the daemon's own timestamps.

mod common;
mod fake_binance;

use std::str::FromStr;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use common::{Client, Daemon};
use fake_binance::FakeBinance;

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// The fake's daemon configuration with isolated margin and `rules`.
fn config(fake: &FakeBinance, rules: &str) -> String {
    fake.daemon_config("margin_type = \"isolated\"") + rules
}

async fn start(fake: &FakeBinance, rules: &str) -> Daemon {
    let daemon = Daemon::start_with_env_unwaited(&config(fake, rules), fake.daemon_env());
    daemon.client().ready().await;
    daemon
}

/// Waits (at most 10 s) for a `rule_fired` of `rule`; returns it with its time in the journal.
async fn fired(daemon: &Daemon, rule: &str) -> (i64, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = common::journal_events(&daemon.journal_path(), "rule_fired")
            .into_iter()
            .find(|(_, _, e)| e["rule"] == rule);
        if let Some((_, at, event)) = found {
            return (at, event);
        }
        assert!(Instant::now() < deadline, "rule {rule} did not fire");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(scenario: &str, took: i64, budget: i64) {
    println!("{scenario}: event received -> action done in {took} ms (budget {budget} ms)");
    assert!((0..budget).contains(&took), "{scenario} took {took} ms");
}

#[actix_web::test]
async fn funding_a_rate_from_the_mark_price_stream_sets_the_position_against_it_within_one_second()
{
    let fake = FakeBinance::start().await;
    fake.set_mark("BTCUSDT", d("50000"));
    let daemon = start(
        &fake,
        r#"
[[rules]]
name = "funding"
on = "funding_rate"
source = "binance-futures"
symbols = ["BTCUSDT"]
when = "abs(funding_rate) >= 0.0005"
rearm_when = "abs(funding_rate) < 0.0002"
then = { action = "funding_target", base_size = "0.01", per = "0.0005", max_size = "0.05" }
"#,
    )
    .await;
    let client: Client = daemon.client();

    // Longs pay 0.1% a period: the target is short 0.02 (0.01 for each 0.05%).
    fake.set_funding_rate("BTCUSDT", d("0.001"));
    let (_, fired) = fired(&daemon, "funding").await;
    let id = fired["outcome"]["signal_ids"][0].as_str().unwrap();
    let record = client.done(id).await;
    assert_eq!(record["status"], "filled", "{record}");
    eventually("the short on the exchange", || {
        fake.position("BTCUSDT") == d("-0.02")
    })
    .await;
    // The rate as Binance sent it, kept with the signal.
    let rate = record["payload"]["event"]["fields"]["funding_rate"].to_string();
    assert_eq!(d(&rate), d("0.001"), "{record}");
    let took = record["finished_at"].as_i64().unwrap() - record["received_at"].as_i64().unwrap();
    report("funding rate", took, 1_000);

    // The rate eases but stays above the re-arm level: nothing more is traded. The mark has risen meanwhile.
    fake.set_mark("BTCUSDT", d("50500"));
    fake.set_funding_rate("BTCUSDT", d("0.0003"));
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    let rules_fired = common::journal_events(&daemon.journal_path(), "rule_fired");
    assert_eq!(rules_fired.len(), 1, "{rules_fired:?}");
    assert_eq!(fake.position("BTCUSDT"), d("-0.02"));
    // Binance's mark, journaled with the funding event, values the short: 0.02 x (50000 - 50500) = -10.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let position = client.position("BTCUSDT").await.expect("the short");
        if position["mark_price"] == "50500" {
            assert_eq!(
                d(position["unrealized_pnl"].as_str().unwrap()),
                d("-10"),
                "{position}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{position}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn liquidation_protection_a_margin_call_adds_isolated_margin_within_one_second() {
    let fake = FakeBinance::start().await;
    fake.set_mark("BTCUSDT", d("50000"));
    let daemon = start(
        &fake,
        r#"
[[rules]]
name = "protect"
on = "margin_ratio"
source = "binance-futures"
when = "margin_ratio >= 0.8"
rearm_when = "margin_ratio < 0.5"
then = { action = "add_margin", amount = "150" }
"#,
    )
    .await;
    let client = daemon.client();
    let (status, answer) = client
        .tradingview(json!({"symbol": "BTCUSDT", "action": "open_long", "position_size": "0.1", "id": "entry-1"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let entry = client.done(answer["signal_id"].as_str().unwrap()).await;
    assert_eq!(entry["status"], "filled", "{entry}");
    let wallet_before = fake.wallet();

    // A margin call is pushed once: only to a user data stream that is open.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get("/api/account").await["venue"]["feeds"]["user_data"] != "stream" {
        assert!(
            Instant::now() < deadline,
            "the user data stream did not open"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    // The price fell toward the liquidation price; Binance warns.
    fake.margin_call("BTCUSDT", d("48000"), d("40"));
    // Journaled before the call (it has no idempotency key), then its result.
    let (_, requested) = fired(&daemon, "protect").await;
    assert_eq!(
        requested["outcome"]["outcome"], "margin_requested",
        "{requested}"
    );
    let path = daemon.journal_path();
    eventually("the margin added, journaled", || {
        common::journal_events(&path, "rule_fired").len() == 2
    })
    .await;
    let (_, at, fired) = common::journal_events(&path, "rule_fired").remove(1);
    assert_eq!(fired["outcome"]["outcome"], "margin_added", "{fired}");
    assert_eq!(fired["trigger"], requested["trigger"]);
    assert_eq!(
        d(fired["outcome"]["amount"].as_str().unwrap()),
        d("150"),
        "{fired}"
    );
    assert_eq!(fake.isolated_margin("BTCUSDT"), d("150"));
    assert_eq!(fake.wallet(), wallet_before - d("150"));
    // The request reached the exchange signed (the fake refuses anything else) with Binance's parameters.
    let request = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/fapi/v1/positionMargin")
        .expect("positionMargin was called");
    let param = |name: &str| {
        request
            .params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(param("type").as_deref(), Some("1"), "{:?}", request.params);
    assert_eq!(
        param("amount").as_deref(),
        Some("150"),
        "{:?}",
        request.params
    );
    assert!(param("signature").is_some());

    let observed: Vec<Value> = common::journal_events(&daemon.journal_path(), "observed")
        .into_iter()
        .map(|(_, _, e)| e)
        .filter(|e| e["observation"]["event_type"] == "margin_ratio")
        .collect();
    assert_eq!(observed.len(), 1);
    let received = observed[0]["observation"]["received_at"].as_i64().unwrap();
    report("liquidation protection", at - received, 1_000);
}

#[actix_web::test]
async fn paper_on_live_prices_takes_funding_rules_from_the_live_market() {
    let fake = FakeBinance::start().await;
    fake.set_mark("BTCUSDT", d("50000"));
    let text = config(
        &fake,
        r#"
[[rules]]
name = "funding"
on = "funding_rate"
source = "binance-futures"
when = "funding_rate <= -0.0005"
then = { action = "funding_target", base_size = "0.01", per = "0.0005", max_size = "0.05" }
"#,
    )
    .replace(
        "kind = \"binance-futures\"",
        "kind = \"paper\"\nmarket_data = \"binance-futures\"\nfee_rate = \"0\"\nslippage = \"0\"",
    )
    .replace("api_key_env = \"TEST_BINANCE_KEY\"\n", "")
    .replace("api_secret_env = \"TEST_BINANCE_SECRET\"\n", "")
    .replace("margin_type = \"isolated\"\n", "")
    .replace("request_timeout_ms = 800\n", "")
    .replace("poll_interval_ms = 100\n", "");
    let daemon = Daemon::start_with_env_unwaited(&text, Vec::new());
    let client = daemon.client();
    client.ready().await;

    // Shorts pay: the paper book goes long 0.015, and nothing reaches the exchange's order endpoints.
    fake.set_funding_rate("BTCUSDT", d("-0.00075"));
    let (_, fired) = fired(&daemon, "funding").await;
    let record = client
        .done(fired["outcome"]["signal_ids"][0].as_str().unwrap())
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    let position = client.position("BTCUSDT").await.expect("a paper long");
    assert_eq!(
        d(position["quantity"].as_str().unwrap()),
        d("0.015"),
        "{position}"
    );
    assert!(fake.orders().is_empty(), "a dry run sent an order");
}
