//! Restart to ready on a large journal: writes a journal of about one million events (signals with their decision,
//! approval, fill and outcome, snapshots as the daemon takes them), then starts the real binary on it and times the
//! moment `/healthz` answers.
//!
//! `cargo bench --bench recovery` (optionally `-- <signals>`; default 250999 signals: 1,003,996 events, and the
//! worst case of 999 fills after the last snapshot).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rusqlite::params;
use rust_decimal::Decimal;
use sentinel_actors::exchange::SNAPSHOT_EVERY;
use sentinel_actors::gateway::Gateway;
use sentinel_actors::order::{Fill, FillReason, OrderRequest, Protection, SignalOutcome};
use sentinel_actors::paper::{PaperCosts, PaperGateway};
use sentinel_actors::portfolio::Portfolio;
use sentinel_actors::signal::{Action, EntryParams, Intent, Signal};
use sentinel_actors::types::{
    ClientOrderId, Leverage, PositionSide, Price, Quantity, SignalId, Symbol, Timestamp,
};
use serde_json::json;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[[sources]]
name = "tradingview"
kind = "tradingview"
passphrase_env = "BENCH_PASSPHRASE"

[exchange]
kind = "paper"
starting_balance = "1000000000"

[[symbols]]
symbol = "BTCUSDT"
max_notional = "1000000000000"

[[symbols]]
symbol = "ETHUSDT"
max_notional = "1000000000000"

[journal]
path = "journal.db"
"#;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// Writes `signals` finished signals (5 events each: decision, approval, fill, outcome + the signal row) the way
/// the daemon lays them out, with a snapshot every SNAPSHOT_EVERY fills.
fn write_journal(path: &std::path::Path, signals: usize) -> usize {
    // Let the daemon's own code create the schema.
    drop(sentinel::journal::open(Some(path)).unwrap());
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    let tx = conn.transaction().unwrap();
    let now = Timestamp::now().0;
    let mut portfolio = Portfolio::new(d("1000000000"));
    let mut gateway = PaperGateway::new(PaperCosts {
        fee_rate: d("0.0004"),
        slippage: d("0"),
    });
    let mut events = 0;
    {
        let mut signal_row = tx
            .prepare("INSERT INTO signals (signal_id, source, symbol, action, received_at, delivery_key, payload, signal, status, outcome, finished_at) VALUES (?1, 'tradingview', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?4)")
            .unwrap();
        let mut event = tx
            .prepare("INSERT INTO events (at, kind, signal_id, symbol, client_order_id, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .unwrap();
        let mut snapshot = tx
            .prepare("INSERT INTO snapshots (at, upto_event, state) VALUES (?1, (SELECT MAX(seq) FROM events WHERE kind = 'fill'), ?2)")
            .unwrap();
        for n in 0..signals {
            let symbol = Symbol::new(if n % 2 == 0 { "BTCUSDT" } else { "ETHUSDT" }).unwrap();
            let side = if n % 4 < 2 {
                PositionSide::Long
            } else {
                PositionSide::Short
            };
            let id = SignalId::new(&format!("tradingview:bench-{n}")).unwrap();
            let at = now - (signals - n) as i64;
            let price = Price::new(Decimal::from(40_000 + (n % 1000) as i64)).unwrap();
            let signal = Signal {
                id: id.clone(),
                source: "tradingview".into(),
                symbol: symbol.clone(),
                received_at: Timestamp(at),
                sent_at: None,
                price: Some(price),
                intent: Intent::Open {
                    side,
                    order: EntryParams::default(),
                },
                comment: None,
            };
            let order = OrderRequest {
                client_order_id: ClientOrderId::derive(&id, 0),
                signal_id: id.clone(),
                symbol: symbol.clone(),
                action: Action::OpenLong,
                side: side.entry_side(),
                quantity: Quantity::new(d("0.01")).unwrap(),
                reduce_only: false,
                leverage: Leverage::ONE,
                reference_price: price,
                protection: Protection::default(),
            };
            let fill = Fill {
                client_order_id: order.client_order_id.clone(),
                symbol: symbol.clone(),
                side: order.side,
                quantity: order.quantity,
                price,
                fee: d("0.16"),
                reason: FillReason::Signal,
                at: Timestamp(at),
            };
            gateway.restore_fill(Some(&order), &fill, true);
            portfolio.apply_fill(&fill);
            let position = portfolio.positions[&symbol].clone();
            let outcome = serde_json::to_string(&SignalOutcome::from_orders(vec![
                sentinel_actors::order::OrderOutcome::Filled {
                    order: order.clone(),
                    fill: fill.clone(),
                },
            ]))
            .unwrap();
            let payload = json!({"symbol": symbol, "action": "open_long", "price": price, "id": format!("bench-{n}")}).to_string();
            signal_row
                .execute(params![
                    id.as_str(),
                    symbol.as_str(),
                    "open_long",
                    at,
                    format!("id:tradingview:bench-{n}"),
                    payload,
                    serde_json::to_string(&signal).unwrap(),
                    "filled",
                    outcome
                ])
                .unwrap();
            let cid = order.client_order_id.as_str();
            for (kind, data, cid) in [
                ("decision", json!({ "orders": [&order] }), None),
                ("approval", json!({ "order": &order }), Some(cid)),
                (
                    "fill",
                    json!({ "order": &order, "fill": &fill, "position": position }),
                    Some(cid),
                ),
                ("outcome", serde_json::from_str(&outcome).unwrap(), None),
            ] {
                event
                    .execute(params![
                        at,
                        kind,
                        id.as_str(),
                        symbol.as_str(),
                        cid,
                        data.to_string()
                    ])
                    .unwrap();
                events += 1;
            }
            if (n + 1) % SNAPSHOT_EVERY as usize == 0 {
                let state = json!({ "portfolio": portfolio, "gateway": gateway.snapshot() });
                snapshot.execute(params![at, state.to_string()]).unwrap();
            }
        }
    }
    tx.execute(
        "DELETE FROM snapshots WHERE seq < (SELECT MAX(seq) FROM snapshots)",
        [],
    )
    .unwrap();
    tx.commit().unwrap();
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE").ok();
    events
}

fn main() {
    let signals: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(250_999);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
    let path = dir.path().join("journal.db");
    let written = Instant::now();
    let events = write_journal(&path, signals);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "journal: {signals} signals, {events} events, {:.0} MiB, written in {:.1} s",
        size as f64 / 1048576.0,
        written.elapsed().as_secs_f64()
    );

    let binary = std::env::var("SENTINEL_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sentinel").to_string());
    for attempt in 1..=3 {
        let started = Instant::now();
        let mut child = Command::new(&binary)
            .args(["run", "--config"])
            .arg(dir.path().join("config.toml"))
            .env("BENCH_PASSPHRASE", "bench-passphrase-0123")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut recovered = String::new();
        let mut address = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("ERROR") || line.starts_with("error") {
                panic!("the daemon failed: {line}");
            }
            if line.contains("state recovered") {
                recovered = line
                    .split("pending")
                    .nth(1)
                    .map(|s| format!("pending{s}"))
                    .unwrap_or_default();
            }
            if let Some(rest) = line.split("address=").nth(1) {
                address = rest.split_whitespace().next().unwrap().to_string();
                break;
            }
        }
        assert!(!address.is_empty(), "the daemon exited before listening");
        // Ready: /healthz answers.
        let ready = loop {
            if let Ok(mut s) = std::net::TcpStream::connect(&address) {
                use std::io::{Read, Write};
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.1 200") {
                    break started.elapsed();
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        println!(
            "restart {attempt}: ready in {:.0} ms ({recovered})",
            ready.as_secs_f64() * 1e3
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
