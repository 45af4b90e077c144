//! Durable webhook throughput and acknowledgement latency over real HTTP on loopback, 64 concurrent connections,
//! with the journal on disk (WAL, synchronous=FULL) and with the journal in memory (nothing fsynced).
//!
//! `cargo bench --bench ingest` (optionally `-- <requests per mode>`; default 20000).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// The integration tests' harness: the real daemon on 127.0.0.1:0, its journal in a temporary folder.
#[path = "../tests/common/mod.rs"]
mod common;

use common::{Daemon, PASSPHRASE};

const CONNECTIONS: usize = 64;
const CLIENT_THREADS: usize = 4;

fn config(journal: &str) -> String {
    format!(
        r#"
[server]
workers = 2
rate_limit_per_address_per_minute = 1000000
rate_limit_per_address_burst = 100000

[[sources]]
name = "tradingview"
kind = "tradingview"
passphrase_env = "TEST_TV_PASSPHRASE"
rate_limit_per_minute = 1000000
rate_limit_burst = 100000

[exchange]
kind = "paper"

[[symbols]]
symbol = "BTCUSDT"

[[symbols]]
symbol = "ETHUSDT"

[journal]
path = "{journal}"
"#
    )
}

struct Run {
    writes_per_commit: f64,
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn run(journal: &str, requests: usize) -> Run {
    let daemon = Daemon::start(&config(journal));
    let base = daemon.base.clone();

    let latencies = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let per_connection = requests / CONNECTIONS;
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let (base, latencies) = (base.clone(), latencies.clone());
            std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let connections = (0..CONNECTIONS / CLIENT_THREADS).map(|c| {
                        let (base, latencies) = (base.clone(), latencies.clone());
                        async move {
                            // One client per connection: requests on it are sequential, as a sender's would be.
                            let http = awc::Client::builder()
                                .connector(awc::Connector::new().limit(1))
                                .timeout(Duration::from_secs(30))
                                .finish();
                            let mut mine = Vec::with_capacity(per_connection);
                            for i in 0..per_connection {
                                let symbol = if i % 2 == 0 { "BTCUSDT" } else { "ETHUSDT" };
                                let body = format!(
                                    r#"{{"passphrase":"{PASSPHRASE}","symbol":"{symbol}","price":"{}","id":"t{t}c{c}n{i}"}}"#,
                                    40000 + i % 100
                                );
                                let sent = Instant::now();
                                let res = http
                                    .post(format!("{base}/webhook/tradingview"))
                                    .insert_header(("content-type", "application/json"))
                                    .send_body(body)
                                    .await
                                    .unwrap();
                                assert_eq!(res.status(), 202);
                                mine.push(sent.elapsed());
                            }
                            latencies.lock().unwrap().extend(mine);
                        }
                    });
                    futures_util::future::join_all(connections).await;
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    let security = actix_web::rt::System::new().block_on(daemon.client().get("/api/security"));
    let journal = &security["journal"];
    let writes_per_commit =
        journal["writes"].as_f64().unwrap() / journal["commits"].as_f64().unwrap().max(1.0);
    drop(daemon);
    let mut latencies = Arc::try_unwrap(latencies).unwrap().into_inner().unwrap();
    latencies.sort();
    Run {
        writes_per_commit,
        requests: latencies.len(),
        elapsed,
        latencies,
    }
}

fn main() {
    let requests: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    println!("{requests} webhooks per mode, {CONNECTIONS} connections, daemon and load generator on one machine");
    println!("| journal | acknowledged/s | p50 | p99 | max | journal writes per commit |");
    println!("|---|---|---|---|---|---|");
    for (name, path) in [
        ("file, synchronous=FULL", "sentinel.db"),
        ("in memory (no fsync)", ":memory:"),
    ] {
        let r = run(path, requests);
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} |",
            r.requests as f64 / r.elapsed.as_secs_f64(),
            percentile(&r.latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&r.latencies, 0.99).as_secs_f64() * 1e3,
            r.latencies.last().unwrap().as_secs_f64() * 1e3,
            r.writes_per_commit,
        );
    }
}
