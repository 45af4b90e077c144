//! The spine over real HTTP: admission control, the candle-close burst, one daemon per journal, a journal from the
//! previous schema, and venue calls that do not hold each other up.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{Daemon, PASSPHRASE};
use futures_util::future::join_all;
use serde_json::{json, Value};

fn entry(symbol: &str, id: &str) -> Value {
    json!({"symbol": symbol, "action": "open_long", "position_size": "0.01", "price": "100", "id": id,
           "passphrase": PASSPHRASE})
}

/// POSTs a TradingView body; the status, the `Retry-After` header and the JSON answer.
async fn post(http: &awc::Client, base: &str, body: &Value) -> (StatusCode, Option<String>, Value) {
    let mut res = http
        .post(format!("{base}/webhook/tradingview"))
        .insert_header(("content-type", "application/json"))
        .send_body(body.to_string())
        .await
        .expect("request sent");
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let json = serde_json::from_slice(&res.body().await.unwrap()).unwrap_or(Value::Null);
    (res.status(), retry, json)
}

fn http() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish()
}

#[actix_web::test]
async fn a_full_backlog_answers_503_and_loses_nothing_acknowledged() {
    // Every BTCUSDT order takes the paper venue a second: the backlog fills at once.
    let text = common::config(
        "fee_rate = \"0\"\nslippage = \"0\"\nlatency_ms_by_symbol = { BTCUSDT = 1000 }",
        "",
    )
    .replacen("workers = 1\n", "workers = 1\nmax_pending_signals = 3\n", 1);
    let daemon = Daemon::start(&text);
    let c = daemon.client();
    let http = http();
    let bodies: Vec<Value> = (0..8).map(|i| entry("BTCUSDT", &format!("b{i}"))).collect();
    let answers = join_all(bodies.iter().map(|b| post(&http, &daemon.base, b))).await;

    let accepted: Vec<String> = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::ACCEPTED)
        .map(|(_, _, a)| a["signal_id"].as_str().unwrap().to_string())
        .collect();
    let shed: Vec<usize> = (0..answers.len())
        .filter(|&i| answers[i].0 == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(accepted.len() + shed.len(), 8, "{answers:?}");
    assert!(
        accepted.len() <= 3,
        "at most the bound is admitted: {answers:?}"
    );
    assert!(!shed.is_empty(), "{answers:?}");
    for &i in &shed {
        let (_, retry, answer) = &answers[i];
        assert_eq!(answer["error"]["code"], "overloaded", "{answer}");
        assert!(
            retry.as_deref().is_some_and(|r| r.parse::<u64>().is_ok()),
            "Retry-After"
        );
    }

    // The backlog is visible while it lasts.
    let account = c.get("/api/account").await;
    assert!(
        account["backlog"]["pending"].as_u64().unwrap() >= 1,
        "{account}"
    );
    assert_eq!(account["backlog"]["limit"], 3);
    let pending = c.get("/api/signals?status=pending").await;
    assert!(pending["pending"].as_u64().unwrap() >= 1, "{pending}");

    // Everything acknowledged finishes; nothing shed was recorded.
    for id in &accepted {
        assert_eq!(c.done(id).await["status"], "filled");
    }
    let signals = c.get("/api/signals?limit=1000").await;
    let recorded: Vec<&str> = signals["signals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["signal"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(recorded.len(), accepted.len(), "{recorded:?}");
    // A shed webhook sent again once the backlog drained is accepted.
    let (status, _, _) = post(&http, &daemon.base, &bodies[shed[0]]).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // The daemon's own histograms counted every acknowledged signal, and each fill took the venue's second.
    let latency = c.get("/api/latency").await;
    assert_eq!(
        latency["ack"]["count"],
        accepted.len() as u64 + 1,
        "{latency}"
    );
    assert!(latency["signal_to_fill"]["count"].as_u64().unwrap() >= accepted.len() as u64);
    assert!(
        latency["signal_to_fill"]["p50"].as_u64().unwrap() >= 1_000_000,
        "{latency}"
    );
    assert!(
        latency["signal_to_order"]["p50"].as_u64().unwrap()
            <= latency["signal_to_fill"]["p50"].as_u64().unwrap()
    );
}

#[actix_web::test]
async fn a_candle_close_burst_of_fifty_symbols_is_accepted_whole() {
    // The default limits; fifty symbols, three alerts each, all at once (a strategy on every symbol at a candle
    // close: entry, and the alerts of two more timeframes).
    let symbols: String = (0..50)
        .map(|i| format!("[[symbols]]\nsymbol = \"SYM{i}USDT\"\ndefault_size = \"1\"\nmax_notional = \"1000000\"\n"))
        .collect();
    let daemon = Daemon::start(&common::config("", &symbols));
    let http = http();
    let bodies: Vec<Value> = (0..150)
        .map(|i| entry(&format!("SYM{}USDT", i % 50), &format!("c{i}")))
        .collect();
    let answers = join_all(bodies.iter().map(|b| post(&http, &daemon.base, b))).await;
    let refused: Vec<_> = answers
        .iter()
        .filter(|(s, _, _)| *s != StatusCode::ACCEPTED)
        .collect();
    assert!(refused.is_empty(), "{} refused: {refused:?}", refused.len());
    let c = daemon.client();
    for (_, _, answer) in &answers {
        assert_eq!(
            c.done(answer["signal_id"].as_str().unwrap()).await["status"],
            "filled"
        );
    }
}

#[actix_web::test]
async fn a_second_daemon_on_the_same_journal_is_refused() {
    let text = common::free_config();
    let daemon = Daemon::start(&text);
    let config = daemon.dir.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    let second = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["run", "--config"])
        .env("TEST_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .arg(&config)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains(&std::process::id().to_string()), "{said}");
    assert!(said.contains("sentinel.db"), "{said}");

    // Once the first stops, the journal is free; and a killed daemon's lock does not outlive it.
    let dir = daemon.stop_keeping_journal();
    for _ in 0..2 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sentinel"))
            .args(["run", "--config"])
            .env("TEST_ADMIN_TOKEN", common::ADMIN_TOKEN)
            .arg(dir.path().join("config.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(child.try_wait().unwrap().is_none(), "it runs");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[actix_web::test]
async fn a_journal_from_the_previous_schema_migrates_and_recovers() {
    // Written by the previous version on the default configuration: a BTCUSDT long with a stop, an ETHUSDT short,
    // a SOLUSDT round trip, BTCUSDT paused, and an ETHUSDT close acknowledged but not yet processed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.db");
    std::fs::copy("tests/fixtures/journal-v1.db", &path).unwrap();
    {
        // Its deliveries are recent, so they are still remembered.
        let conn = rusqlite::Connection::open(&path).unwrap();
        let now = sentinel_actors::types::Timestamp::now().0;
        conn.execute("UPDATE signals SET received_at = ?1", [now])
            .unwrap();
    }
    let text = std::fs::read_to_string("config.toml")
        .unwrap()
        .replace("listen = \"127.0.0.1:9470\"", "listen = \"127.0.0.1:0\"")
        .replace("SENTINEL_TRADINGVIEW_PASSPHRASE", "TEST_TV_PASSPHRASE");
    let daemon = Daemon::start_at(dir, &text);
    let c = daemon.client();

    let close = c.done("tradingview:v1-g").await;
    assert_eq!(
        close["status"], "filled",
        "the unfinished close ran: {close}"
    );
    assert!(c.position("ETHUSDT").await.is_none());
    let btc = c.position("BTCUSDT").await.unwrap();
    assert_eq!(
        (btc["side"].as_str(), btc["quantity"].as_str()),
        (Some("long"), Some("0.111"))
    );
    assert_eq!(btc["entry_price"], "45022.5");
    assert!(c.position("SOLUSDT").await.is_none());

    // Still paused, and the old delivery ids still known.
    let mut entry = json!({"symbol":"BTCUSDT","action":"open_long","price":45000,"id":"v1-new"});
    let record = c.act(entry.clone()).await;
    assert_eq!(record["outcome"]["reason"]["code"], "paused", "{record}");
    entry["id"] = json!("v1-a");
    let (status, answer) = c.tradingview(entry).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("duplicate"))
    );

    // The old history reads in the new shape.
    let story = c.get("/api/orders?limit=100").await;
    assert!(story["orders"].as_array().unwrap().len() >= 5, "{story}");
}

#[actix_web::test]
async fn a_slow_venue_call_on_one_symbol_does_not_delay_another() {
    let text = common::config(
        "fee_rate = \"0\"\nslippage = \"0\"\nlatency_ms_by_symbol = { ETHUSDT = 3000 }",
        "",
    );
    let daemon = Daemon::start(&text);
    let c = daemon.client();
    let (status, slow) = c
        .tradingview(json!({"symbol":"ETHUSDT","action":"open_long","price":3000,"id":"slow"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let started = Instant::now();
    let fast = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","price":45000,"id":"fast"}))
        .await;
    assert_eq!(fast["status"], "filled");
    // BTCUSDT filled while ETHUSDT's order was still at the venue.
    let signals = c.get("/api/signals?status=pending").await;
    let still: Vec<&str> = signals["signals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["signal"]["id"].as_str().unwrap())
        .collect();
    assert!(
        still.contains(&slow["signal_id"].as_str().unwrap()),
        "ETHUSDT still pending after {:?}: {still:?}",
        started.elapsed()
    );
    assert_eq!(
        c.done(slow["signal_id"].as_str().unwrap()).await["status"],
        "filled"
    );
}
