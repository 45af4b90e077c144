//! What an operator reads after the fact: a stop's fill names the signal that opened the position and the tick that
//! fired it, the tick says it fired something, and the last mark survives a restart.

mod common;

use common::{free_config, Daemon};
use serde_json::{json, Value};

/// The `filled` events of the journal with this fill reason, as stored.
fn fills(daemon: &Daemon, reason: &str) -> Vec<(Option<String>, Value)> {
    let conn = rusqlite::Connection::open(daemon.journal_path()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT signal_id, data FROM events WHERE kind = 'filled'
               AND json_extract(data, '$.fill.reason') = ?1 ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([reason], |row| {
        let data: String = row.get(1)?;
        Ok((row.get(0)?, serde_json::from_str(&data).unwrap()))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[actix_web::test]
async fn a_stop_fill_names_the_opening_signal_and_the_tick_that_fired_it() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let open = c
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "price": 100,
                    "position_size": "1", "stop_loss": 95}))
        .await;
    assert_eq!(open["status"], "filled", "{open}");
    let opened_by = open["signal"]["id"].as_str().unwrap().to_string();
    // A tick that crosses nothing is a price update; the one that crosses the stop says what it fired.
    let quiet = c.act(json!({"symbol": "BTCUSDT", "price": 97})).await;
    assert_eq!(quiet["status"], "ignored", "{quiet}");
    let tick = c.act(json!({"symbol": "BTCUSDT", "price": 94})).await;
    assert_eq!(tick["status"], "triggered", "{tick}");
    let fired = &tick["outcome"]["fills"];
    assert_eq!(fired[0]["reason"], "stop_loss", "{tick}");
    assert_eq!(fired[0]["price"], "94", "{tick}");
    let tick_id = tick["signal"]["id"].as_str().unwrap();

    // The journal's fill belongs to the opening signal (its story shows the exit) and names both.
    let stops = fills(&daemon, "stop_loss");
    assert_eq!(stops.len(), 1, "{stops:?}");
    let (signal_id, event) = &stops[0];
    assert_eq!(signal_id.as_deref(), Some(opened_by.as_str()));
    assert_eq!(event["cause"]["opened_by"], opened_by.as_str(), "{event}");
    assert_eq!(event["cause"]["tick"], tick_id, "{event}");
    assert!(event["order"].is_null(), "{event}");
}

#[actix_web::test]
async fn the_last_mark_survives_a_restart() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    c.act(json!({"symbol": "BTCUSDT", "action": "open_long", "price": 100, "position_size": "1"}))
        .await;
    c.act(json!({"symbol": "BTCUSDT", "price": 110})).await;
    let before = c.position("BTCUSDT").await.unwrap();
    assert_eq!(before["mark_price"], "110", "{before}");

    let daemon = daemon.restart();
    let c = daemon.client();
    let after = c.position("BTCUSDT").await.unwrap();
    assert_eq!(after["mark_price"], "110", "{after}");
    assert_eq!(after["unrealized_pnl"], "10", "{after}");
    assert_eq!(c.get("/api/account").await["equity"], "10010");
}
