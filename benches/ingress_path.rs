//! The webhook hot path without the network: authenticate (HMAC over the raw body, or a TradingView passphrase),
//! parse, normalise into a `Signal`, and the idempotency check. Reports nanoseconds per webhook.
//!
//! `cargo bench --bench ingress_path`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use sentinel::auth::{HmacScheme, Request, SourceAuth};
use sentinel::payload::{normalize, Context, RawPayload, SymbolMap};
use sentinel::protect::dedupe::{Deduper, DeliveryKey};
use sentinel::secret::Secret;
use sentinel_actors::types::{SignalId, Timestamp};

const ITERATIONS: u32 = 200_000;

fn time(name: &str, mut f: impl FnMut(u32)) {
    for i in 0..ITERATIONS / 10 {
        f(i); // warm up
    }
    let started = Instant::now();
    for i in 0..ITERATIONS {
        f(i);
    }
    let per = started.elapsed() / ITERATIONS;
    println!("| {name} | {:.2} us |", per.as_secs_f64() * 1e6);
}

fn main() {
    let config =
        sentinel::Config::parse(include_str!("../config.toml"), PathBuf::from("."), &|_| {
            None
        })
        .unwrap();
    let symbols = SymbolMap::new(&config.symbols);
    let body = br#"{"symbol":"BTCUSDT","action":"open_long","leverage":5,"position_size":"10%","stop_loss":"2%","take_profit":"6%","price":45000,"id":"model-7-000123"}"#;
    let tv_body = br#"{"passphrase":"sentinel-demo-passphrase","ticker":"BINANCE:BTCUSDT.P","action":"buy","close":"45000.5","time":"2024-01-02T03:04:05Z","position_size":"5%"}"#;
    let hmac = SourceAuth::Hmac(HmacScheme {
        secrets: vec![Secret::new("a-signing-secret")],
        signature_header: "x-webhook-signature".into(),
        timestamp_header: Some("x-webhook-timestamp".into()),
        tolerance_secs: 300,
    });
    let SourceAuth::Hmac(scheme) = &hmac else {
        unreachable!()
    };
    let now = 1_700_000_000;
    let mut headers = HeaderMap::new();
    for (k, v) in scheme.sign(body, now) {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    let tradingview = config.source("tradingview").unwrap().auth.clone();
    let deduper = Deduper::new(Duration::from_secs(3600), Default::default());

    println!("| step | per webhook |");
    println!("|---|---|");
    let request = Request {
        headers: &headers,
        body,
        path_token: None,
        now,
    };
    time(
        "HMAC-SHA256 verify with signed timestamp (143-byte body)",
        |_| {
            black_box(hmac.verify_request(black_box(&request)).unwrap());
        },
    );
    time("parse JSON", |_| {
        black_box(RawPayload::parse(black_box(body)).unwrap());
    });
    let raw = RawPayload::parse(body).unwrap();
    time("normalise to a Signal (Decimal fields)", |_| {
        let ctx = Context {
            source: "signals",
            symbols: &symbols,
            signal_id: SignalId::new("signals:model-7-000123").unwrap(),
            received_at: Timestamp(0),
        };
        black_box(normalize(black_box(&raw), &ctx).unwrap());
    });
    time("idempotency check (new key)", |i| {
        let key = DeliveryKey::Id {
            source: "signals".into(),
            id: i.to_string(),
        };
        black_box(
            deduper
                .claim(vec![key], SignalId::new("s").unwrap(), Timestamp(0))
                .is_ok(),
        );
    });
    time("whole path: HMAC source", |_| {
        black_box(hmac.verify_request(&request).unwrap());
        let raw = RawPayload::parse(body).unwrap();
        let ctx = Context {
            source: "signals",
            symbols: &symbols,
            signal_id: SignalId::new("signals:model-7-000123").unwrap(),
            received_at: Timestamp(0),
        };
        black_box(normalize(&raw, &ctx).unwrap());
    });
    time("whole path: TradingView passphrase source", |_| {
        let mut raw = RawPayload::parse(black_box(tv_body)).unwrap();
        tradingview.verify_payload(&mut raw).unwrap();
        let ctx = Context {
            source: "tradingview",
            symbols: &symbols,
            signal_id: SignalId::new("tradingview:x").unwrap(),
            received_at: Timestamp(0),
        };
        black_box(normalize(&raw, &ctx).unwrap());
    });
}
