//! Amounts at and beyond their bounds, through the real daemon: what is beyond them is refused (422) or denied with a
//! typed reason, and what is within them, however extreme, never breaks the account or the symbol's strategy.

mod common;

use awc::http::StatusCode;
use common::Daemon;
use serde_json::{json, Value};

/// The lowest and highest prices and the largest quantity taken (see docs/security.md, "Bounds on amounts").
const MIN_PRICE: &str = "0.00000001";
const MAX_PRICE: &str = "10000000000";
const MAX_QUANTITY: &str = "1000000000000";

/// The test config plus SHIBUSDT with the default notional limit (100000), which a trillion units at the lowest
/// price are well within, and WHALEUSDT with a limit that allows the largest position at the highest price.
fn config() -> String {
    common::config(
        "fee_rate = \"0\"\nslippage = \"0\"",
        r#"
[[symbols]]
symbol = "SHIBUSDT"
default_size = "1"
max_leverage = 125
quantity_step = "1"

[[symbols]]
symbol = "WHALEUSDT"
default_size = "1"
max_leverage = 125
max_notional = "100000000000000000000000"
quantity_step = "1"
"#,
    )
}

async fn refused_field(c: &common::Client, body: Value, field: &str) {
    let (status, answer) = c.tradingview(body.clone()).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{body} -> {answer}"
    );
    assert_eq!(
        answer["error"]["code"], "invalid_field",
        "{body} -> {answer}"
    );
    assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
}

#[actix_web::test]
async fn the_largest_position_at_a_tiny_price_survives_huge_ticks_and_closes() {
    let daemon = Daemon::start(&config());
    let c = daemon.client();
    let entry = json!({"symbol":"SHIBUSDT","action":"open_long","position_size":MAX_QUANTITY,"price":MIN_PRICE});
    let record = c.act(entry.clone()).await;
    assert_eq!(record["status"], "filled", "{record}");
    // More of the same entry: each would take the position past the bound, so each is denied, typed.
    for _ in 0..3 {
        let record = c.act(entry.clone()).await;
        assert_eq!(record["status"], "denied", "{record}");
        assert_eq!(record["outcome"]["reason"]["code"], "position_above_limit");
        assert_eq!(record["outcome"]["reason"]["quantity"], "2000000000000");
        assert_eq!(record["outcome"]["reason"]["limit"], MAX_QUANTITY);
    }
    // Below the lowest price: refused at the door, naming the field.
    refused_field(
        &c,
        json!({"symbol":"SHIBUSDT","action":"open_long","position_size":MAX_QUANTITY,"price":"0.0000000000001"}),
        "price",
    )
    .await;

    for _ in 0..3 {
        let record = c.act(json!({"symbol":"SHIBUSDT","price":MAX_PRICE})).await;
        assert_eq!(record["status"], "ignored", "{record}");
        let account = c.get("/api/account").await;
        // (1e10 - 1e-8) x 1e12, exactly.
        assert_eq!(account["unrealized_pnl"], "9999999999999999990000");
        assert_eq!(account["equity"], "10000000000000000000000");
    }
    let shib = c.position("SHIBUSDT").await.expect("SHIB position");
    assert_eq!(shib["quantity"], MAX_QUANTITY);

    // A later webhook for the symbol still finishes: the close of the largest position is one order, and it fills.
    let record = c.act(json!({"symbol":"SHIBUSDT","action":"close"})).await;
    assert_eq!(record["status"], "filled", "{record}");
    let orders = record["outcome"]["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1, "{record}");
    assert_eq!(orders[0]["fill"]["quantity"], MAX_QUANTITY);
    assert!(c.position("SHIBUSDT").await.is_none(), "flat");
    let account = c.get("/api/account").await;
    assert_eq!(account["balance"], "10000000000000000000000");
    assert_eq!(account["unrealized_pnl"], "0");
}

#[actix_web::test]
async fn the_largest_short_at_the_highest_price_closes_after_any_tick() {
    let daemon = Daemon::start(&config());
    let c = daemon.client();
    // Its initial margin, 1e12 x 1e10 / 125 = 8e19, is far more than the starting 10000: the account first makes
    // (1e10 - 1e-8) x 1e12 on SHIB (1e12 at 1e-8 at 1x takes all of the 10000), leaving a wallet of 1e22.
    for step in [
        json!({"symbol":"SHIBUSDT","action":"open_long","position_size":MAX_QUANTITY,"price":MIN_PRICE}),
        json!({"symbol":"SHIBUSDT","action":"close","price":MAX_PRICE}),
    ] {
        assert_eq!(c.act(step).await["status"], "filled");
    }
    assert_eq!(
        c.get("/api/account").await["balance"],
        "10000000000000000000000"
    );
    let record = c
        .act(json!({"symbol":"WHALEUSDT","action":"open_short","position_size":MAX_QUANTITY,"price":MAX_PRICE,"leverage":125}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    for price in [MIN_PRICE, MAX_PRICE, MIN_PRICE] {
        c.act(json!({"symbol":"WHALEUSDT","price":price})).await;
        let account = c.get("/api/account").await;
        assert!(account["equity"].is_string(), "{account}");
    }
    // Short from 1e10, marked at 1e-8: (1e-8 - 1e10) x -1e12.
    assert_eq!(
        c.get("/api/account").await["unrealized_pnl"],
        "9999999999999999990000"
    );
    let record = c
        .act(json!({"symbol":"WHALEUSDT","action":"close_short"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert!(c.position("WHALEUSDT").await.is_none(), "flat");
    // 1e22 + (1e10 - 1e-8) x 1e12
    assert_eq!(
        c.get("/api/account").await["balance"],
        "19999999999999999990000"
    );
}

#[actix_web::test]
async fn oversized_entries_are_denied_or_refused_never_failed() {
    let daemon = Daemon::start(&config());
    let c = daemon.client();
    // Above the largest quote size: refused at the door.
    refused_field(
        &c,
        json!({"symbol":"SHIBUSDT","action":"open_long","position_size":"1e20 USDT","price":"1"}),
        "position_size",
    )
    .await;
    // The largest quote size at a price of 1 is 1e15 units, more than one order may hold: a typed denial.
    let record = c
        .act(json!({"symbol":"SHIBUSDT","action":"open_long","position_size":"1000000000000000 USDT","price":"1"}))
        .await;
    assert_eq!(record["status"], "denied", "{record}");
    assert_eq!(record["outcome"]["reason"]["code"], "size_above_limit");
    assert_eq!(record["outcome"]["reason"]["limit"], MAX_QUANTITY);

    // "100%" with leverage after the lowest tick: 10000 x 20 / 1e-8 = 2e13 units, denied the same way.
    let tick = c.act(json!({"symbol":"BTCUSDT","price":MIN_PRICE})).await;
    assert_eq!(tick["status"], "ignored", "{tick}");
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"100%","leverage":20}))
        .await;
    assert_eq!(record["status"], "denied", "{record}");
    assert_eq!(record["outcome"]["reason"]["code"], "size_above_limit");
    assert_eq!(
        record["outcome"]["reason"]["size"],
        json!({"unit":"equity_percent","value":"100"})
    );

    // The symbol's strategy is still there and sound: the next entry fills.
    let record = c
        .act(
            json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.01","price":"45000"}),
        )
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(c.get("/api/account").await["balance"], "10000");
}

#[actix_web::test]
async fn numbers_are_read_exactly_or_refused_naming_the_field() {
    let daemon = Daemon::start(&config());
    let c = daemon.client();
    let open = |extra: Value| {
        let mut body = json!({"symbol":"BTCUSDT","action":"open_long","price":"45000"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        // rust_decimal reads "4_5000" as 45000.
        (json!({"price":"4_5000"}), "price"),
        (json!({"price":"1e-30"}), "price"),
        (json!({"price":"1e40"}), "price"),
        (json!({"price":"45000.0000000000001"}), "price"),
        (json!({"price":"4".repeat(80)}), "price"),
        (
            json!({"price":format!("45000.{}1", "0".repeat(40))}),
            "price",
        ),
        (json!({"position_size":"1_000"}), "position_size"),
        (json!({"position_size":"1_0%"}), "position_size"),
        (json!({"position_size":"5_00 USDT"}), "position_size"),
        (json!({"stop_loss":"4_4000"}), "stop_loss"),
        (json!({"take_profit":"1_0%"}), "take_profit"),
        (json!({"leverage":"1_0"}), "leverage"),
    ];
    for (extra, field) in cases {
        refused_field(&c, open(extra), field).await;
    }
    let (status, answer) = c
        .tradingview(json!({"symbol":"BTCUSDT","action":"open_long","price":"4_5000"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("price") && message.contains("4_5000"),
        "{message}"
    );
    // A JSON number in scientific notation is read exactly as written, like its text.
    let body = format!(
        "{{\"passphrase\":\"{}\",\"symbol\":\"BTCUSDT\",\"price\":1e-30}}",
        common::PASSPHRASE
    );
    let (status, answer) = c
        .post(
            "tradingview",
            &body,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "price");
    let entry: Value = serde_json::from_str(
        r#"{"symbol":"BTCUSDT","action":"open_long","position_size":"0.01","price":4.5e4}"#,
    )
    .unwrap();
    let record = c.act(entry).await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(c.position("BTCUSDT").await.unwrap()["entry_price"], "45000");
    let orders = c.get("/api/orders").await;
    assert_eq!(orders["orders"].as_array().unwrap().len(), 1, "{orders}");
}
