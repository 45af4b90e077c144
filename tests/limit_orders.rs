//! Limit entries on the paper venue: they rest until the market reaches their price and fill there, an IOC that the
//! market does not reach fills nothing, a GTD entry expires, halting trading takes them off, and a restart keeps
//! them. Through the daemon, at no fees and no slippage.

mod common;

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{free_config, Client, Daemon, ADMIN_TOKEN};
use serde_json::{json, Value};

async fn resting(c: &Client) -> Vec<Value> {
    c.get("/api/open-orders").await["entries"]
        .as_array()
        .unwrap()
        .clone()
}

async fn status_of(c: &Client, signal_id: &str) -> Value {
    let signals = c.get("/api/signals?limit=1000").await;
    signals["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["signal"]["id"] == signal_id)
        .map(|s| s["status"].clone())
        .unwrap_or(Value::Null)
}

/// Waits until the signal's status is `status`.
async fn until_status(c: &Client, signal_id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(c, signal_id).await != status {
        assert!(
            Instant::now() < deadline,
            "{signal_id} never became {status}: {}",
            status_of(c, signal_id).await
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tick(price: f64) -> Value {
    json!({"symbol": "BTCUSDT", "price": price})
}

#[actix_web::test]
async fn a_limit_entry_rests_until_the_market_reaches_it_and_fills_at_its_price() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    c.act(tick(100.0)).await;
    let record = c
        .act(
            json!({"symbol": "BTCUSDT", "action": "open_long", "order_type": "limit",
                    "limit_price": 95, "position_size": "2", "leverage": 5,
                    "stop_loss": "2%", "take_profit": 110}),
        )
        .await;
    assert_eq!(record["status"], "resting", "{record}");
    let id = record["signal"]["id"].as_str().unwrap().to_string();
    let entries = resting(&c).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["limit_price"], "95");
    assert_eq!(entries[0]["time_in_force"], "GTC");
    assert!(c.position("BTCUSDT").await.is_none());

    // 95.01 does not reach a buy at 95; 94 passes through it, and the entry fills at its own price.
    c.act(tick(95.01)).await;
    assert!(c.position("BTCUSDT").await.is_none());
    c.act(tick(94.0)).await;
    let position = c.position("BTCUSDT").await.expect("filled at 94");
    assert_eq!(position["quantity"], "2");
    assert_eq!(position["entry_price"], "95");
    assert_eq!(position["leverage"], 5);
    assert!(resting(&c).await.is_empty());
    until_status(&c, &id, "filled").await;

    // Its levels armed at the fill: the 2 % stop from the entry of 95 is 93.1.
    let exits = c.get("/api/open-orders").await["exits"].clone();
    assert_eq!(exits[0]["stop_loss"], "93.1", "{exits}");
    assert_eq!(exits[0]["take_profit"], "110", "{exits}");
    c.act(tick(93.1)).await;
    assert!(c.position("BTCUSDT").await.is_none(), "stopped at 93.1");
    // (93.1 - 95) x 2 = -3.8.
    assert_eq!(c.get("/api/account").await["balance"], "9996.2");
}

#[actix_web::test]
async fn a_limit_the_market_already_passed_fills_now_and_never_worse_than_its_price() {
    let daemon = Daemon::start(&free_config().replace("slippage = \"0\"", "slippage = \"0.01\""));
    let c = daemon.client();
    c.act(tick(100.0)).await;
    // A buy limit at 100.5 with the market at 100: 1 % slippage would give 101, the limit caps it at 100.5.
    let record = c
        .act(
            json!({"symbol": "BTCUSDT", "action": "open_long", "limit_price": 100.5,
                    "position_size": "1"}),
        )
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(c.position("BTCUSDT").await.unwrap()["entry_price"], "100.5");

    // An IOC that the market does not reach fills nothing and rests nothing.
    let record = c
        .act(
            json!({"symbol": "ETHUSDT", "action": "open_long", "price": 100, "limit_price": 90,
                    "time_in_force": "IOC", "position_size": "1"}),
        )
        .await;
    assert_eq!(record["status"], "rejected", "{record}");
    let reason = &record["outcome"]["orders"][0]["error"]["reason"];
    assert_eq!(reason["reason"], "would_not_fill", "{record}");
    assert!(c.position("ETHUSDT").await.is_none());
    assert!(resting(&c).await.is_empty());
}

#[actix_web::test]
async fn gtd_entries_expire_and_halting_takes_resting_entries_off() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    c.act(tick(100.0)).await;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 1_500;
    let gtd = c
        .act(
            json!({"symbol": "BTCUSDT", "action": "open_long", "limit_price": 90,
                    "expires_at": expires, "position_size": "1"}),
        )
        .await;
    assert_eq!(gtd["status"], "resting", "{gtd}");
    let gtc = c
        .act(
            json!({"symbol": "BTCUSDT", "action": "open_long", "limit_price": 95,
                    "position_size": "1"}),
        )
        .await;
    assert_eq!(gtc["status"], "resting", "{gtc}");
    assert_eq!(resting(&c).await.len(), 2);

    // With no tick at all, the GTD entry is taken off at its expiry.
    until_status(&c, gtd["signal"]["id"].as_str().unwrap(), "cancelled").await;
    let left = resting(&c).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["limit_price"], "95");

    // Halting: no entry may fill, so the GTC entry goes too, and a price through it fills nothing.
    let answer = awc::Client::default()
        .post(format!("{}/api/trading-state", c.api_base))
        .insert_header(("Authorization", format!("Bearer {ADMIN_TOKEN}")))
        .send_json(&json!({"state": "halted"}))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    until_status(&c, gtc["signal"]["id"].as_str().unwrap(), "cancelled").await;
    assert!(resting(&c).await.is_empty());
    c.act(tick(80.0)).await;
    assert!(c.position("BTCUSDT").await.is_none());
    // The cancels are in the journal, with their reasons.
    let conn = rusqlite::Connection::open(daemon.journal_path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT json_extract(data, '$.reason') FROM events WHERE kind = 'cancelled' ORDER BY seq")
        .unwrap();
    let reasons: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(reasons, ["expired", "trading_stopped"], "{reasons:?}");
}

#[actix_web::test]
async fn a_resting_entry_survives_a_restart_and_fills_after_it() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    c.act(tick(100.0)).await;
    let record = c
        .act(
            json!({"symbol": "BTCUSDT", "action": "open_long", "limit_price": 95,
                    "position_size": "1", "take_profit": 105}),
        )
        .await;
    assert_eq!(record["status"], "resting", "{record}");

    let daemon = daemon.restart();
    let c = daemon.client();
    assert_eq!(resting(&c).await.len(), 1, "restored from the journal");
    c.act(tick(95.0)).await;
    assert_eq!(c.position("BTCUSDT").await.unwrap()["entry_price"], "95");
    c.act(tick(105.0)).await;
    assert!(c.position("BTCUSDT").await.is_none(), "target at 105");
    assert_eq!(c.get("/api/account").await["balance"], "10010");
}

#[actix_web::test]
async fn a_resting_entry_holds_its_margin() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    c.act(tick(100.0)).await;
    // 60 at 95 at 1x holds 5,700 of the 10,000 wallet while it rests.
    let record = c
        .act(
            json!({"symbol": "BTCUSDT", "action": "open_long", "limit_price": 95,
                    "position_size": "60", "leverage": 1}),
        )
        .await;
    assert_eq!(record["status"], "resting", "{record}");
    // 50 more at 100 at 1x needs 5,000: more than the 4,300 left.
    let record = c
        .act(
            json!({"symbol": "ETHUSDT", "action": "open_long", "price": 100,
                    "position_size": "50", "leverage": 1}),
        )
        .await;
    assert_eq!(record["status"], "denied", "{record}");
    assert_eq!(
        record["outcome"]["reason"]["code"], "insufficient_margin",
        "{record}"
    );
    assert_eq!(record["outcome"]["reason"]["available"], "4300", "{record}");
}
