//! Alerts written for other bots reach Sentinel unchanged: 3Commas signal-bot JSON and OctoBot lines.

mod common;

use awc::http::StatusCode;
use serde_json::json;

use common::{Daemon, PASSPHRASE};

#[actix_web::test]
async fn a_three_commas_alert_opens_and_closes_with_its_secret_as_the_passphrase() {
    let daemon = Daemon::start(&common::free_config());
    let client = daemon.client();
    let open = json!({
        "secret": PASSPHRASE, "max_lag": "300", "trigger_price": "50000", "tv_exchange": "BINANCE",
        "tv_instrument": "BTCUSDT.P", "action": "enter_long", "bot_uuid": "6f1c",
        "order": {"amount": "0.02", "currency_type": "base"}
    });
    let (status, answer) = client
        .post(
            "tradingview",
            &open.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let record = client.done(answer["signal_id"].as_str().unwrap()).await;
    assert_eq!(record["status"], "filled", "{record}");
    let position = client.position("BTCUSDT").await.expect("a long");
    assert_eq!(position["quantity"], "0.02");
    // The stored payload keeps no secret.
    assert!(!record.to_string().contains(PASSPHRASE));

    let close = json!({"secret": PASSPHRASE, "tv_instrument": "BTCUSDT", "action": "exit_long", "bot_uuid": "6f1c",
                       "trigger_price": "50100"});
    let (status, answer) = client
        .post(
            "tradingview",
            &close.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    client.done(answer["signal_id"].as_str().unwrap()).await;
    assert!(client.position("BTCUSDT").await.is_none());

    // A wrong secret is a 401 like any wrong passphrase; an unmappable field is a 422 naming it.
    let wrong = json!({"secret": "nope", "tv_instrument": "BTCUSDT", "action": "enter_long", "bot_uuid": "6f1c"});
    let (status, _) = client
        .post(
            "tradingview",
            &wrong.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let odd = json!({"secret": PASSPHRASE, "tv_instrument": "BTCUSDT", "action": "enter_long", "bot_uuid": "6f1c",
                     "order": {"amount": "5", "currency_type": "margin_percent"}});
    let (status, answer) = client
        .post(
            "tradingview",
            &odd.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer.to_string().contains("order"), "{answer}");
}

#[actix_web::test]
async fn octobot_lines_open_a_position_with_its_stop() {
    let daemon = Daemon::start(&common::free_config());
    let client = daemon.client();
    let body = format!(
        "EXCHANGE=binance\nSYMBOL=ETH/USDT:USDT\nSIGNAL=BUY\nVOLUME=0.5\nPRICE=3000\nSTOP_PRICE=2900\nPASSPHRASE={PASSPHRASE}\n"
    );
    let (status, answer) = client
        .post("tradingview", &body, &[("content-type", "text/plain")])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let record = client.done(answer["signal_id"].as_str().unwrap()).await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(client.position("ETHUSDT").await.unwrap()["quantity"], "0.5");

    // A LIMIT order rests at its PRICE, below the market, and fills when the price comes down to it.
    let (status, answer) = client
        .post(
            "tradingview",
            &format!(
                "SYMBOL=ETHUSDT;SIGNAL=BUY;ORDER_TYPE=LIMIT;PRICE=2500;VOLUME=0.5;PASSPHRASE={PASSPHRASE}"
            ),
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let limit_id = answer["signal_id"].as_str().unwrap().to_string();
    let record = client.done(&limit_id).await;
    assert_eq!(record["status"], "resting", "{record}");
    assert_eq!(client.position("ETHUSDT").await.unwrap()["quantity"], "0.5");
    client
        .act(json!({"symbol": "ETHUSDT", "price": 2490}))
        .await;
    assert_eq!(client.position("ETHUSDT").await.unwrap()["quantity"], "1");
    let orders = client.get("/api/orders?limit=10").await;
    let fill = &orders["orders"][0];
    assert_eq!(fill["fill"]["price"], "2500", "{orders}");

    // OctoBot's STOP orders are not supported: refused, naming the key.
    let (status, answer) = client
        .post(
            "tradingview",
            &format!(
                "SYMBOL=ETHUSDT;SIGNAL=BUY;ORDER_TYPE=STOP;PRICE=3500;PASSPHRASE={PASSPHRASE}"
            ),
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer.to_string().contains("ORDER_TYPE"), "{answer}");
}
