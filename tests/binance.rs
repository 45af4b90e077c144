//! The whole daemon against a local server that speaks Binance USD-M futures' wire protocol (signatures, receive
//! window, filters, error codes, algo orders, streams): orders with their legs, fired stops, rounding and minimum
//! notional, every injected failure ending with one order on the exchange and the journal agreeing, a restart that
//! adopts what changed while the daemon was down, and the stream-down fallback.

mod common;
mod fake_binance;

use std::str::FromStr;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use common::{Client, Daemon};
use fake_binance::{FakeBinance, Fault};

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn binance_config(fake: &FakeBinance, extra: &str) -> String {
    fake.daemon_config(extra)
}

fn keys(fake: &FakeBinance) -> Vec<(String, String)> {
    fake.daemon_env()
}

async fn start(fake: &FakeBinance, extra: &str) -> Daemon {
    let daemon = Daemon::start_with_env_unwaited(&binance_config(fake, extra), keys(fake));
    ready(&daemon.client()).await;
    daemon
}

/// Waits for the daemon to answer (it connects to the exchange before it serves).
async fn ready(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = client.request(awc::http::Method::GET, "/healthz").await;
        if status == StatusCode::OK {
            return;
        }
        assert!(Instant::now() < deadline, "the daemon did not start");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` until it holds, for up to 10 s.
async fn eventually<F: Fn() -> bool>(what: &str, check: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the journal to hold a fill for `reason` (`stop_loss`, `take_profit`) and returns it.
async fn journaled_fill(client: &Client, reason: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fills = journal_fills(client).await;
        if let Some(fill) = fills.iter().find(|f| f["fill"]["reason"] == reason) {
            return fill.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {reason} fill in the journal: {fills:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Filled and rejected orders in the journal, oldest first.
async fn journal_orders(client: &Client) -> Vec<Value> {
    let mut orders = client.get("/api/orders?limit=1000").await["orders"]
        .as_array()
        .unwrap()
        .clone();
    orders.reverse();
    orders
}

async fn journal_fills(client: &Client) -> Vec<Value> {
    journal_orders(client)
        .await
        .into_iter()
        .filter(|o| o["kind"] == "filled")
        .collect()
}

/// The journal's position of `symbol` (signed), 0 when flat.
async fn journal_position(client: &Client, symbol: &str) -> Decimal {
    match client.position(symbol).await {
        Some(p) => {
            let q = d(p["quantity"].as_str().unwrap_or(&p["quantity"].to_string()));
            if p["side"] == "short" {
                -q
            } else {
                q
            }
        }
        None => Decimal::ZERO,
    }
}

fn open_long(symbol: &str) -> Value {
    json!({"symbol": symbol, "action": "open_long", "stop_loss": "2%", "take_profit": "6%"})
}

fn new_algos(fake: &FakeBinance, symbol: &str) -> Vec<fake_binance::AlgoRecord> {
    fake.algo_orders()
        .into_iter()
        .filter(|a| a.symbol == symbol && a.status == "NEW")
        .collect()
}

#[actix_web::test]
async fn opens_with_both_legs_as_algo_orders_and_closing_cancels_them() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();

    let record = client.act(open_long("BTCUSDT")).await;
    assert_eq!(record["status"], "filled", "{record}");
    let orders = fake.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].order_type, "MARKET");
    assert_eq!(orders[0].side, "BUY");
    assert_eq!(orders[0].quantity, d("0.01"));
    assert!(
        orders[0].client_order_id.starts_with("sn"),
        "the journal's id: {}",
        orders[0].client_order_id
    );
    assert_eq!(
        fake.leverage("BTCUSDT"),
        5,
        "the symbol's leverage is set before the first order"
    );
    assert_eq!(fake.position("BTCUSDT"), d("0.01"));
    assert_eq!(journal_position(&client, "BTCUSDT").await, d("0.01"));

    // Both legs rest as conditional algo orders closing the whole position, rounded to the 0.10 tick.
    let legs = new_algos(&fake, "BTCUSDT");
    assert_eq!(legs.len(), 2, "{legs:?}");
    let stop = legs
        .iter()
        .find(|l| l.order_type == "STOP_MARKET")
        .expect("a stop");
    let target = legs
        .iter()
        .find(|l| l.order_type == "TAKE_PROFIT_MARKET")
        .expect("a target");
    assert_eq!((stop.side.as_str(), target.side.as_str()), ("SELL", "SELL"));
    assert!(stop.close_position && target.close_position);
    assert_eq!(stop.trigger_price, d("49000"));
    assert_eq!(target.trigger_price, d("53000"));

    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "close_long"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    let orders = fake.orders();
    assert_eq!(orders.len(), 2);
    assert!(orders[1].reduce_only);
    assert_eq!(fake.position("BTCUSDT"), Decimal::ZERO);
    assert_eq!(journal_position(&client, "BTCUSDT").await, Decimal::ZERO);
    assert!(
        new_algos(&fake, "BTCUSDT").is_empty(),
        "both legs cancelled with the position"
    );
    // No call used an endpoint Binance refuses for conditional orders.
    assert!(fake
        .requests()
        .iter()
        .all(|r| r.answered != 400 || r.path != "/fapi/v1/order"));
}

#[actix_web::test]
async fn a_reverse_leaves_only_the_new_sides_legs() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "margin_type = \"ISOLATED\"").await;
    let client = daemon.client();
    client.act(open_long("BTCUSDT")).await;
    assert_eq!(
        fake.margin_type("BTCUSDT"),
        "ISOLATED",
        "the configured margin type is set before the first order"
    );
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_short", "stop_loss": "2%", "take_profit": "6%"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(fake.position("BTCUSDT"), d("-0.01"));
    assert_eq!(journal_position(&client, "BTCUSDT").await, d("-0.01"));
    let legs = new_algos(&fake, "BTCUSDT");
    assert_eq!(legs.len(), 2, "{legs:?}");
    assert!(
        legs.iter().all(|l| l.side == "BUY"),
        "the short's legs buy back: {legs:?}"
    );
    let stop = legs.iter().find(|l| l.order_type == "STOP_MARKET").unwrap();
    assert_eq!(stop.trigger_price, d("51000"));
}

#[actix_web::test]
async fn a_stop_that_fires_on_the_exchange_reaches_the_journal_and_cancels_the_target() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    client.act(open_long("BTCUSDT")).await;
    assert_eq!(new_algos(&fake, "BTCUSDT").len(), 2);

    fake.set_mark("BTCUSDT", d("48900"));
    eventually("the stop fired", || fake.position("BTCUSDT").is_zero()).await;
    let stop = journaled_fill(&client, "stop_loss").await;
    assert_eq!(stop["fill"]["side"], "sell");
    assert_eq!(d(stop["fill"]["quantity"].as_str().unwrap()), d("0.01"));
    assert_eq!(journal_position(&client, "BTCUSDT").await, Decimal::ZERO);
    eventually("the target cancelled", || {
        new_algos(&fake, "BTCUSDT").is_empty()
    })
    .await;
    assert_eq!(
        fake.orders().len(),
        2,
        "the entry and the stop's own order, nothing else"
    );
}

#[actix_web::test]
async fn quantities_are_rounded_to_the_step_and_an_order_below_min_notional_is_never_sent() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();

    let record = client
        .act(json!({"symbol": "ETHUSDT", "action": "open_long", "position_size": "0.0129"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(
        fake.orders()[0].quantity,
        d("0.012"),
        "rounded down to the 0.001 step"
    );
    assert_eq!(journal_position(&client, "ETHUSDT").await, d("0.012"));

    // 0.001 BTC at 50,000 is 50 USDT, under Binance's 100: refused here with a typed reason.
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "position_size": "0.001"}))
        .await;
    assert_eq!(record["status"], "rejected", "{record}");
    let text = record.to_string();
    assert!(text.contains("below_min_notional"), "{text}");
    assert_eq!(
        fake.orders().len(),
        1,
        "nothing was sent for the refused order"
    );
}

/// Opens a long on BTCUSDT after `fault` is injected and checks that exactly one order exists and the journal agrees.
async fn one_order_despite(fault: Fault) {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    fake.inject(fault.clone());
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long"}))
        .await;
    assert_eq!(record["status"], "filled", "{fault:?}: {record}");
    let market: Vec<_> = fake
        .orders()
        .into_iter()
        .filter(|o| o.order_type == "MARKET")
        .collect();
    assert_eq!(market.len(), 1, "{fault:?}: {market:?}");
    assert_eq!(fake.position("BTCUSDT"), d("0.01"), "{fault:?}");
    assert_eq!(
        journal_position(&client, "BTCUSDT").await,
        d("0.01"),
        "{fault:?}"
    );
    let fills = journal_fills(&client).await;
    assert_eq!(fills.len(), 1, "{fault:?}: {fills:?}");
    assert_eq!(
        fills[0]["client_order_id"], market[0].client_order_id,
        "{fault:?}"
    );
}

#[actix_web::test]
async fn a_timeout_after_the_order_executed_is_settled_by_looking_it_up() {
    one_order_despite(Fault::TimeoutAfterExecute {
        path: "/fapi/v1/order",
        hold: Duration::from_millis(2000),
    })
    .await;
}

#[actix_web::test]
async fn a_5xx_is_looked_up_and_the_order_sent_once_when_binance_never_had_it() {
    one_order_despite(Fault::ServerError {
        path: "/fapi/v1/order",
        status: 502,
        times: 1,
    })
    .await;
}

#[actix_web::test]
async fn a_1007_unknown_status_is_settled_by_looking_it_up() {
    one_order_despite(Fault::UnknownAfterExecute {
        path: "/fapi/v1/order",
        code: -1007,
    })
    .await;
}

#[actix_web::test]
async fn a_1006_unknown_status_is_settled_by_looking_it_up() {
    one_order_despite(Fault::UnknownAfterExecute {
        path: "/fapi/v1/order",
        code: -1006,
    })
    .await;
}

#[actix_web::test]
async fn a_duplicate_client_id_is_settled_by_looking_it_up() {
    one_order_despite(Fault::DuplicateAfterExecute {
        path: "/fapi/v1/order",
    })
    .await;
}

#[actix_web::test]
async fn a_clock_outside_the_receive_window_is_resynchronised_and_the_order_placed_once() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    // Binance's clock jumps 30 s ahead of ours: every timestamp is now outside the 5 s window (-1021).
    fake.set_server_time_offset_ms(30_000);
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(fake.orders().len(), 1);
    assert!(
        fake.requests().iter().any(|r| r.answered == 400),
        "a first attempt was refused -1021"
    );
    assert_eq!(journal_position(&client, "BTCUSDT").await, d("0.01"));
}

#[actix_web::test]
async fn a_429_pauses_sends_and_refuses_entries_until_retry_after() {
    for status in [429u16, 418] {
        let fake = FakeBinance::start().await;
        let daemon = start(&fake, "").await;
        let client = daemon.client();
        client
            .act(json!({"symbol": "BTCUSDT", "action": "open_long"}))
            .await;
        fake.inject(Fault::RateLimit {
            status,
            retry_after_secs: 2,
            times: 1,
        });
        let record = client
            .act(json!({"symbol": "ETHUSDT", "action": "open_long"}))
            .await;
        assert_eq!(record["status"], "rejected", "{status}: {record}");
        let sent = fake.requests().len();
        // During the pause: an entry is refused with a typed reason, without a request.
        let record = client
            .act(json!({"symbol": "ETHUSDT", "action": "open_long"}))
            .await;
        assert_eq!(record["status"], "rejected", "{status}: {record}");
        assert!(record.to_string().contains("paused"), "{status}: {record}");
        assert_eq!(
            fake.requests().len(),
            sent,
            "{status}: nothing is sent during the pause"
        );
        let account = client.get("/api/account").await;
        assert!(
            account["venue"]["standing"]["paused_until_ms"].is_number(),
            "{account}"
        );
        // An exit waits the pause out and goes through.
        let record = client
            .act(json!({"symbol": "BTCUSDT", "action": "close_long"}))
            .await;
        assert_eq!(record["status"], "filled", "{status}: {record}");
        assert_eq!(fake.position("BTCUSDT"), Decimal::ZERO);
        // After it, entries work again, once each.
        let record = client
            .act(json!({"symbol": "ETHUSDT", "action": "open_long"}))
            .await;
        assert_eq!(record["status"], "filled", "{status}: {record}");
        assert_eq!(fake.position("ETHUSDT"), d("0.1"));
        assert_eq!(journal_position(&client, "ETHUSDT").await, d("0.1"));
    }
}

#[actix_web::test]
async fn a_refused_key_halts_trading_loudly_instead_of_retrying() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    fake.inject(Fault::RejectKey { times: 100 });
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long"}))
        .await;
    assert_eq!(record["status"], "rejected", "{record}");
    let sent = fake.requests().len();
    let record = client
        .act(json!({"symbol": "ETHUSDT", "action": "open_long"}))
        .await;
    assert!(record.to_string().contains("halted"), "{record}");
    assert_eq!(
        fake.requests().len(),
        sent,
        "nothing more is sent once halted"
    );
    let account = client.get("/api/account").await;
    assert!(
        account["venue"]["standing"]["halted"].is_string(),
        "{account}"
    );
    assert!(fake.orders().is_empty());
}

#[actix_web::test]
async fn a_slow_order_on_one_symbol_does_not_hold_up_another() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    fake.inject(Fault::Delay {
        path: "/fapi/v1/order",
        symbol: Some("BTCUSDT".into()),
        delay: Duration::from_millis(2000),
        times: 1,
    });
    let (status, slow) = client
        .tradingview(json!({"symbol": "BTCUSDT", "action": "open_long", "id": "slow"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, fast) = client
        .tradingview(json!({"symbol": "ETHUSDT", "action": "open_long", "id": "fast"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let fast = client.done(fast["signal_id"].as_str().unwrap()).await;
    assert_eq!(fast["status"], "filled", "{fast}");
    // ETHUSDT filled while BTCUSDT's order was still held by the exchange.
    let signals = client.get("/api/signals?limit=10").await;
    let slow_now = signals["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["signal"]["id"] == slow["signal_id"])
        .cloned()
        .unwrap();
    assert_eq!(slow_now["status"], "pending", "{slow_now}");
    let slow = client.done(slow["signal_id"].as_str().unwrap()).await;
    assert_eq!(slow["status"], "filled", "{slow}");
}

#[actix_web::test]
async fn a_restart_adopts_a_position_opened_while_the_daemon_was_down_with_its_stop() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let config = binance_config(&fake, "");
    let dir = daemon.stop_keeping_journal();

    // On the website, while Sentinel is down: a long and a stop for it.
    fake.trade_directly("BTCUSDT", d("0.05"), d("50000"));
    fake.place_algo_directly("BTCUSDT", "SELL", "STOP_MARKET", d("45000"), "webstop1");

    let daemon = Daemon::start_at_with_env_unwaited(dir, &config, keys(&fake));
    let client = daemon.client();
    ready(&client).await;
    assert_eq!(journal_position(&client, "BTCUSDT").await, d("0.05"));
    let account = client.get("/api/account").await;
    let mismatches = account["venue"]["reconciliation"]["mismatches"].to_string();
    assert!(mismatches.contains("BTCUSDT"), "{account}");

    // The adopted stop is followed like Sentinel's own.
    fake.set_mark("BTCUSDT", d("44900"));
    eventually("the adopted stop fired", || {
        fake.position("BTCUSDT").is_zero()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !journal_position(&client, "BTCUSDT").await.is_zero() {
        assert!(
            Instant::now() < deadline,
            "the journal did not follow the adopted stop"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let fills = journal_fills(&client).await;
    assert!(
        fills.iter().any(|f| f["client_order_id"] == "webstop1"),
        "{fills:?}"
    );

    // A second restart finds the journal and Binance agreeing: nothing more is adopted.
    let dir = daemon.stop_keeping_journal();
    let daemon = Daemon::start_at_with_env_unwaited(dir, &config, keys(&fake));
    let client = daemon.client();
    ready(&client).await;
    let account = client.get("/api/account").await;
    assert_eq!(
        account["venue"]["reconciliation"]["adopted"],
        json!([]),
        "{account}"
    );
}

#[actix_web::test]
async fn with_the_streams_down_rest_polling_catches_a_fired_stop() {
    let fake = FakeBinance::start().await;
    fake.inject(Fault::StreamsRefused);
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    let record = client.act(open_long("BTCUSDT")).await;
    assert_eq!(record["status"], "filled", "{record}");
    let account = client.get("/api/account").await;
    assert_eq!(
        account["venue"]["feeds"]["user_data"], "polling",
        "{account}"
    );

    fake.set_mark("BTCUSDT", d("48900"));
    journaled_fill(&client, "stop_loss").await;
    assert_eq!(journal_position(&client, "BTCUSDT").await, Decimal::ZERO);

    // The stream comes back and is used again.
    fake.inject(Fault::StreamsAccepted);
    eventually_async(&client, "the stream reopened", |account| {
        account["venue"]["feeds"]["user_data"] == "stream"
    })
    .await;
}

#[actix_web::test]
async fn a_dropped_stream_is_reopened_and_no_fill_is_missed_meanwhile() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    client.act(open_long("BTCUSDT")).await;
    eventually("streams open", || fake.stream_connections() >= 2).await;
    fake.inject(Fault::StreamsRefused);
    fake.inject(Fault::DropStreams);
    fake.set_mark("BTCUSDT", d("53100"));
    journaled_fill(&client, "take_profit").await;
    fake.inject(Fault::StreamsAccepted);
    eventually("streams reopened", || fake.stream_connections() >= 2).await;
}

#[test]
fn hedge_mode_refuses_to_start_with_a_clear_error() {
    let system = actix_web::rt::System::new();
    system.block_on(async {
        let fake = FakeBinance::start().await;
        fake.set_dual_side_position(true);
        let config = sentinel::Config::parse(
            &binance_config(&fake, ""),
            tempfile::tempdir().unwrap().keep(),
            &|name| {
                keys(&fake)
                    .into_iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v)
                    .or_else(|| common::test_env(name))
            },
        )
        .unwrap();
        let bind = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            listener
        };
        let listeners = sentinel::Listeners {
            webhooks: bind(),
            api: bind(),
        };
        let error = sentinel::run(config, listeners, std::future::pending())
            .await
            .expect_err("hedge mode is refused");
        assert!(error.to_string().contains("hedge mode"), "{error}");
    });
}

#[test]
fn a_real_exchange_without_keys_or_with_a_demo_secret_refuses_to_start() {
    let text = r#"
[[sources]]
name = "tradingview"
kind = "tradingview"
passphrase_env = "TEST_TV_PASSPHRASE"

[exchange]
kind = "binance-futures"

[[symbols]]
symbol = "BTCUSDT"
"#;
    let missing = sentinel::Config::parse(text, std::path::PathBuf::from("."), &common::test_env)
        .unwrap_err();
    let message = format!("{missing:?}");
    assert!(
        message.contains("SENTINEL_BINANCE_API_KEY is not set"),
        "{message}"
    );
    assert!(
        message.contains("SENTINEL_BINANCE_API_SECRET is not set"),
        "{message}"
    );
    let demo = sentinel::Config::parse(text, std::path::PathBuf::from("."), &|name| match name {
        "SENTINEL_BINANCE_API_KEY" => Some("a-real-looking-key".into()),
        "SENTINEL_BINANCE_API_SECRET" => Some(sentinel::secret::DEMO_SIGNALS_SECRET.into()),
        other => common::test_env(other),
    })
    .unwrap_err();
    assert!(format!("{demo:?}").contains("demo secret"), "{demo:?}");
}

#[actix_web::test]
async fn paper_on_live_prices_fills_at_the_live_mark_under_binances_filters() {
    let fake = FakeBinance::start().await;
    let config = binance_config(&fake, "")
        .replace("kind = \"binance-futures\"", "kind = \"paper\"\nmarket_data = \"binance-futures\"\nfee_rate = \"0\"\nslippage = \"0\"")
        .replace("api_key_env = \"TEST_BINANCE_KEY\"\n", "")
        .replace("api_secret_env = \"TEST_BINANCE_SECRET\"\n", "")
        .replace("request_timeout_ms = 800\n", "")
        .replace("poll_interval_ms = 100\n", "");
    let daemon = Daemon::start_with_env_unwaited(&config, Vec::new());
    let client = daemon.client();
    ready(&client).await;
    fake.set_mark("BTCUSDT", d("50000"));
    eventually_async(&client, "the live mark reached the paper book", |account| {
        account["venue"]["feeds"]["market"] == "stream"
    })
    .await;

    // The signal's price is not the market's: the live mark is.
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "price": 40000, "stop_loss": "2%"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    let fills = journal_fills(&client).await;
    assert_eq!(
        d(fills[0]["fill"]["price"].as_str().unwrap()),
        d("50000"),
        "{fills:?}"
    );

    // Binance's minimum notional holds in the dry run too.
    let record = client
        .act(json!({"symbol": "ETHUSDT", "action": "open_long", "position_size": "0.001"}))
        .await;
    assert!(
        record.to_string().contains("below_min_notional"),
        "{record}"
    );

    // The stop fires on the live mark.
    fake.set_mark("BTCUSDT", d("48900"));
    journaled_fill(&client, "stop_loss").await;
    assert_eq!(journal_position(&client, "BTCUSDT").await, Decimal::ZERO);
    assert!(fake.orders().is_empty(), "a dry run sends no order");
}

async fn eventually_async(client: &Client, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let account = client.get("/api/account").await;
        if check(&account) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {what}: {account}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn leverage_is_set_again_when_a_signal_asks_for_another() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    client
        .act(json!({"symbol": "ETHUSDT", "action": "open_long"}))
        .await;
    assert_eq!(fake.leverage("ETHUSDT"), 3, "the symbol's default");
    let record = client
        .act(json!({"symbol": "ETHUSDT", "action": "open_long", "leverage": 7}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(fake.leverage("ETHUSDT"), 7);
    let leverage_calls = fake
        .requests()
        .iter()
        .filter(|r| r.path == "/fapi/v1/leverage")
        .count();
    assert_eq!(leverage_calls, 2, "set once per change, not per order");
}

#[actix_web::test]
async fn an_adds_percent_legs_are_measured_from_the_average_entry() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    client.act(open_long("BTCUSDT")).await;
    // 0.01 at 50,000, then 0.01 at 52,000: the average entry is 51,000, so the 2 % stop is 49,980 and the 6 %
    // target 54,060 (both on the 0.10 tick).
    fake.set_mark("BTCUSDT", d("52000"));
    let record = client.act(open_long("BTCUSDT")).await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(fake.position("BTCUSDT"), d("0.02"));
    let legs = new_algos(&fake, "BTCUSDT");
    assert_eq!(
        legs.len(),
        2,
        "the first entry's legs were replaced: {legs:?}"
    );
    let stop = legs.iter().find(|l| l.order_type == "STOP_MARKET").unwrap();
    let target = legs
        .iter()
        .find(|l| l.order_type == "TAKE_PROFIT_MARKET")
        .unwrap();
    assert_eq!(stop.trigger_price, d("49980"));
    assert_eq!(target.trigger_price, d("54060"));
}

#[actix_web::test]
async fn update_stops_moves_the_algo_legs_that_changed() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    client.act(open_long("BTCUSDT")).await;
    let before = new_algos(&fake, "BTCUSDT");
    let old_stop = before
        .iter()
        .find(|l| l.order_type == "STOP_MARKET")
        .unwrap()
        .clone();
    let old_target = before
        .iter()
        .find(|l| l.order_type == "TAKE_PROFIT_MARKET")
        .unwrap()
        .clone();
    assert_eq!(old_stop.trigger_price, d("49000"));

    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "update_stops", "stop_loss": "49512.34"}))
        .await;
    assert_eq!(record["status"], "exits_moved", "{record}");
    // The old stop is cancelled; the new one rests at its trigger rounded up to the 0.10 tick (a long's stop a
    // little tighter, never looser); the target, not given, is the same algo order as before.
    let cancelled = fake
        .algo_orders()
        .into_iter()
        .find(|a| a.algo_id == old_stop.algo_id)
        .unwrap();
    assert_eq!(cancelled.status, "CANCELED");
    let legs = new_algos(&fake, "BTCUSDT");
    assert_eq!(legs.len(), 2, "{legs:?}");
    let stop = legs.iter().find(|l| l.order_type == "STOP_MARKET").unwrap();
    assert_eq!(stop.trigger_price, d("49512.4"));
    assert!(stop.close_position);
    assert_ne!(stop.client_algo_id, old_stop.client_algo_id);
    let target = legs
        .iter()
        .find(|l| l.order_type == "TAKE_PROFIT_MARKET")
        .unwrap();
    assert_eq!(target.algo_id, old_target.algo_id);
}

#[actix_web::test]
async fn a_trailing_stop_is_refused_before_anything_is_sent() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    // Not wired to Binance's TRAILING_STOP_MARKET yet: refused with a typed reason rather than resting a stop that
    // does not trail.
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "trailing_stop": "1%"}))
        .await;
    assert_eq!(record["status"], "rejected", "{record}");
    let text = record.to_string();
    assert!(text.contains("trailing_stop_unsupported"), "{text}");
    assert!(fake.orders().is_empty(), "no entry was sent");
    assert!(fake.algo_orders().is_empty(), "no leg was sent");
}

#[actix_web::test]
async fn a_limit_entry_is_refused_before_anything_is_sent() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "limit_price": 49000}))
        .await;
    assert_eq!(record["status"], "rejected", "{record}");
    assert!(
        record.to_string().contains("limit_entry_unsupported"),
        "{record}"
    );
    assert!(fake.orders().is_empty(), "nothing was sent");
}

#[actix_web::test]
async fn maintenance_margin_and_liquidation_follow_binances_brackets() {
    let fake = FakeBinance::start().await;
    let daemon = start(&fake, "").await;
    let client = daemon.client();
    // 1.1 BTC at about 50,000: about 55,000 of notional, in Binance's second bracket (0.5 %, less 50), where the
    // configured flat 0.4 % would say 400.
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "position_size": "1.1", "leverage": 20}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    let position = client.position("BTCUSDT").await.unwrap();
    // Valued at the mark, or at the entry before a mark is counted.
    let price = position["mark_price"]
        .as_str()
        .or(position["entry_price"].as_str())
        .unwrap();
    let notional = d(position["quantity"].as_str().unwrap()) * d(price);
    assert!(notional >= d("50000"), "{position}");
    let expected = notional * d("0.005") - d("50");
    assert_eq!(
        d(position["maintenance_margin"].as_str().unwrap()),
        expected.round_dp_with_strategy(8, rust_decimal::RoundingStrategy::AwayFromZero),
        "{position}"
    );
    assert!(position["liquidation_price"].is_string(), "{position}");
}

#[actix_web::test]
async fn readyz_is_503_until_the_venue_is_connected_and_recovery_done() {
    let fake = FakeBinance::start().await;
    // Start-up reads the position mode, the brackets and the balance: each held 500 ms here.
    for path in [
        "/fapi/v1/positionSide/dual",
        "/fapi/v1/leverageBracket",
        "/fapi/v3/balance",
    ] {
        fake.inject(Fault::Delay {
            path,
            symbol: None,
            delay: Duration::from_millis(500),
            times: 1,
        });
    }
    let daemon = Daemon::start_with_env_unwaited(&binance_config(&fake, ""), keys(&fake));
    let http = awc::Client::default();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut res) = http.get(format!("{}/readyz", daemon.api_base)).send().await {
            let status = res.status().as_u16();
            let body: Value =
                serde_json::from_slice(&res.body().await.unwrap()).unwrap_or(Value::Null);
            seen.push((status, body));
            if status == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "never ready: {seen:?}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let (first, body) = &seen[0];
    assert_eq!(*first, 503, "{seen:?}");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("recovering"),
        "{body}"
    );
    assert_eq!(seen.last().unwrap().1["ready"], true);
}
