//! Crash recovery with the real binary: SIGKILL at random moments under concurrent load, ten times over, then check
//! that every acknowledged signal has exactly one outcome, no client order id filled twice, and the positions equal a
//! replay of the recorded fills.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use sentinel_actors::order::Fill;
use sentinel_actors::portfolio::Portfolio;
use serde_json::{json, Value};

const ROUNDS: usize = 10;
const CLIENTS: usize = 8;
const PASSPHRASE: &str = "crash-test-passphrase";

/// A tiny deterministic generator (xorshift), seeded per run and printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

fn config() -> String {
    r#"
[server]
listen = "127.0.0.1:0"
workers = 2
rate_limit_per_address_per_minute = 1000000
rate_limit_per_address_burst = 100000

[api]
listen = "127.0.0.1:0"

[[sources]]
name = "tradingview"
kind = "tradingview"
passphrase_env = "CRASH_TEST_PASSPHRASE"
rate_limit_per_minute = 1000000
rate_limit_burst = 100000

[exchange]
kind = "paper"
starting_balance = "100000"
fee_rate = "0.0004"
slippage = "0.0005"

[[symbols]]
symbol = "BTCUSDT"
max_notional = "10000000"

[[symbols]]
symbol = "ETHUSDT"
max_notional = "10000000"
quantity_step = "0.01"

[journal]
path = "journal.db"
"#
    .to_string()
}

/// Starts the binary and waits until it listens; returns it, its webhook address and its API address.
fn start(dir: &std::path::Path) -> (Child, String, String) {
    common::start_binary(
        &dir.join("config.toml"),
        &[("CRASH_TEST_PASSPHRASE", PASSPHRASE)],
    )
}

fn body(id: &str, n: u64) -> String {
    let symbol = if n.is_multiple_of(2) {
        "BTCUSDT"
    } else {
        "ETHUSDT"
    };
    let price = if symbol == "BTCUSDT" {
        40000 + (n % 50) * 10
    } else {
        2000 + n % 40
    };
    let action = match n % 5 {
        0 | 1 => json!({"action":"open_long","position_size":"0.02"}),
        2 => json!({"action":"open_short","position_size":"0.01"}),
        3 => json!({"action":"close"}),
        _ => json!({}),
    };
    let mut body =
        json!({"passphrase": PASSPHRASE, "symbol": symbol, "price": price.to_string(), "id": id});
    body.as_object_mut()
        .unwrap()
        .extend(action.as_object().unwrap().clone());
    body.to_string()
}

/// One client: posts signals until told to stop or the daemon dies; records what was acknowledged.
fn client(
    base: String,
    name: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, String)>>>,
) {
    actix_web::rt::System::new().block_on(async move {
        let http = awc::Client::builder()
            .timeout(Duration::from_secs(5))
            .finish();
        let mut n = 0u64;
        'signals: while !stop.load(Ordering::Relaxed) {
            let id = format!("{name}-{n}");
            let body = body(&id, n);
            n += 1;
            loop {
                let sent = http
                    .post(format!("{base}/webhook/tradingview"))
                    .insert_header(("content-type", "application/json"))
                    .send_body(body.clone())
                    .await;
                match sent {
                    Ok(res) if res.status().is_success() => {
                        acked
                            .lock()
                            .unwrap()
                            .push((format!("tradingview:{id}"), body));
                        break;
                    }
                    // The backlog is full (recovered signals fill it after a kill): nothing was recorded, and
                    // the sender does what a 503 with Retry-After asks, sends the same delivery again shortly.
                    Ok(res) if res.status() == 503 => {
                        assert!(
                            res.headers().contains_key("retry-after"),
                            "{id}: 503 without Retry-After"
                        );
                        if stop.load(Ordering::Relaxed) {
                            break 'signals;
                        }
                        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(res) => panic!("{id}: unexpected status {}", res.status()),
                    Err(_) => break 'signals, // killed
                }
            }
        }
    });
}

fn pending(conn: &rusqlite::Connection) -> i64 {
    conn.query_row(
        "SELECT COUNT(*) FROM signals WHERE status IS NULL",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn acknowledged_signals_survive_sigkill_and_fill_once() {
    let started = Instant::now();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), config()).unwrap();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();

    for round in 0..ROUNDS {
        let (mut child, base, _) = start(dir.path());
        // Deliveries acknowledged before the last crash are duplicates now, never new signals.
        let earlier: Vec<(String, String)> = acked
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(3)
            .cloned()
            .collect();
        actix_web::rt::System::new().block_on(async {
            for (id, body) in &earlier {
                let mut res = awc::Client::default()
                    .post(format!("{base}/webhook/tradingview"))
                    .insert_header(("content-type", "application/json"))
                    .send_body(body.clone())
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200, "{id} after a restart");
                let answer: Value = res.json().await.unwrap();
                assert_eq!(answer["status"], "duplicate");
                assert_eq!(answer["signal_id"], id.as_str());
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (base, stop, acked) = (base.clone(), stop.clone(), acked.clone());
                std::thread::spawn(move || client(base, format!("r{round}c{c}"), stop, acked))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.between(50, 500)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().expect("client thread");
        }
    }

    // A last start: it finishes what was acknowledged but not done.
    let (mut child, _, api) = start(dir.path());
    let conn = rusqlite::Connection::open(dir.path().join("journal.db")).unwrap();
    let final_start = Instant::now();
    let deadline = final_start + Duration::from_secs(120);
    while pending(&conn) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} signals still pending",
            pending(&conn)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "pending finished {:?} after the last start",
        final_start.elapsed()
    );
    let positions: Value = actix_web::rt::System::new().block_on(async {
        awc::Client::default()
            .get(format!("{api}/api/positions"))
            // Paper trading without SENTINEL_READ_TOKEN: the public demo read token.
            .bearer_auth(sentinel::config::DEMO_READ_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let acked = acked.lock().unwrap();
    let acked_ids: HashSet<&str> = acked.iter().map(|(id, _)| id.as_str()).collect();
    assert!(
        acked_ids.len() > ROUNDS * 5,
        "too little traffic to mean anything: {}",
        acked_ids.len()
    );

    // Every acknowledged signal is in the journal with exactly one outcome.
    let mut outcomes = conn
        .prepare(
            "SELECT s.signal_id, s.status, (SELECT COUNT(*) FROM events e WHERE e.signal_id = s.signal_id AND e.kind = 'signal_finished')
             FROM signals s",
        )
        .unwrap();
    let rows: BTreeMap<String, (Option<String>, i64)> = outcomes
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for id in &acked_ids {
        let (status, count) = rows
            .get(*id)
            .unwrap_or_else(|| panic!("{id} was acknowledged but is not in the journal"));
        assert!(status.is_some(), "{id} has no outcome");
        assert_eq!(*count, 1, "{id} has {count} outcomes");
    }

    // No client order id filled twice: none recorded twice, and none refused as a second fill (a diagnostic).
    let duplicates: i64 = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM diagnostics WHERE kind = 'duplicate_fill')
                  + (SELECT COUNT(*) FROM events WHERE kind = 'filled' AND client_order_id IN
                        (SELECT client_order_id FROM events WHERE kind = 'filled'
                         GROUP BY client_order_id HAVING COUNT(*) > 1))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(duplicates, 0);

    // The positions equal a replay of the recorded fills.
    let mut replay = Portfolio::new(Decimal::from(100_000));
    let mut fills = conn
        .prepare("SELECT data FROM events WHERE kind = 'filled' ORDER BY seq")
        .unwrap();
    let mut count = 0;
    for data in fills.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        let data: Value = serde_json::from_str(&data.unwrap()).unwrap();
        let fill: Fill = serde_json::from_value(data["fill"].clone()).unwrap();
        replay.apply_fill(&fill);
        count += 1;
    }
    assert!(count > 0, "no fills recorded");
    let served: BTreeMap<String, String> = positions["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let sign = if p["side"] == "short" { "-" } else { "" };
            (
                p["symbol"].as_str().unwrap().to_string(),
                format!("{sign}{}", p["quantity"].as_str().unwrap()),
            )
        })
        .collect();
    let replayed: BTreeMap<String, String> = replay
        .positions
        .iter()
        .filter(|(_, p)| !p.is_flat())
        .map(|(s, p)| (s.to_string(), p.quantity.normalize().to_string()))
        .collect();
    assert_eq!(served, replayed);
    println!(
        "{} acknowledged signals, {count} fills, {ROUNDS} kills, {:?}",
        acked_ids.len(),
        started.elapsed()
    );
}
