//! The webhook -> strategy -> risk -> paper exchange pipeline, driven over real HTTP.

mod common;

use awc::http::StatusCode;
use common::{free_config, Daemon};
use serde_json::json;

#[actix_web::test]
async fn plain_signal_opens_a_position() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let body = r#"{"symbol":"ETHUSDT","signal":"BUY","price":3000.25,"timestamp":1700000000,"source":"model-7","volume":"0.5"}"#;
    let (status, answer) = c.signed(body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let record = c.done(answer["signal_id"].as_str().unwrap()).await;
    assert_eq!(record["status"], "filled");
    assert_eq!(record["signal"]["sent_at"], 1_700_000_000_000i64);
    let eth = c.position("ETHUSDT").await.expect("ETH position");
    assert_eq!(eth["side"], "long");
    assert_eq!(eth["quantity"], "0.5");
    assert_eq!(eth["entry_price"], "3000.25");

    // SELL flips it: the long is closed, then a short opened.
    let body = r#"{"symbol":"ETHUSDT","signal":"SELL","price":"3100","volume":"0.2"}"#;
    let (_, answer) = c.signed(body).await;
    c.done(answer["signal_id"].as_str().unwrap()).await;
    let eth = c.position("ETHUSDT").await.expect("ETH position");
    assert_eq!(
        (eth["side"].as_str(), eth["quantity"].as_str()),
        (Some("short"), Some("0.2"))
    );
    let account = c.get("/api/account").await;
    // (3100 - 3000.25) * 0.5 realized, no fees configured.
    assert_eq!(account["realized_pnl"], "49.875");
    assert_eq!(account["balance"], "10049.875");
}

#[actix_web::test]
async fn tradingview_alert_as_it_really_arrives() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    // text/plain, a trailing newline, numbers as strings, an exchange-prefixed perpetual ticker, {{time}}.
    let body = format!(
        "{{\"passphrase\":\"{}\",\"ticker\":\"BINANCE:BTCUSDT.P\",\"action\":\"buy\",\"close\":\"45000.5\",\
         \"time\":\"2024-01-02T03:04:05Z\",\"position_size\":\"0.02\",\"comment\":\"Long Entry\"}}\n",
        common::PASSPHRASE
    );
    let (status, answer) = c
        .post(
            "tradingview",
            &body,
            &[("content-type", "text/plain; charset=utf-8")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let record = c.done(answer["signal_id"].as_str().unwrap()).await;
    assert_eq!(record["status"], "filled");
    assert_eq!(record["signal"]["sent_at"], 1_704_164_645_000i64);
    assert!(record["signal"].get("passphrase").is_none());
    assert!(
        !record.to_string().contains(common::PASSPHRASE),
        "the passphrase is never kept"
    );
    let btc = c.position("BTCUSDT").await.expect("BTC position");
    assert_eq!(
        (btc["quantity"].as_str(), btc["entry_price"].as_str()),
        (Some("0.02"), Some("45000.5"))
    );
}

#[actix_web::test]
async fn percent_sizing_is_margin_times_leverage_exactly() {
    // With fees and slippage, as the README's example.
    let daemon = Daemon::start(&common::config(
        "fee_rate = \"0.0004\"\nslippage = \"0.0005\"",
        "",
    ));
    let c = daemon.client();
    let record = c
        .act(
            json!({"symbol":"BTCUSDT","action":"open_long","leverage":5,"position_size":"10%",
                    "stop_loss":"2%","take_profit":"6%","price":45000}),
        )
        .await;
    assert_eq!(record["status"], "filled");
    // margin 10% of 10000 = 1000, x5 = 5000 notional, / 45000 = 0.1111 -> 0.111 (step 0.001).
    // Fill 45000 * 1.0005 = 45022.5; fee 45022.5 * 0.111 * 0.0004 = 1.998999.
    let btc = c.position("BTCUSDT").await.unwrap();
    assert_eq!(btc["quantity"], "0.111");
    assert_eq!(btc["entry_price"], "45022.5");
    assert_eq!(btc["fees"], "1.998999");
    // Marked at 45000: (45000 - 45022.5) * 0.111 = -2.4975.
    assert_eq!(btc["unrealized_pnl"], "-2.4975");
    let account = c.get("/api/account").await;
    assert_eq!(account["balance"], "9998.001001");
    assert_eq!(account["equity"], "9995.503501");

    // "500 USDT" is notional: 500 / 2500 = 0.2 ETH, leverage does not multiply it.
    let record = c
        .act(json!({"symbol":"ETHUSDT","action":"open_short","leverage":3,"position_size":"500 USDT","price":"2500"}))
        .await;
    assert_eq!(record["status"], "filled");
    assert_eq!(c.position("ETHUSDT").await.unwrap()["quantity"], "0.2");
}

#[actix_web::test]
async fn close_flatten_and_reverse() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    // 5x: at BTCUSDT's default 1x, 0.3 x 40000 = 12000 of margin is more than the 10000 wallet.
    c.act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.3","leverage":5,"price":"40000"}))
        .await;
    // close_short while long: nothing to close.
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"close_short"}))
        .await;
    assert_eq!(record["status"], "ignored");
    assert_eq!(record["outcome"]["reason"]["code"], "nothing_to_close");

    // reverse: close the long, open a short of the same size.
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"reverse","leverage":5,"price":"41000"}))
        .await;
    assert_eq!(record["status"], "filled");
    assert_eq!(record["outcome"]["orders"].as_array().unwrap().len(), 2);
    let btc = c.position("BTCUSDT").await.unwrap();
    assert_eq!(
        (btc["side"].as_str(), btc["quantity"].as_str()),
        (Some("short"), Some("0.3"))
    );
    // (41000 - 40000) * 0.3, booked by the long: the short that is open has realized nothing yet.
    assert_eq!(btc["history"]["realized_pnl"], "300");
    assert_eq!(btc["realized_pnl"], "0");

    // close (flatten) whatever is open.
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"close","price":"40500"}))
        .await;
    assert_eq!(record["status"], "filled");
    assert!(c.position("BTCUSDT").await.is_none());
    assert_eq!(c.get("/api/account").await["balance"], "10450"); // 300 + (41000 - 40500) * 0.3

    c.act(json!({"symbol":"BTCUSDT","action":"open_short","position_size":"0.1","price":"40000"}))
        .await;
    c.act(json!({"symbol":"BTCUSDT","action":"close_short"}))
        .await;
    assert!(c.position("BTCUSDT").await.is_none());
    let orders = c.get("/api/orders").await;
    assert_eq!(orders["orders"].as_array().unwrap().len(), 6);
}

#[actix_web::test]
async fn strategy_target_moves_to_the_position_whatever_was_missed() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    // At 15000, so that 0.5 at BTCUSDT's default 1x (7500 of margin) fits the 10000 wallet.
    let target = |position: &str, size: &str| json!({"ticker":"BTCUSDT","market_position":position,"market_position_size":size,"price":"15000"});
    c.act(target("long", "0.5")).await;
    assert_eq!(c.position("BTCUSDT").await.unwrap()["quantity"], "0.5");
    // Alerts between were missed: the next says short 0.2, so close 0.5 and open 0.2 short.
    c.act(target("short", "0.2")).await;
    let btc = c.position("BTCUSDT").await.unwrap();
    assert_eq!(
        (btc["side"].as_str(), btc["quantity"].as_str()),
        (Some("short"), Some("0.2"))
    );
    let record = c.act(target("short", "0.2")).await;
    assert_eq!(record["outcome"]["reason"]["code"], "already_at_target");
    c.act(target("flat", "0")).await;
    assert!(c.position("BTCUSDT").await.is_none());
}

#[actix_web::test]
async fn ticks_move_the_mark_and_fire_a_stop_loss() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let record = c.act(json!({"symbol":"BTCUSDT","price":"45000"})).await;
    assert_eq!(record["outcome"]["reason"]["code"], "price_update");

    c.act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.1","stop_loss":"2%","take_profit":"50000"}))
        .await;
    let btc = c.position("BTCUSDT").await.unwrap();
    assert_eq!(btc["entry_price"], "45000", "filled at the tick's price");

    c.act(json!({"symbol":"BTCUSDT","price":"44500"})).await;
    let btc = c
        .position("BTCUSDT")
        .await
        .expect("still open above the stop at 44100");
    assert_eq!(btc["mark_price"], "44500");
    assert_eq!(btc["unrealized_pnl"], "-50"); // (44500 - 45000) * 0.1

    c.act(json!({"symbol":"BTCUSDT","price":"44050"})).await;
    assert!(
        c.position("BTCUSDT").await.is_none(),
        "the stop at 44100 fired"
    );
    let orders = c.get("/api/orders").await;
    let exit = &orders["orders"][0];
    assert_eq!(exit["fill"]["reason"], "stop_loss");
    assert_eq!(exit["fill"]["price"], "44050");
    assert_eq!(c.get("/api/account").await["balance"], "9905"); // (44050 - 45000) * 0.1
}

#[actix_web::test]
async fn risk_denials_are_typed() {
    let daemon = Daemon::start(&common::config(
        "fee_rate = \"0\"\nslippage = \"0\"",
        "[[symbols]]\nsymbol = \"SOLUSDT\"\nenabled = false\n",
    ));
    let c = daemon.client();
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","leverage":25,"position_size":"0.01","price":"45000"}))
        .await;
    assert_eq!(record["status"], "denied");
    assert_eq!(record["outcome"]["reason"]["code"], "leverage_above_limit");
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"3","price":"45000"}))
        .await;
    assert_eq!(record["outcome"]["reason"]["code"], "notional_above_limit");
    assert_eq!(record["outcome"]["reason"]["notional"], "135000");
    let record = c
        .act(json!({"symbol":"SOLUSDT","action":"open_long","position_size":"1","price":"100"}))
        .await;
    assert_eq!(record["outcome"]["reason"]["code"], "symbol_disabled");
    assert!(c.get("/api/positions").await["positions"]
        .as_array()
        .unwrap()
        .is_empty());
}
