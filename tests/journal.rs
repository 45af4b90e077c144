//! The journal over real HTTP and real SQLite files: what a restart keeps.

mod common;

use awc::http::StatusCode;
use common::{free_config, Daemon, ADMIN_TOKEN, PASSPHRASE};
use serde_json::{json, Value};

/// The harness's config: its `[api]` table names `TEST_ADMIN_TOKEN`.
fn admin_config() -> String {
    free_config()
}

#[actix_web::test]
async fn a_duplicate_delivery_after_a_restart_is_still_a_duplicate() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let body = json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.1",
                      "price":"40000","id":"alert-42"});
    let (status, answer) = c.tradingview(body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    c.done(answer["signal_id"].as_str().unwrap()).await;
    // A sender without ids: the body digest is remembered across the restart too.
    let tick = json!({"symbol":"ETHUSDT","price":"2000"});
    let (status, _) = c.tradingview(tick.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let daemon = daemon.restart();
    let c = daemon.client();
    let (status, again) = c.tradingview(body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again,
        json!({"status":"duplicate","signal_id":"tradingview:alert-42"})
    );
    let (status, again) = c.tradingview(tick.clone()).await;
    assert_eq!(
        (status, again["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(
        c.position("BTCUSDT").await.unwrap()["quantity"],
        "0.1",
        "placed once"
    );
    assert_eq!(
        c.get("/api/orders").await["orders"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[actix_web::test]
async fn positions_stops_pauses_and_the_kill_switch_survive_a_restart() {
    let daemon = Daemon::start(&admin_config());
    let c = daemon.client();
    c.act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.2","price":"40000","stop_loss":"39000"}))
        .await;
    c.act(json!({"symbol":"ETHUSDT","action":"open_short","position_size":"1","price":"2000"}))
        .await;
    c.act(json!({"symbol":"ETHUSDT","action":"pause"})).await;

    let daemon = daemon.restart();
    let c = daemon.client();
    let btc = c.position("BTCUSDT").await.expect("BTC position restored");
    assert_eq!(
        (btc["quantity"].as_str(), btc["entry_price"].as_str()),
        (Some("0.2"), Some("40000"))
    );
    let eth = c.position("ETHUSDT").await.expect("ETH position restored");
    assert_eq!(eth["side"], "short");
    let record = c
        .act(json!({"symbol":"ETHUSDT","action":"open_short","position_size":"1"}))
        .await;
    assert_eq!(
        record["outcome"]["reason"]["code"], "paused",
        "pause survived"
    );
    // The stop rested before the restart and still fires.
    c.act(json!({"symbol":"BTCUSDT","price":"38900"})).await;
    assert!(
        c.position("BTCUSDT").await.is_none(),
        "stop fired after the restart"
    );
    assert_eq!(
        c.get("/api/orders").await["orders"][0]["fill"]["reason"],
        "stop_loss"
    );

    // The kill switch: refused without the admin token, durable with it.
    let (status, _) = post_state(&c, "halted", "wrong-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = post_state(&c, "halted", ADMIN_TOKEN).await;
    assert_eq!(
        (status, answer["trading_state"].as_str()),
        (StatusCode::OK, Some("halted"))
    );

    let daemon = daemon.restart();
    let c = daemon.client();
    assert_eq!(c.get("/api/trading-state").await["trading_state"], "halted");
    let record = c
        .act(json!({"symbol":"ETHUSDT","action":"close","price":"1900"}))
        .await;
    assert_eq!(
        record["outcome"]["reason"]["code"], "halted",
        "the kill switch stayed on"
    );
    let account = c.get("/api/account").await;
    assert_eq!(
        account["balance"], "9780",
        "(38900 - 40000) * 0.2 = -220, no fees"
    );
}

async fn post_state(c: &common::Client, state: &str, token: &str) -> (StatusCode, Value) {
    let auth = format!("Bearer {token}");
    let body = json!({ "state": state }).to_string();
    let mut res = awc::Client::default()
        .post(format!("{}/api/trading-state", c.api_base))
        .insert_header(("content-type", "application/json"))
        .insert_header(("authorization", auth.as_str()))
        .send_body(body)
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn signals_and_orders_page_back_through_the_journal() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    for i in 0..5 {
        c.act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.01","price": format!("{}", 40000 + i)}))
            .await;
    }
    let first = c.get("/api/signals?limit=2").await;
    let page = first["signals"].as_array().unwrap();
    assert_eq!(page.len(), 2);
    let before = first["next_before"].as_i64().unwrap();
    let second = c
        .get(&format!("/api/signals?limit=10&before={before}"))
        .await;
    assert_eq!(second["signals"].as_array().unwrap().len(), 3);
    let seqs: Vec<i64> = page
        .iter()
        .chain(second["signals"].as_array().unwrap())
        .map(|s| s["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first, no overlap: {seqs:?}"
    );
    let orders = c.get("/api/orders?limit=3").await;
    assert_eq!(orders["orders"].as_array().unwrap().len(), 3);
    assert!(orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["kind"] == "filled"));

    // The payload is stored without its passphrase; the file can be read with any SQLite client.
    let conn = rusqlite::Connection::open(daemon.journal_path()).unwrap();
    let leaked: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM signals WHERE payload LIKE ?1 OR signal LIKE ?1",
            [format!("%{PASSPHRASE}%")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leaked, 0);
    let events: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(
        events >= 5 * 6,
        "accept, decision, risk check, order sent, fill and outcome per signal: {events}"
    );
}

/// A crash between the two orders of a reverse: the close filled, the open did not. The restart must place only
/// the open (the close is known to the exchange by its client order id), not let risk refuse the close as new.
#[actix_web::test]
async fn a_signal_interrupted_between_its_orders_is_finished_after_a_restart() {
    use sentinel::journal::Journal;
    use sentinel_actors::event::{Delivery, Event, Verdict};
    use sentinel_actors::log::{EventLog, SystemClock};
    use sentinel_actors::order::{Fill, FillReason, OrderRequest, Protection};
    use sentinel_actors::signal::{Action, EntryParams, Intent, Signal};
    use sentinel_actors::types::{
        ClientOrderId, Leverage, Price, Quantity, Side, SignalId, Symbol, Timestamp,
    };
    use std::str::FromStr;
    use std::sync::Arc;

    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    // 5x: at 1x, 0.3 x 40000 = 12000 of margin is more than the 10000 wallet.
    c.act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.3","leverage":5,"price":"40000"}))
        .await;
    let path = daemon.journal_path();
    let dir = daemon.stop_keeping_journal(); // a clean stop: it leaves a snapshot
    let conn = rusqlite::Connection::open(&path).unwrap();
    let snapshot_upto: i64 = conn
        .query_row("SELECT upto_event FROM snapshots", [], |r| r.get(0))
        .unwrap();
    let last_fill: i64 = conn
        .query_row(
            "SELECT MAX(seq) FROM events WHERE kind = 'filled'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        snapshot_upto >= last_fill,
        "the clean stop checkpointed every fill: {snapshot_upto} < {last_fill}"
    );
    let last_event: i64 = conn
        .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        snapshot_upto, last_event,
        "a clean stop checkpoints the whole log: the next start folds nothing"
    );
    drop(conn);

    // What the journal holds after a crash mid-reverse: the signal, its decision, the close sent and filled, no
    // outcome. Written through the journal itself, as the daemon wrote it before dying.
    let id = SignalId::new("tradingview:rev-1").unwrap();
    let btc = Symbol::new("BTCUSDT").unwrap();
    let price = Price::from_str("41000").unwrap();
    let signal = Signal {
        id: id.clone(),
        source: "tradingview".into(),
        symbol: btc.clone(),
        received_at: Timestamp::now(),
        sent_at: None,
        price: Some(price),
        intent: Intent::Reverse {
            order: EntryParams::default(),
        },
        comment: None,
    };
    let leg = |n: u8, reduce_only: bool| OrderRequest {
        client_order_id: ClientOrderId::derive(&id, n),
        signal_id: id.clone(),
        symbol: btc.clone(),
        action: Action::Reverse,
        side: Side::Sell,
        quantity: Quantity::from_str("0.3").unwrap(),
        reduce_only,
        leverage: Leverage::new(5).unwrap(),
        reference_price: price,
        protection: Protection::default(),
        limit: None,
    };
    let (close, open) = (leg(0, true), leg(1, false));
    let fill = Fill {
        client_order_id: close.client_order_id.clone(),
        symbol: btc.clone(),
        side: Side::Sell,
        quantity: close.quantity,
        price,
        fee: rust_decimal::Decimal::ZERO,
        reason: FillReason::Signal,
        at: Timestamp::now(),
    };
    let (store, _) = sentinel::journal::open(Some(&path)).unwrap();
    let journal = Journal::start(store, Arc::new(SystemClock), 16);
    let crashed = vec![
        Event::SignalAccepted {
            signal,
            delivery: Delivery {
                keys: "id:tradingview:rev-1".into(),
                payload: "{}".into(),
            },
        },
        Event::Decided {
            signal_id: id.clone(),
            symbol: btc.clone(),
            orders: vec![close.clone(), open.clone()],
        },
        Event::RiskChecked {
            order: close.clone(),
            verdict: Verdict::Approved,
        },
        Event::OrderSent {
            order: close.clone(),
        },
        Event::Filled {
            order: Some(close.clone()),
            fill,
            cause: None,
        },
    ];
    let first = journal.append(crashed).durable().await.unwrap();
    assert_eq!(first.0 as i64, last_event + 1);
    drop(journal);

    let daemon = Daemon::start_at(dir, &free_config());
    let c = daemon.client();
    let record = c.done("tradingview:rev-1").await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(record["outcome"]["orders"].as_array().unwrap().len(), 2);
    let btc = c.position("BTCUSDT").await.expect("the open was placed");
    assert_eq!(
        (btc["side"].as_str(), btc["quantity"].as_str()),
        (Some("short"), Some("0.3"))
    );
    let orders = c.get("/api/orders").await;
    let fills: Vec<&Value> = orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "filled")
        .collect();
    assert_eq!(
        fills.len(),
        3,
        "the first open, the recorded close, the new open: {orders}"
    );
}

/// A sender that reuses an id after the idempotency index forgot it: the journal still knows the signal, so it is
/// a duplicate, and the failed insert does not take other writes of the same commit down with it.
#[actix_web::test]
async fn an_id_the_index_forgot_is_still_a_duplicate_in_the_journal() {
    let config = free_config().replacen(
        "workers = 1\n",
        "workers = 1\ndelivery_id_retention_secs = 60\n",
        1,
    );
    let daemon = Daemon::start(&config);
    let c = daemon.client();
    c.act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.1","price":"40000","id":"old-7"})).await;
    let dir = daemon.stop_keeping_journal();
    // Two hours later, as far as the index is concerned.
    let conn = rusqlite::Connection::open(dir.path().join("sentinel.db")).unwrap();
    conn.execute("UPDATE signals SET received_at = received_at - 7200000", [])
        .unwrap();
    drop(conn);

    let daemon = Daemon::start_at(dir, &config);
    let c = daemon.client();
    let body = json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.1",
                      "price":"40000","id":"old-7"});
    let (status, answer) = c.tradingview(body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"status":"duplicate","signal_id":"tradingview:old-7"})
    );
    let record = c
        .act(json!({"symbol":"ETHUSDT","action":"open_long","position_size":"1","price":"2000"}))
        .await;
    assert_eq!(
        record["status"], "filled",
        "the journal still takes new signals"
    );
    assert_eq!(
        c.position("BTCUSDT").await.unwrap()["quantity"],
        "0.1",
        "placed once"
    );
}
