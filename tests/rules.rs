//! Event rules through the real daemon: events posted to real webhooks, journaled, acted on through the strategy,
//! risk and journal path, each inside its latency budget as the daemon's own timestamps measure it.

mod common;

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{Client, Daemon};
use serde_json::{json, Value};

/// The test config with `rules` appended; no fees, no slippage.
fn config(rules: &str) -> String {
    common::config("fee_rate = \"0\"\nslippage = \"0\"", rules)
}

fn events(daemon: &Daemon, kind: &str) -> Vec<(i64, i64, Value)> {
    common::journal_events(&daemon.journal_path(), kind)
}

/// Waits (at most 10 s) until the journal holds `count` `rule_fired` events; returns them.
async fn fired(daemon: &Daemon, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fired = events(daemon, "rule_fired");
        if fired.len() >= count {
            return fired.into_iter().map(|(_, _, data)| data).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{count} rule(s) did not fire in time: {fired:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The signal a rule made, once done: its id is `rule:<rule>:<trigger offset>:<symbol>`.
async fn rule_signal(client: &Client, fired: &Value) -> Value {
    let id = fired["outcome"]["signal_ids"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no signal: {fired}"));
    client.done(id).await
}

/// From the event's arrival to the signal's end, by the daemon's clock; reported, and checked against `budget_ms`.
fn within(record: &Value, budget_ms: i64, scenario: &str) -> i64 {
    let took = record["finished_at"].as_i64().unwrap() - record["received_at"].as_i64().unwrap();
    println!("{scenario}: event received -> action done in {took} ms (budget {budget_ms} ms)");
    assert!((0..budget_ms).contains(&took), "{scenario} took {took} ms");
    took
}

async fn signed_event(client: &Client, body: Value) -> (StatusCode, Value) {
    client.signed(&body.to_string()).await
}

#[actix_web::test]
async fn breakout_a_tradingview_price_alert_opens_a_long_within_two_seconds() {
    let daemon = Daemon::start(&config(
        r#"
[[rules]]
name = "breakout"
on = "price_alert"
source = "tradingview"
when = "price > level"
then = { action = "open_long", position_size = "0.01", leverage = 2, stop_loss = "2%" }
"#,
    ));
    let client = daemon.client();
    let (status, answer) = client
        .tradingview(
            json!({"event": "price_alert", "symbol": "BTCUSDT", "price": 65100, "level": 65000}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["event"], "price_alert");

    let fired = fired(&daemon, 1).await;
    assert_eq!(fired[0]["rule"], "breakout");
    assert_eq!(fired[0]["trigger"], answer["offset"]);
    let record = rule_signal(&client, &fired[0]).await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(record["signal"]["source"], "rule:breakout");
    // The record carries the event that triggered it, passphrase removed.
    let payload = &record["payload"];
    assert_eq!(payload["event"]["fields"]["level"], 65000, "{payload}");
    assert_eq!(payload["trigger"], answer["offset"], "{payload}");
    assert!(!payload.to_string().contains(common::PASSPHRASE));
    within(&record, 2_000, "breakout");
    let position = client.position("BTCUSDT").await.expect("a long is open");
    assert_eq!(position["quantity"], "0.01", "{position}");

    // Counted, with its latency (the metrics follow the journal: a moment behind it).
    let wanted = [
        r#"sentinel_rule_decisions_total{rule="breakout",outcome="signals"} 1"#,
        r#"sentinel_rule_latency_seconds_count{rule="breakout"} 1"#,
        r#"sentinel_observations_total{source="tradingview"} 1"#,
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut res = awc::Client::default()
            .get(format!("{}/metrics", daemon.api_base))
            .bearer_auth(common::READ_TOKEN)
            .send()
            .await
            .unwrap();
        let metrics = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
        if wanted.iter().all(|w| metrics.contains(w)) {
            break;
        }
        assert!(Instant::now() < deadline, "{wanted:?} not in {metrics}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }

    // Below the level: nothing.
    let (status, _) = client
        .tradingview(
            json!({"event": "price_alert", "symbol": "BTCUSDT", "price": 64900, "level": 65000}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events(&daemon, "rule_fired").len(), 1);
}

#[actix_web::test]
async fn risk_control_a_signed_risk_model_reading_force_closes_within_500_ms() {
    let daemon = Daemon::start(&config(
        r#"
[[rules]]
name = "risk-off"
on = "risk"
source = "signals"
when = "var_pct > 5 || drawdown_pct >= 10"
then = { action = "close" }
"#,
    ));
    let client = daemon.client();
    let opened = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "position_size": "0.02", "price": 50000}))
        .await;
    assert_eq!(opened["status"], "filled", "{opened}");

    // Within its limits: nothing happens.
    let (status, _) = signed_event(
        &client,
        json!({"event": "risk", "symbol": "BTCUSDT", "var_pct": 3.5, "drawdown_pct": 4, "id": "risk-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Unsigned: refused, and nothing is journaled.
    let (status, _) = client
        .post(
            "signals",
            &json!({"event": "risk", "symbol": "BTCUSDT", "var_pct": 50}).to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = signed_event(
        &client,
        json!({"event": "risk", "symbol": "BTCUSDT", "var_pct": 7.25, "drawdown_pct": 4, "id": "risk-2"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        events(&daemon, "observed").len(),
        2,
        "the unsigned event was journaled"
    );

    let fired = fired(&daemon, 1).await;
    assert_eq!(
        fired[0]["trigger"], answer["offset"],
        "the first reading fired: {fired:?}"
    );
    let record = rule_signal(&client, &fired[0]).await;
    assert_eq!(record["status"], "filled", "{record}");
    within(&record, 500, "risk control");
    assert!(
        client.position("BTCUSDT").await.is_none(),
        "the long is closed"
    );

    // A redelivery of the same reading is a duplicate, not a second close.
    let (status, again) = signed_event(
        &client,
        json!({"event": "risk", "symbol": "BTCUSDT", "var_pct": 7.25, "drawdown_pct": 4, "id": "risk-2"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["status"], "duplicate");
}

#[actix_web::test]
async fn news_a_signed_sentiment_score_pauses_all_trading_within_five_seconds() {
    let daemon = Daemon::start(&config(
        r#"
[[rules]]
name = "bad-news"
on = "news"
source = "signals"
when = "sentiment <= -0.7 && relevance >= 0.5"
then = { action = "pause_all" }
"#,
    ));
    let client = daemon.client();
    let (status, answer) = signed_event(
        &client,
        json!({"event": "news", "sentiment": -0.82, "relevance": 0.9, "headline": "Exchange halts withdrawals",
               "id": "news-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let fired = fired(&daemon, 1).await;
    assert_eq!(
        fired[0]["outcome"],
        json!({"outcome": "trading_state", "state": "reducing"})
    );
    assert_eq!(
        client.get("/api/trading-state").await["trading_state"],
        "reducing"
    );

    let observed = events(&daemon, "observed");
    let received = observed[0].2["observation"]["received_at"]
        .as_i64()
        .unwrap();
    let changed = events(&daemon, "trading_state_changed");
    let took = changed.last().unwrap().1 - received;
    println!("news: event received -> trading paused in {took} ms (budget 5000 ms)");
    assert!((0..5_000).contains(&took), "news took {took} ms");

    // Paused: an entry is denied.
    let entry = client
        .act(json!({"symbol": "ETHUSDT", "action": "open_long", "price": 3000}))
        .await;
    assert_eq!(entry["status"], "denied", "{entry}");
}

#[actix_web::test]
async fn a_value_flapping_around_its_threshold_trades_once_per_crossing_and_once_per_cooldown() {
    let daemon = Daemon::start(&config(
        r#"
# Hysteresis: buys above 10, again only after the value fell below 5.
[[rules]]
name = "hysteresis"
on = "gauge"
when = "value > 10"
rearm_when = "value < 5"
cooldown_secs = 0
then = { action = "open_long", position_size = "0.01" }

# Cooldown: buys on each rise above 10, at most once a minute.
[[rules]]
name = "cooldown"
on = "gauge"
when = "value > 10"
cooldown_secs = 60
then = { action = "open_long", position_size = "0.02" }
"#,
    ));
    let client = daemon.client();
    let values = [11, 9, 11, 9, 11, 4, 11, 9, 11];
    for (i, value) in values.iter().enumerate() {
        let (status, answer) = signed_event(
            &client,
            json!({"event": "gauge", "symbol": "ETHUSDT", "value": value, "price": 3000,
                   "id": format!("g{i}")}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    // Three firings are expected; a fourth would show within the next half second.
    let firings = fired(&daemon, 3).await;
    for firing in &firings {
        let record = rule_signal(&client, firing).await;
        assert_eq!(record["status"], "filled", "{record}");
    }
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    let observed = events(&daemon, "observed");
    assert_eq!(observed.len(), values.len());
    let fired: Vec<(String, i64)> = events(&daemon, "rule_fired")
        .into_iter()
        .map(|(_, _, e)| {
            (
                e["rule"].as_str().unwrap().to_string(),
                e["trigger"].as_i64().unwrap(),
            )
        })
        .collect();
    let offset = |i: usize| observed[i].0;
    assert_eq!(
        fired,
        vec![
            ("hysteresis".to_string(), offset(0)),
            ("cooldown".to_string(), offset(0)),
            // 11 after 9 does not re-arm the hysteresis rule; 11 after 4 does.
            ("hysteresis".to_string(), offset(6)),
        ],
        "four rises above 10 in a minute: the cooldown rule fired once, the hysteresis rule once per re-arm"
    );
    // What a trader checks: three buys, and the position they add up to.
    let orders = client.get("/api/orders?limit=100").await["orders"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(orders, 3, "one order per firing");
    let position = client.position("ETHUSDT").await.expect("a long is open");
    assert_eq!(position["quantity"], "0.04", "{position}");
}

#[actix_web::test]
async fn an_acknowledged_event_is_acted_on_after_a_restart_and_only_once() {
    let rule = r#"
[[rules]]
name = "risk-off"
on = "risk"
when = "var_pct > 5"
then = { action = "pause" }
"#;
    // Acknowledged by a daemon that has no rule for it yet (as if it stopped before the runner got to it).
    let daemon = Daemon::start(&config(""));
    let (status, _) = signed_event(
        &daemon.client(),
        json!({"event": "risk", "symbol": "BTCUSDT", "var_pct": 9, "id": "late-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let dir = daemon.stop_keeping_journal();

    let daemon = Daemon::start_at(dir, &config(rule));
    let fired = fired(&daemon, 1).await;
    assert_eq!(fired[0]["rule"], "risk-off");
    let record = rule_signal(&daemon.client(), &fired[0]).await;
    // The pause took effect (the record of a pause says the strategy's state changed).
    assert_eq!(
        record["outcome"]["reason"]["code"], "state_changed",
        "{record}"
    );

    // The sender retries the delivery after the restart: recognised, not journaled twice.
    let (status, again) = signed_event(
        &daemon.client(),
        json!({"event": "risk", "symbol": "BTCUSDT", "var_pct": 9, "id": "late-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(events(&daemon, "observed").len(), 1);

    // Another restart replays the same event: it was acted on, so it is not again.
    let daemon = daemon.restart();
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events(&daemon, "rule_fired").len(), 1);
}

#[actix_web::test]
async fn a_malformed_event_is_refused_naming_the_field_and_nothing_is_journaled() {
    let daemon = Daemon::start(&config(""));
    let client = daemon.client();
    for (body, field) in [
        (json!({"event": "", "symbol": "BTCUSDT"}), "event"),
        (json!({"event": "risk", "symbol": "DOGEUSDT"}), "symbol"),
        (json!({"event": 5}), "event"),
        (json!({"event": "risk", "symbol": 7}), "symbol"),
    ] {
        let (status, answer) = signed_event(&client, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    assert!(events(&daemon, "observed").is_empty());
}

#[actix_web::test]
async fn an_event_too_old_to_act_on_after_a_restart_leaves_the_rule_armed_for_the_next() {
    let rule = r#"
[[rules]]
name = "risk-off"
on = "risk"
when = "var_pct > 5"
max_age_secs = 2
then = { action = "pause" }
"#;
    let daemon = Daemon::start(&config(""));
    let (status, _) = signed_event(
        &daemon.client(),
        json!({"event": "risk", "symbol": "BTCUSDT", "var_pct": 9, "id": "old-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let dir = daemon.stop_keeping_journal();
    std::thread::sleep(Duration::from_millis(2_300));

    // Too old by the time a rule sees it: not acted on.
    let daemon = Daemon::start_at(dir, &config(rule));
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert!(events(&daemon, "rule_fired").is_empty());
    // And the rule did not count it as a firing: the next reading acts at once.
    let (status, answer) = signed_event(
        &daemon.client(),
        json!({"event": "risk", "symbol": "BTCUSDT", "var_pct": 9, "id": "new-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let fired = fired(&daemon, 1).await;
    assert_eq!(fired[0]["trigger"], answer["offset"]);
}

/// A fill as `GET /api/orders` lists it: (signal id, symbol, side, quantity).
type Fill = (String, String, String, String);

/// The fills `GET /api/orders` lists, oldest first.
async fn fills(client: &Client) -> Vec<Fill> {
    let orders = client.get("/api/orders?limit=1000").await["orders"].clone();
    let text = |v: &Value| v.as_str().unwrap().to_string();
    let mut fills: Vec<Fill> = orders
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "filled")
        .map(|o| {
            (
                text(&o["signal_id"]),
                text(&o["symbol"]),
                text(&o["fill"]["side"]),
                text(&o["fill"]["quantity"]),
            )
        })
        .collect();
    fills.reverse();
    fills
}

fn fill(signal_id: &str, symbol: &str, side: &str, quantity: &str) -> Fill {
    (
        signal_id.into(),
        symbol.into(),
        side.into(),
        quantity.into(),
    )
}

#[actix_web::test]
async fn reduce_and_reverse_rules_resize_and_flip_a_long_opened_by_a_webhook() {
    let daemon = Daemon::start(&config(
        r#"
[[rules]]
name = "trim"
on = "risk"
when = "var_pct > 5"
then = { action = "reduce", position_size = "50%" }

[[rules]]
name = "flip"
on = "trend"
when = "direction == \"down\""
then = { action = "reverse", position_size = "0.4" }
"#,
    ));
    let client = daemon.client();
    let opened = client
        .act(json!({"symbol": "ETHUSDT", "action": "open_long", "position_size": "1", "price": 2000}))
        .await;
    assert_eq!(opened["status"], "filled", "{opened}");

    // Risk too high: half the long is sold.
    let (status, answer) = signed_event(
        &client,
        json!({"event": "risk", "symbol": "ETHUSDT", "var_pct": 7, "price": 2000, "id": "risk-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let firings = fired(&daemon, 1).await;
    assert_eq!(firings[0]["rule"], "trim");
    assert_eq!(firings[0]["action"], "reduce");
    assert_eq!(firings[0]["trigger"], answer["offset"]);
    let trimmed = rule_signal(&client, &firings[0]).await;
    assert_eq!(trimmed["status"], "filled", "{trimmed}");
    assert_eq!(client.held("ETHUSDT").await.as_deref(), Some("0.5"));

    // The trend turns: the 0.5 long is closed and a 0.4 short opened in its place.
    let (status, answer) = signed_event(
        &client,
        json!({"event": "trend", "symbol": "ETHUSDT", "direction": "down", "price": 2000, "id": "trend-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let firings = fired(&daemon, 2).await;
    assert_eq!(firings[1]["rule"], "flip");
    assert_eq!(firings[1]["action"], "reverse");
    assert_eq!(firings[1]["trigger"], answer["offset"]);
    let flipped = rule_signal(&client, &firings[1]).await;
    assert_eq!(flipped["status"], "filled", "{flipped}");
    assert_eq!(client.held("ETHUSDT").await.as_deref(), Some("-0.4"));

    // The reverse is two orders: the whole long sold, then the short's own size.
    let id = |record: &Value| record["signal"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        fills(&client).await,
        vec![
            fill(&id(&opened), "ETHUSDT", "buy", "1"),
            fill(&id(&trimmed), "ETHUSDT", "sell", "0.5"),
            fill(&id(&flipped), "ETHUSDT", "sell", "0.5"),
            fill(&id(&flipped), "ETHUSDT", "sell", "0.4"),
        ]
    );
}

#[actix_web::test]
async fn pause_all_resume_all_and_flatten_rules_govern_the_whole_account() {
    let daemon = Daemon::start(&config(
        r#"
[[rules]]
name = "bad-news"
on = "news"
source = "signals"
when = "sentiment <= -0.7"
then = { action = "pause_all" }

[[rules]]
name = "all-clear"
on = "news"
source = "signals"
when = "sentiment >= 0.5"
then = { action = "resume_all" }

[[rules]]
name = "crash"
on = "crash"
source = "signals"
when = "drop_pct >= 10"
then = { action = "flatten" }
"#,
    ));
    let client = daemon.client();
    let trading_state =
        || async { client.get("/api/trading-state").await["trading_state"].clone() };
    for (symbol, price) in [("BTCUSDT", 50000), ("ETHUSDT", 3000)] {
        let record = client
            .act(json!({"symbol": symbol, "action": "open_long", "price": price}))
            .await;
        assert_eq!(record["status"], "filled", "{record}");
    }

    // The same bad news from a source the rules do not trust changes nothing; from the signed one, it pauses.
    let (status, untrusted) = client
        .tradingview(json!({"event": "news", "sentiment": -0.9, "id": "news-0"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{untrusted}");
    let (status, answer) = signed_event(
        &client,
        json!({"event": "news", "sentiment": -0.9, "id": "news-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let firings = fired(&daemon, 1).await;
    assert_eq!(firings[0]["rule"], "bad-news");
    assert_eq!(firings[0]["trigger"], answer["offset"], "{firings:?}");
    assert_eq!(
        firings[0]["outcome"],
        json!({"outcome": "trading_state", "state": "reducing"})
    );
    assert_eq!(trading_state().await, "reducing");
    let entry = client
        .act(json!({"symbol": "ETHUSDT", "action": "open_long", "price": 3000}))
        .await;
    assert_eq!(entry["status"], "denied", "no entry while paused: {entry}");
    assert_eq!(
        entry["outcome"]["reason"]["code"], "reducing_only",
        "{entry}"
    );
    assert_eq!(client.held("ETHUSDT").await.as_deref(), Some("1"));

    // Good news: trading resumes, and the same entry fills.
    let (status, answer) = signed_event(
        &client,
        json!({"event": "news", "sentiment": 0.8, "id": "news-2"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let firings = fired(&daemon, 2).await;
    assert_eq!(firings[1]["rule"], "all-clear");
    assert_eq!(
        firings[1]["outcome"],
        json!({"outcome": "trading_state", "state": "active"})
    );
    assert_eq!(trading_state().await, "active");
    let entry = client
        .act(json!({"symbol": "ETHUSDT", "action": "open_long", "price": 3000}))
        .await;
    assert_eq!(entry["status"], "filled", "entry after resume: {entry}");
    assert_eq!(client.held("ETHUSDT").await.as_deref(), Some("2"));

    // A crash: every position is closed, each by a close of its own, and no new entry is taken.
    let (status, answer) = signed_event(
        &client,
        json!({"event": "crash", "drop_pct": 12, "id": "crash-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let firings = fired(&daemon, 3).await;
    assert_eq!(firings[2]["rule"], "crash");
    assert_eq!(
        firings[2]["outcome"]["outcome"], "signals",
        "{}",
        firings[2]
    );
    let closes = firings[2]["outcome"]["signal_ids"].as_array().unwrap();
    assert_eq!(
        closes.len(),
        2,
        "one close per open position: {}",
        firings[2]
    );
    for close in closes {
        let record = client.done(close.as_str().unwrap()).await;
        assert_eq!(record["status"], "filled", "{record}");
    }
    assert_eq!(client.get("/api/positions").await["positions"], json!([]));
    assert_eq!(trading_state().await, "reducing");

    // Two entries and the one after the resume were bought (the paused one never reached the exchange); each
    // position was sold whole by its own close.
    let fills = fills(&client).await;
    let bought: Vec<(&str, &str)> = fills
        .iter()
        .filter(|(_, _, side, _)| side == "buy")
        .map(|(_, symbol, _, quantity)| (symbol.as_str(), quantity.as_str()))
        .collect();
    assert_eq!(
        bought,
        [("BTCUSDT", "0.01"), ("ETHUSDT", "1"), ("ETHUSDT", "1")]
    );
    let mut closed: Vec<(&str, &str, &str)> = fills
        .iter()
        .filter(|(id, ..)| closes.contains(&json!(id)))
        .map(|(_, symbol, side, quantity)| (symbol.as_str(), side.as_str(), quantity.as_str()))
        .collect();
    closed.sort();
    assert_eq!(
        closed,
        [("BTCUSDT", "sell", "0.01"), ("ETHUSDT", "sell", "2")]
    );
    assert_eq!(fills.len(), 5, "{fills:?}");
}
