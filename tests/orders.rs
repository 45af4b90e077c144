//! Orders mean what they say: wrong-side levels and unsupported fields are refused naming the field, partial
//! closes and reduce-only orders take what was asked, and levels on an add follow one rule. Through the daemon, with
//! the paper venue at no fees and no slippage.

mod common;

use awc::http::StatusCode;
use common::{config, free_config, Daemon};
use serde_json::{json, Value};

/// The body is refused 422 naming `field`.
async fn refused(c: &common::Client, body: Value, field: &str) {
    let (status, answer) = c.tradingview(body.clone()).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{body} -> {answer}"
    );
    assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
}

async fn orders(c: &common::Client) -> Vec<Value> {
    c.get("/api/orders?limit=1000").await["orders"]
        .as_array()
        .unwrap()
        .clone()
}

async fn balance(c: &common::Client) -> Value {
    c.get("/api/account").await["balance"].clone()
}

#[actix_web::test]
async fn wrong_side_unsupported_and_invalid_fields_are_refused_and_place_nothing() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let eth = |extra: Value| {
        let mut body = json!({"symbol": "ETHUSDT"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        // The issue's short at 2800 with both levels on the wrong side.
        (
            json!({"action": "open_short", "price": 2800, "stop_loss": 2700}),
            "stop_loss",
        ),
        (
            json!({"action": "open_short", "price": 2800, "take_profit": 2900}),
            "take_profit",
        ),
        (
            json!({"action": "open_short", "price": 2800, "stop_loss": 2800}),
            "stop_loss",
        ),
        (
            json!({"action": "open_long", "price": 2800, "stop_loss": "2800"}),
            "stop_loss",
        ),
        (
            json!({"action": "buy", "price": 2800, "take_profit": "2799.99"}),
            "take_profit",
        ),
        // Percent stops: negative, zero and 100 % or more are no stops.
        (
            json!({"action": "open_long", "price": 2800, "stop_loss": "-1%"}),
            "stop_loss",
        ),
        (
            json!({"action": "open_long", "price": 2800, "stop_loss": "0%"}),
            "stop_loss",
        ),
        (
            json!({"action": "open_long", "price": 2800, "stop_loss": "100%"}),
            "stop_loss",
        ),
        (
            json!({"action": "open_long", "price": 2800, "stop_loss": "150%"}),
            "stop_loss",
        ),
        // Fields that would change the order's meaning.
        (
            json!({"action": "open_long", "price": 100, "order_type": "stop_market"}),
            "order_type",
        ),
        (
            json!({"action": "open_long", "price": 100, "order_type": "limit"}),
            "limit_price",
        ),
        (
            json!({"action": "open_long", "price": 100, "order_type": "market", "limit_price": 90}),
            "limit_price",
        ),
        (
            json!({"action": "open_long", "price": 100, "time_in_force": "GTC"}),
            "time_in_force",
        ),
        (
            json!({"action": "open_long", "price": 100, "limit_price": 90, "time_in_force": "day"}),
            "time_in_force",
        ),
        (
            json!({"action": "open_long", "price": 100, "limit_price": 90, "time_in_force": "GTD"}),
            "expires_at",
        ),
        (
            json!({"action": "open_long", "price": 100, "limit_price": 90, "expires_at": 1_600_000_000}),
            "expires_at",
        ),
        (
            json!({"action": "open_long", "price": 100, "limit_price": 90, "time_in_force": "IOC",
                   "expires_at": 4_000_000_000u64}),
            "time_in_force",
        ),
        (
            json!({"action": "open_long", "price": 100, "limit_price": 90, "post_only": true}),
            "post_only",
        ),
        // Only entries rest: a close, a reduce-only order or a reverse is a market order.
        (
            json!({"action": "close_long", "price": 100, "order_type": "limit", "limit_price": 90}),
            "order_type",
        ),
        (
            json!({"action": "buy", "price": 100, "reduce_only": true, "limit_price": 90}),
            "limit_price",
        ),
        (
            json!({"action": "reverse", "price": 100, "limit_price": 90}),
            "order_type",
        ),
        // A limit entry's levels are checked against its limit price: 95 is below the market, above the limit.
        (
            json!({"action": "open_long", "price": 100, "limit_price": 90, "stop_loss": 95}),
            "stop_loss",
        ),
        // A trailing stop: a percent from 0.1 to 10, in place of a fixed stop, on an entry only.
        (
            json!({"action": "open_long", "price": 100, "trailing_stop": "20%"}),
            "trailing_stop",
        ),
        (
            json!({"action": "open_long", "price": 100, "trailing_stop": "0.05%"}),
            "trailing_stop",
        ),
        (
            json!({"action": "open_long", "price": 100, "trailing_stop": "2"}),
            "trailing_stop",
        ),
        (
            json!({"action": "open_long", "price": 100, "trailing_stop": "2%", "stop_loss": 90}),
            "trailing_stop",
        ),
        (
            json!({"signal": "BUY", "price": 100, "trailing_stop": "11%"}),
            "trailing_stop",
        ),
        (
            json!({"action": "open_long", "price": 100, "trailing_offset": "1"}),
            "trailing_stop",
        ),
        (
            json!({"action": "open_long", "price": 100, "trailing_stop": "1%", "callback_rate": 1}),
            "callback_rate",
        ),
        (
            json!({"action": "close_long", "price": 100, "trailing_stop": "1%"}),
            "trailing_stop",
        ),
        (
            json!({"action": "update_stops", "price": 100, "trailing_stop": "1%"}),
            "trailing_stop",
        ),
        (
            json!({"action": "open_long", "price": 100, "qty": "2"}),
            "qty",
        ),
        (json!({"signal": "BUY", "price": 100, "sl": "95"}), "sl"),
        // Sentinel's own fields spelled another way would be ignored: a limit entry filled at market, a reduce-only
        // close opening a position. They are refused, naming the spelling Sentinel reads.
        (
            json!({"action": "open_long", "price": 100, "orderType": "limit", "limit_price": 90}),
            "order_type",
        ),
        (
            json!({"action": "open_long", "price": 100, "limitPrice": 90}),
            "limit_price",
        ),
        (
            json!({"action": "buy", "price": 100, "reduceOnly": true}),
            "reduce_only",
        ),
        (
            json!({"action": "open_long", "price": 100, "Stop-Loss": "2%"}),
            "stop_loss",
        ),
        (
            json!({"action": "open_long", "price": 100, "type": "LIMIT", "price_limit": 90}),
            "order_type",
        ),
        (
            json!({"action": "open_long", "price": 100, "positionSide": "SHORT"}),
            "position_side",
        ),
        (
            json!({"action": "open_long", "price": 100, "marginType": "CROSSED"}),
            "margin_type",
        ),
        (
            json!({"action": "reverse", "price": 100, "reduce_only": true}),
            "reduce_only",
        ),
        (
            json!({"market_position": "long", "market_position_size": "1", "price": 100, "reduce_only": true}),
            "reduce_only",
        ),
        (
            json!({"action": "open_long", "price": 100, "reduce_only": "maybe"}),
            "reduce_only",
        ),
        (
            json!({"action": "buy", "price": 100, "reduce_only": true, "stop_loss": "95"}),
            "stop_loss",
        ),
        (
            json!({"action": "close_long", "price": 100, "take_profit": "120"}),
            "take_profit",
        ),
        (
            json!({"action": "close_long", "price": 100, "position_size": "500 USDT"}),
            "position_size",
        ),
        (
            json!({"action": "close", "price": 100, "position_size": "101%"}),
            "position_size",
        ),
        (
            json!({"signal": "SELL", "price": 100, "reduce_only": true, "take_profit": "90"}),
            "take_profit",
        ),
        // Nothing is entered: entry fields are refused, and at least one level is needed.
        (
            json!({"action": "update_stops", "price": 100, "stop_loss": "90", "position_size": "1"}),
            "position_size",
        ),
        (json!({"action": "update_stops", "price": 100}), "stop_loss"),
        (
            json!({"action": "move_stop_to_breakeven", "price": 100, "stop_loss": "90"}),
            "stop_loss",
        ),
    ];
    for (extra, field) in cases {
        refused(&c, eth(extra), field).await;
    }
    assert!(orders(&c).await.is_empty(), "nothing placed");
    assert!(c.get("/api/signals").await["signals"]
        .as_array()
        .unwrap()
        .is_empty());

    // Without a price in the payload, the last mark is the entry price: a tick at 2800, then a long whose stop is
    // above it.
    let tick = c.act(json!({"symbol": "ETHUSDT", "price": 2800})).await;
    assert_eq!(tick["status"], "ignored", "{tick}");
    refused(
        &c,
        json!({"symbol": "ETHUSDT", "action": "open_long", "stop_loss": 2900}),
        "stop_loss",
    )
    .await;
    refused(
        &c,
        json!({"symbol": "ETHUSDT", "action": "open_short", "take_profit": 2800.5}),
        "take_profit",
    )
    .await;
    assert!(orders(&c).await.is_empty(), "nothing placed");

    // The same levels on the right side fill, and `order_type: market` is what Sentinel does anyway.
    let record = c
        .act(
            json!({"symbol": "ETHUSDT", "action": "open_short", "order_type": "market",
                    "stop_loss": 2900, "take_profit": 2700}),
        )
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(c.held("ETHUSDT").await.as_deref(), Some("-1"));
}

#[actix_web::test]
async fn partial_closes_by_quantity_and_percent() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let act = |body: Value| c.act(body);
    act(json!({"symbol": "ETHUSDT", "action": "open_long", "price": 2000, "position_size": "1"}))
        .await;

    // 0.4 of 1 at 2100: 0.6 left, (2100 - 2000) x 0.4 = 40 realized.
    let record = act(
        json!({"symbol": "ETHUSDT", "action": "close_long", "price": 2100, "position_size": "0.4"}),
    )
    .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(c.held("ETHUSDT").await.as_deref(), Some("0.6"));
    assert_eq!(balance(&c).await, "10040");

    // 50% of 0.6 = 0.3 at 2200: 0.3 left, (2200 - 2000) x 0.3 = 60 more.
    act(json!({"symbol": "ETHUSDT", "action": "close", "price": 2200, "position_size": "50%"}))
        .await;
    assert_eq!(c.held("ETHUSDT").await.as_deref(), Some("0.3"));
    assert_eq!(balance(&c).await, "10100");

    // 5 is more than the 0.3 held: capped, the position is flat and nothing is opened short.
    // (1900 - 2000) x 0.3 = -30.
    act(json!({"symbol": "ETHUSDT", "action": "close_long", "price": 1900, "position_size": 5}))
        .await;
    assert_eq!(c.held("ETHUSDT").await, None);
    assert_eq!(balance(&c).await, "10070");

    // A reduce-only buy reduces a short and never opens a long: short 1 at 2000, buy 0.25 reduce-only at 1900
    // leaves -0.75 and realizes (2000 - 1900) x 0.25 = 25.
    act(json!({"symbol": "ETHUSDT", "action": "open_short", "price": 2000, "position_size": "1"}))
        .await;
    act(json!({"symbol": "ETHUSDT", "action": "buy", "price": 1900, "position_size": "0.25", "reduce_only": true}))
        .await;
    assert_eq!(c.held("ETHUSDT").await.as_deref(), Some("-0.75"));
    assert_eq!(balance(&c).await, "10095");
    // Without a size it closes the rest: (2000 - 1900) x 0.75 = 75.
    act(json!({"symbol": "ETHUSDT", "action": "buy", "price": 1900, "reduce_only": "true"})).await;
    assert_eq!(c.held("ETHUSDT").await, None);
    assert_eq!(balance(&c).await, "10170");
    // Flat: a reduce-only buy has nothing to reduce and opens nothing.
    let record =
        act(json!({"symbol": "ETHUSDT", "action": "buy", "price": 1900, "reduce_only": true}))
            .await;
    assert_eq!(
        record["outcome"]["reason"]["code"], "nothing_to_close",
        "{record}"
    );
    assert_eq!(c.held("ETHUSDT").await, None);
    // A plain SELL signal (as OctoBot's REDUCE_ONLY sends it) reduces a long by its volume: 1 - 0.1 = 0.9 left,
    // at the entry price, so nothing realized.
    act(json!({"symbol": "ETHUSDT", "action": "open_long", "price": 2000, "position_size": "1"}))
        .await;
    act(json!({"symbol": "ETHUSDT", "signal": "SELL", "price": 2000, "volume": "0.1", "reduce_only": true})).await;
    assert_eq!(c.held("ETHUSDT").await.as_deref(), Some("0.9"));
    assert_eq!(balance(&c).await, "10170");
    // One open, three partial closes, one open, two reduce-only buys, one open, one reduce-only sell: nine fills.
    assert_eq!(orders(&c).await.len(), 9);
}

#[actix_web::test]
async fn percent_levels_on_an_add_are_measured_from_the_average_entry() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    c.act(
        json!({"symbol": "ETHUSDT", "action": "open_long", "price": 2000, "position_size": "1",
                 "stop_loss": "10%"}),
    )
    .await;
    // The add's 10% stop applies to the whole position, from the average entry (2000 + 2200) / 2 = 2100:
    // 2100 x 0.9 = 1890 (measured from the add's own fill it would be 1980; the first entry's was 1800).
    c.act(
        json!({"symbol": "ETHUSDT", "action": "open_long", "price": 2200, "position_size": "1",
                 "stop_loss": "10%"}),
    )
    .await;
    let entry = c.position("ETHUSDT").await.unwrap();
    assert_eq!(
        (entry["quantity"].as_str(), entry["entry_price"].as_str()),
        (Some("2"), Some("2100"))
    );
    c.act(json!({"symbol": "ETHUSDT", "price": 1980})).await;
    c.act(json!({"symbol": "ETHUSDT", "price": 1890.01})).await;
    assert_eq!(c.held("ETHUSDT").await.as_deref(), Some("2"));
    c.act(json!({"symbol": "ETHUSDT", "price": 1890})).await;
    assert_eq!(c.held("ETHUSDT").await, None, "stopped at 1890");
    // (1890 - 2100) x 2 = -420.
    assert_eq!(balance(&c).await, "9580");
}

#[actix_web::test]
async fn an_add_without_levels_keeps_the_resting_ones_whatever_the_defaults() {
    // SOLUSDT has a default target of 50%: it arms a new position, never an add.
    let extra = r#"
[[symbols]]
symbol = "SOLUSDT"
default_size = "1"
max_leverage = 10
quantity_step = "0.01"
take_profit = "50%"
"#;
    let daemon = Daemon::start(&config("fee_rate = \"0\"\nslippage = \"0\"", extra));
    let c = daemon.client();
    c.act(
        json!({"symbol": "SOLUSDT", "action": "open_long", "price": 100, "stop_loss": 90,
                 "take_profit": 120}),
    )
    .await;
    // The add gives no levels: the stop at 90 and the target at 120 stay for both units (the default would have
    // put the target at 1.5 x the average 105 = 157.5).
    c.act(json!({"symbol": "SOLUSDT", "action": "open_long", "price": 110}))
        .await;
    c.act(json!({"symbol": "SOLUSDT", "price": 119.99})).await;
    assert_eq!(c.held("SOLUSDT").await.as_deref(), Some("2"));
    c.act(json!({"symbol": "SOLUSDT", "price": 120})).await;
    assert_eq!(c.held("SOLUSDT").await, None, "target at 120");
    // (120 - 105) x 2 = 30.
    assert_eq!(balance(&c).await, "10030");

    // A new position gets the default target: 1 at 100, 100 x 1.5 = 150.
    c.act(json!({"symbol": "SOLUSDT", "action": "open_long", "price": 100}))
        .await;
    c.act(json!({"symbol": "SOLUSDT", "price": 149.99})).await;
    assert_eq!(c.held("SOLUSDT").await.as_deref(), Some("1"));
    c.act(json!({"symbol": "SOLUSDT", "price": 150})).await;
    assert_eq!(c.held("SOLUSDT").await, None, "default target at 150");
    // 30 + (150 - 100) x 1 = 80.
    assert_eq!(balance(&c).await, "10080");
}

/// The exits a signal's outcome says rest now: (stop, target).
fn moved(record: &Value) -> (Value, Value) {
    assert_eq!(record["status"], "exits_moved", "{record}");
    let exits = &record["outcome"]["exits"];
    (
        exits["stop_loss"][0].clone(),
        exits["take_profit"][0].clone(),
    )
}

/// The journaled fills of a reason (`stop_loss`, `take_profit`, `signal`), with their prices.
async fn fills_for(c: &common::Client, reason: &str) -> Vec<String> {
    orders(c)
        .await
        .iter()
        .filter(|o| o["kind"] == "filled" && o["fill"]["reason"] == reason)
        .map(|o| o["fill"]["price"].as_str().unwrap().to_string())
        .collect()
}

#[actix_web::test]
async fn update_stops_moves_the_stop_measured_from_the_average_entry() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    c.act(json!({"symbol": "BTCUSDT", "action": "open_long", "price": 100, "position_size": "1"}))
        .await;
    // 2% below the entry 100: 98. No price in the payload: the last price 100 is the market.
    let record = c
        .act(json!({"symbol": "BTCUSDT", "action": "update_stops", "stop_loss": "2%"}))
        .await;
    assert_eq!(moved(&record), (json!("98"), Value::Null));
    c.act(json!({"symbol": "BTCUSDT", "price": 98.01})).await;
    assert_eq!(c.held("BTCUSDT").await.as_deref(), Some("1"));
    c.act(json!({"symbol": "BTCUSDT", "price": 98})).await;
    assert_eq!(c.held("BTCUSDT").await, None, "stopped at 98");
    assert_eq!(fills_for(&c, "stop_loss").await, ["98"]);
    // (98 - 100) x 1 = -2.
    assert_eq!(balance(&c).await, "9998");
}

#[actix_web::test]
async fn break_even_puts_the_stop_at_the_entry_and_not_past_the_market() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    c.act(
        json!({"symbol": "BTCUSDT", "action": "open_long", "price": 100, "position_size": "1",
                 "take_profit": 120}),
    )
    .await;
    // In profit at 101: the stop goes to the entry 100, the target at 120 stays.
    let record = c
        .act(json!({"symbol": "BTCUSDT", "action": "move_stop_to_breakeven", "price": 101}))
        .await;
    assert_eq!(moved(&record), (json!("100"), json!("120")));
    c.act(json!({"symbol": "BTCUSDT", "price": 100.01})).await;
    assert_eq!(c.held("BTCUSDT").await.as_deref(), Some("1"));
    c.act(json!({"symbol": "BTCUSDT", "price": 100})).await;
    assert_eq!(c.held("BTCUSDT").await, None, "stopped at the entry");
    // No slippage: closed at 100 exactly, nothing won or lost.
    assert_eq!(fills_for(&c, "stop_loss").await, ["100"]);
    assert_eq!(balance(&c).await, "10000");

    // A losing long (last price 99, entry 100): a stop at 100 would be above the market and fire at once, so
    // nothing moves, and the outcome says why.
    c.act(
        json!({"symbol": "BTCUSDT", "action": "open_long", "price": 100, "position_size": "1",
                 "stop_loss": 90}),
    )
    .await;
    let record = c
        .act(json!({"symbol": "BTCUSDT", "action": "move_stop_to_breakeven", "price": 99}))
        .await;
    assert_eq!(record["status"], "ignored", "{record}");
    let reason = &record["outcome"]["reason"];
    assert_eq!(
        (
            &reason["code"],
            &reason["field"],
            &reason["level"],
            &reason["last_price"]
        ),
        (
            &json!("level_wrong_side"),
            &json!("stop_loss"),
            &json!("100"),
            &json!("99")
        ),
        "{record}"
    );
    // The stop at 90 still rests.
    c.act(json!({"symbol": "BTCUSDT", "price": 90.01})).await;
    assert_eq!(c.held("BTCUSDT").await.as_deref(), Some("1"));
    c.act(json!({"symbol": "BTCUSDT", "price": 90})).await;
    assert_eq!(c.held("BTCUSDT").await, None, "stopped at 90");
}

#[actix_web::test]
async fn stop_moves_need_a_position_and_the_right_side_of_the_market() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let record = c
        .act(json!({"symbol": "BTCUSDT", "action": "update_stops", "price": 100, "stop_loss": 95}))
        .await;
    assert_eq!(record["status"], "ignored", "{record}");
    assert_eq!(record["outcome"]["reason"]["code"], "no_position");
    let record = c
        .act(json!({"symbol": "BTCUSDT", "action": "move_stop_to_breakeven", "price": 100}))
        .await;
    assert_eq!(record["outcome"]["reason"]["code"], "no_position");

    c.act(json!({"symbol": "BTCUSDT", "action": "open_long", "price": 100, "position_size": "1"}))
        .await;
    // A long's stop above the last price, or its target below it: 422 naming the field, nothing recorded.
    let before = c.get("/api/signals?limit=1000").await["signals"]
        .as_array()
        .unwrap()
        .len();
    refused(
        &c,
        json!({"symbol": "BTCUSDT", "action": "update_stops", "stop_loss": 100}),
        "stop_loss",
    )
    .await;
    refused(
        &c,
        json!({"symbol": "BTCUSDT", "action": "update_stops", "price": 104, "take_profit": 103}),
        "take_profit",
    )
    .await;
    let after = c.get("/api/signals?limit=1000").await["signals"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing recorded");
}

#[actix_web::test]
async fn moved_levels_survive_a_restart() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    c.act(
        json!({"symbol": "BTCUSDT", "action": "open_long", "price": 100, "position_size": "1",
                 "stop_loss": 90, "take_profit": 150}),
    )
    .await;
    let record = c
        .act(json!({"symbol": "BTCUSDT", "action": "update_stops", "stop_loss": 95, "take_profit": "10%"}))
        .await;
    assert_eq!(moved(&record), (json!("95"), json!("110")));

    let daemon = daemon.restart();
    let c = daemon.client();
    // The ledger folded the move and the paper book was restored from it: the stop rests at 95 (not 90), the
    // target at 110 (not 150).
    c.act(json!({"symbol": "BTCUSDT", "price": 95.01})).await;
    c.act(json!({"symbol": "BTCUSDT", "price": 109.99})).await;
    assert_eq!(c.held("BTCUSDT").await.as_deref(), Some("1"));
    c.act(json!({"symbol": "BTCUSDT", "price": 110})).await;
    assert_eq!(c.held("BTCUSDT").await, None, "target at 110");
    assert_eq!(fills_for(&c, "take_profit").await, ["110"]);
    assert_eq!(balance(&c).await, "10010");
}

/// A long opened at 100 with a 2% trailing stop: (stop) 98 at the entry.
async fn long_trailing_two_percent(c: &common::Client) {
    let record = c
        .act(
            json!({"symbol": "BTCUSDT", "action": "open_long", "price": 100, "position_size": "1",
                     "trailing_stop": "2%"}),
        )
        .await;
    assert_eq!(record["status"], "filled", "{record}");
}

#[actix_web::test]
async fn a_trailing_stop_follows_new_highs_and_never_moves_back() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    long_trailing_two_percent(&c).await;
    // New highs 105 and 110 move the stop to 105 x 0.98 = 102.9, then 110 x 0.98 = 107.8.
    for price in [105, 110] {
        c.act(json!({"symbol": "BTCUSDT", "price": price})).await;
    }
    // 108 is no new high: the stop stays at 107.8, and 108 does not cross it.
    c.act(json!({"symbol": "BTCUSDT", "price": 108})).await;
    c.act(json!({"symbol": "BTCUSDT", "price": 107.81})).await;
    assert_eq!(c.held("BTCUSDT").await.as_deref(), Some("1"));
    c.act(json!({"symbol": "BTCUSDT", "price": 107.8})).await;
    assert_eq!(c.held("BTCUSDT").await, None, "stopped at 107.8");
    // Fired as a stop, at the level: no slippage in `free_config`.
    assert_eq!(fills_for(&c, "stop_loss").await, ["107.8"]);
    // (107.8 - 100) x 1 = 7.8.
    assert_eq!(balance(&c).await, "10007.8");
}

#[actix_web::test]
async fn a_trailed_stop_survives_a_restart() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    long_trailing_two_percent(&c).await;
    for price in [105, 110, 108] {
        c.act(json!({"symbol": "BTCUSDT", "price": price})).await;
    }

    let daemon = daemon.restart();
    let c = daemon.client();
    // The ledger trailed the stop on the same ticks, and the paper book was restored from it: it rests at 107.8
    // (not the 98 it was armed at), and the high it trails from is still 110, so 109 moves nothing.
    c.act(json!({"symbol": "BTCUSDT", "price": 109})).await;
    c.act(json!({"symbol": "BTCUSDT", "price": 107.81})).await;
    assert_eq!(c.held("BTCUSDT").await.as_deref(), Some("1"));
    c.act(json!({"symbol": "BTCUSDT", "price": 107.8})).await;
    assert_eq!(c.held("BTCUSDT").await, None, "stopped at 107.8");
    assert_eq!(fills_for(&c, "stop_loss").await, ["107.8"]);
}
