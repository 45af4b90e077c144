//! The Binance adapter against a local server that speaks Binance USD-M futures' wire protocol: what the exchange
//! reports that is not an execution arrives as observations (a changed funding rate, a margin call as a margin ratio,
//! a position), and isolated margin is added with a signed call whose refusals come back with Binance's code.

mod fake_binance;

use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;
use tokio::sync::mpsc;

use fake_binance::FakeBinance;
use sentinel::adapters::binance_futures::BinanceFutures;
use sentinel::config::{BinanceConfig, MarketData};
use sentinel::secret::Secret;
use sentinel_actors::event::Observation;
use sentinel_actors::ledger::Ledger;
use sentinel_actors::types::Symbol;
use sentinel_actors::venue::{ExecutionVenue, RejectReason, VenueError};

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn symbol(text: &str) -> Symbol {
    Symbol::new(text).unwrap()
}

async fn connect(fake: &FakeBinance, mark_price_events: Option<Duration>) -> BinanceFutures {
    let config = BinanceConfig {
        endpoints: MarketData {
            rest_url: fake.rest_url.clone(),
            ws_url: fake.ws_url.clone(),
        },
        api_key: Secret::new(fake.api_key.clone()),
        api_secret: Secret::new(fake.api_secret.clone()),
        recv_window: Duration::from_secs(5),
        request_timeout: Duration::from_millis(800),
        margin_type: None,
        poll_interval: Duration::from_millis(100),
        mark_price_events,
    };
    let venue = BinanceFutures::connect(
        &config,
        vec![symbol("BTCUSDT"), symbol("ETHUSDT")],
        &Ledger::new(d("10000")),
    )
    .await
    .expect("the adapter connects to the fake");
    // The market and the user data streams.
    eventually("both streams open", || fake.stream_connections() >= 2).await;
    venue
}

async fn eventually<F: Fn() -> bool>(what: &str, check: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next observation that `wanted`, skipping others; fails after 10 s.
async fn next_where(
    rx: &mut mpsc::Receiver<Observation>,
    what: &str,
    wanted: impl Fn(&Observation) -> bool,
) -> Observation {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(o)) if wanted(&o) => return o,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the observation queue closed waiting for {what}"),
            Err(_) => panic!("no observation: {what}"),
        }
    }
}

fn is(o: &Observation, event_type: &str, on: &str) -> bool {
    o.event_type == event_type && o.symbol.as_ref().map(Symbol::as_str) == Some(on)
}

fn field(o: &Observation, name: &str) -> String {
    match &o.fields[name] {
        Value::Number(n) => n.to_string(),
        other => panic!("{name} is not a number: {other}"),
    }
}

#[actix_web::test]
async fn a_changed_funding_rate_arrives_once_as_an_observation() {
    let fake = FakeBinance::start().await;
    let venue = connect(&fake, Some(Duration::from_secs(3600))).await;
    let mut rx = venue
        .observations()
        .expect("the venue reports observations");
    assert!(venue.observations().is_none(), "taken once");

    let first = next_where(&mut rx, "the first BTCUSDT funding rate", |o| {
        is(o, "funding_rate", "BTCUSDT")
    })
    .await;
    assert_eq!(first.source, "binance-futures");
    assert_eq!(field(&first, "funding_rate"), "0.00010000");
    assert_eq!(field(&first, "mark_price"), "50000.00000000");
    assert!(first.fields["next_funding_time"].is_number());
    let mark = next_where(&mut rx, "a BTCUSDT mark price", |o| {
        is(o, "mark_price", "BTCUSDT")
    })
    .await;
    assert_eq!(field(&mark, "mark_price"), "50000.00000000");

    fake.set_funding_rate("BTCUSDT", d("0.00025"));
    // More frames with the same rate publish nothing more.
    fake.set_mark("BTCUSDT", d("50100"));
    fake.set_mark("BTCUSDT", d("50200"));
    let changed = next_where(&mut rx, "the changed funding rate", |o| {
        is(o, "funding_rate", "BTCUSDT")
    })
    .await;
    assert_eq!(field(&changed, "funding_rate"), "0.00025000");
    fake.set_funding_rate("ETHUSDT", d("-0.0003"));
    let eth = next_where(&mut rx, "the ETHUSDT funding rate", |o| {
        o.event_type == "funding_rate" && field(o, "funding_rate") == "-0.00030000"
    })
    .await;
    assert_eq!(eth.symbol, Some(symbol("ETHUSDT")));
    while let Ok(o) = rx.try_recv() {
        assert!(
            !(is(&o, "funding_rate", "BTCUSDT") || is(&o, "mark_price", "BTCUSDT")),
            "an unchanged rate and a throttled mark are not published again: {o:?}"
        );
    }
}

#[actix_web::test]
async fn add_margin_is_signed_and_moves_the_isolated_margin_and_a_margin_call_gives_its_ratio() {
    let fake = FakeBinance::start().await;
    let venue = connect(&fake, None).await;
    let mut rx = venue.observations().unwrap();
    fake.set_margin_type("BTCUSDT", "ISOLATED");
    fake.trade_directly("BTCUSDT", d("0.1"), d("50000"));
    let position = next_where(&mut rx, "the BTCUSDT position", |o| {
        is(o, "position", "BTCUSDT")
    })
    .await;
    assert_eq!(field(&position, "position_amount"), "0.1");
    assert_eq!(position.fields["margin_type"], "isolated");
    assert_eq!(position.fields["reason"], "ORDER");

    let added = venue
        .add_margin(symbol("BTCUSDT"), d("100"))
        .await
        .expect("Binance takes the margin");
    assert_eq!(added, d("100"));
    assert_eq!(fake.isolated_margin("BTCUSDT"), d("100"));
    assert_eq!(fake.wallet(), d("9900"));
    let request = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/fapi/v1/positionMargin")
        .expect("the call reached Binance");
    assert_eq!(request.method, "POST");
    let sent = |name: &str| {
        request
            .params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(sent("symbol").as_deref(), Some("BTCUSDT"));
    assert_eq!(sent("amount").as_deref(), Some("100"));
    assert_eq!(sent("type").as_deref(), Some("1"));
    assert_eq!(sent("positionSide"), None, "one-way mode leaves it out");
    assert!(sent("signature").is_some() && sent("timestamp").is_some());
    let transfer = next_where(&mut rx, "the margin transfer", |o| {
        is(o, "position", "BTCUSDT") && o.fields["reason"] == "MARGIN_TRANSFER"
    })
    .await;
    assert_eq!(field(&transfer, "isolated_wallet"), "100.00000000");

    // Isolated: (100 + 0.1 * (49500 - 50000)) = 50 of margin balance for 20 of maintenance margin.
    fake.margin_call("BTCUSDT", d("49500"), d("20"));
    let call = next_where(&mut rx, "the BTCUSDT margin ratio", |o| {
        is(o, "margin_ratio", "BTCUSDT")
    })
    .await;
    assert_eq!(field(&call, "margin_ratio"), "0.4");
    assert_eq!(field(&call, "margin_balance"), "50.00000000");
    assert_eq!(field(&call, "maintenance_margin"), "20.00000000");
    assert_eq!(field(&call, "mark_price"), "49500.00000000");
    assert_eq!(field(&call, "unrealized_pnl"), "-50.00000000");
    assert_eq!(call.fields["margin_type"], "ISOLATED");
    assert_eq!(call.fields["position_side"], "BOTH");

    // Crossed: the cross wallet (9900) plus 1 * (2900 - 3000).
    fake.trade_directly("ETHUSDT", d("1"), d("3000"));
    fake.margin_call("ETHUSDT", d("2900"), d("49"));
    let call = next_where(&mut rx, "the ETHUSDT margin ratio", |o| {
        is(o, "margin_ratio", "ETHUSDT")
    })
    .await;
    assert_eq!(field(&call, "margin_balance"), "9800.00000000");
    assert_eq!(field(&call, "margin_ratio"), "0.005");

    // Gone under water: the ratio is 1.
    fake.margin_call("BTCUSDT", d("48000"), d("20"));
    let call = next_where(&mut rx, "the BTCUSDT margin ratio under water", |o| {
        is(o, "margin_ratio", "BTCUSDT")
    })
    .await;
    assert_eq!(field(&call, "margin_ratio"), "1");
    assert_eq!(field(&call, "margin_balance"), "-100.00000000");
}

#[actix_web::test]
async fn add_margin_refusals_come_back_with_binances_code() {
    let fake = FakeBinance::start().await;
    let venue = connect(&fake, None).await;
    let code_of = |result: Result<Decimal, VenueError>| match result {
        Err(VenueError::Rejected {
            reason: RejectReason::Venue { code, message },
        }) => (code, message),
        other => panic!("not a refusal by Binance: {other:?}"),
    };

    fake.set_margin_type("BTCUSDT", "ISOLATED");
    let (code, message) = code_of(venue.add_margin(symbol("BTCUSDT"), d("10")).await);
    assert_eq!(
        (code, message.as_str()),
        (-4054, "Cannot add position margin: position is 0.")
    );

    fake.trade_directly("ETHUSDT", d("1"), d("3000"));
    let (code, _) = code_of(venue.add_margin(symbol("ETHUSDT"), d("10")).await);
    assert_eq!(code, -4049, "a crossed position takes no isolated margin");

    fake.trade_directly("BTCUSDT", d("0.1"), d("50000"));
    let (code, _) = code_of(venue.add_margin(symbol("BTCUSDT"), d("1000000")).await);
    assert_eq!(code, -4050, "more than the wallet holds");
    let (code, _) = code_of(venue.add_margin(symbol("BTCUSDT"), d("0")).await);
    assert_eq!(code, -4055);
    assert_eq!(fake.isolated_margin("BTCUSDT"), Decimal::ZERO);
    assert_eq!(fake.wallet(), d("10000"));
}
