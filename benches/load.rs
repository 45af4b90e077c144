//! The load generator behind `benches/run.sh`: N keep-alive HTTP/1.1 connections on one thread, each sending plain
//! signals with their own id, HMAC-signed for an `hmac` source, spread over S symbols; or, with `--serve-bare`, the
//! bare actix-web handler the daemon is compared with.
//!
//! `cargo bench --bench load -- --addr 127.0.0.1:18080 --connections 64 --symbols 100 --duration 10`
//! `cargo bench --bench load -- --serve-bare 127.0.0.1:18090`
//!
//! The secret is read from the variable named by `--secret-env` (default `SENTINEL_BENCH_SECRET`), falling back to
//! the paper daemon's demo secret. With `--server-pid`, `--stats` and `--journal` the cell also reads the server's
//! memory and CPU time, the journal's commit counters and the journal itself; the last line printed is the cell as
//! one JSON object, appended to `--rows` for `--table`.

#[path = "load/bare.rs"]
mod bare;
#[path = "load/client.rs"]
mod client;
#[path = "load/journal.rs"]
mod journal;
#[path = "load/probe.rs"]
mod probe;
#[path = "load/table.rs"]
mod table;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use client::{unix_millis, Plan, Tally};

const DEMO_SECRET: &str = "sentinel-demo-secret";

#[derive(Parser)]
#[command(about = "Signed-signal load over keep-alive HTTP/1.1, or the bare comparison server.")]
struct Args {
    /// Serve the bare handler on this address instead of sending load.
    #[arg(long, value_name = "ADDR")]
    serve_bare: Option<SocketAddr>,
    /// Print the Markdown table of the cells in this file of JSON lines, and exit.
    #[arg(long, value_name = "FILE")]
    table: Option<String>,
    /// Time fsync in this folder, print it (and append it to --rows), and exit.
    #[arg(long, value_name = "DIR")]
    fsync_probe: Option<PathBuf>,
    /// The daemon's webhook listener.
    #[arg(long, default_value = "127.0.0.1:9470")]
    addr: SocketAddr,
    /// The daemon's API listener, for --stats.
    #[arg(long, default_value = "127.0.0.1:9471")]
    api_addr: SocketAddr,
    /// Environment variable holding the API's read token, for --stats (unset: the paper exchange's demo token).
    #[arg(long, default_value = "SENTINEL_READ_TOKEN")]
    read_token_env: String,
    /// The source's webhook path.
    #[arg(long, default_value = "/webhook/bench")]
    path: String,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Symbols SYM1..SYMn, as the daemon's configuration must name them.
    #[arg(long, default_value_t = 100)]
    symbols: usize,
    #[arg(long, default_value = "SYM")]
    symbol_prefix: String,
    /// Seconds to send for; requests in flight at the end still count.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many requests in all, if that comes before the duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Milliseconds each connection waits after an answer: measures an otherwise idle server.
    #[arg(long)]
    interval_ms: Option<f64>,
    /// Base units per signal.
    #[arg(long, default_value = "0.001")]
    volume: String,
    /// Environment variable holding the source's HMAC secret.
    #[arg(long, default_value = "SENTINEL_BENCH_SECRET")]
    secret_env: String,
    /// Start of every signal id (default: the start time in Unix milliseconds).
    #[arg(long)]
    tag: Option<String>,
    /// The server's name in the table.
    #[arg(long, default_value = "sentinel")]
    server: String,
    /// The server's process id: its memory (idle, peak, after) and CPU time during the load.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Read the daemon's journal counters (`/api/security`) before and after, and its latency histograms
    /// (`/api/latency`) after.
    #[arg(long)]
    stats: bool,
    /// The daemon's journal file, read after the load.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Seconds to wait after the load before the "after" readings, so pending signals can finish.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Append the cell's JSON line to this file.
    #[arg(long)]
    rows: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = if let Some(addr) = args.serve_bare {
        println!("bare actix-web handler on {addr}, 1 worker");
        bare::serve(addr).map_err(|e| format!("cannot serve on {addr}: {e}"))
    } else if let Some(rows) = &args.table {
        table::print(rows).map_err(|e| format!("cannot read {rows}: {e}"))
    } else if let Some(dir) = &args.fsync_probe {
        probe::fsync_millis(dir)
            .map_err(|e| format!("cannot time fsync in {}: {e}", dir.display()))
            .and_then(|ms| {
                println!(
                    "one 4 KiB write + fdatasync in {}: p50 {ms:.3} ms",
                    dir.display()
                );
                append(&args, &json!({ "fsync_ms": ms }))
            })
    } else {
        measure(&args)
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// One cell: the server's state before, the load, and the server's state after.
fn measure(args: &Args) -> Result<(), String> {
    if args.connections == 0 || args.symbols == 0 || args.duration.is_nan() || args.duration <= 0.0
    {
        return Err("--connections, --symbols and --duration must be above 0".into());
    }
    let secret = std::env::var(&args.secret_env).unwrap_or_else(|_| DEMO_SECRET.to_string());
    let read_token = std::env::var(&args.read_token_env)
        .unwrap_or_else(|_| sentinel::config::DEMO_READ_TOKEN.to_string());
    let pid = args.server_pid.map(|p| p.to_string());
    let pid = pid.as_deref();
    // One thread: `taskset` pins the generator to one core, and no locks are needed between connections.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let stats = |runtime: &tokio::runtime::Runtime| match args.stats {
        true => runtime.block_on(probe::journal_counters(args.api_addr, &read_token)),
        false => None,
    };

    let rss_idle = pid.and_then(|p| probe::memory_kib(p, "VmRSS"));
    let commits_before = stats(&runtime);
    let server_cpu_before = pid.and_then(probe::cpu_seconds);
    let threads_before = pid.map(probe::thread_cpu_seconds).unwrap_or_default();
    let cpu_before = probe::cpu_seconds("self");
    let cores_before = probe::core_jiffies();
    let started_ms = unix_millis();
    let plan = Arc::new(Plan {
        addr: args.addr,
        path: args.path.clone(),
        symbols: (1..=args.symbols)
            .map(|k| format!("{}{k}", args.symbol_prefix))
            .collect(),
        secret: secret.into_bytes(),
        volume: args.volume.clone(),
        tag: args.tag.clone().unwrap_or_else(|| started_ms.to_string()),
        deadline: Instant::now() + Duration::from_secs_f64(args.duration),
        max_requests: args.requests,
        interval: args
            .interval_ms
            .map(|ms| Duration::from_secs_f64(ms / 1000.0)),
    });
    let started = Instant::now();
    let tally = runtime.block_on(async {
        let next = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..args.connections)
            .map(|_| tokio::spawn(client::run(plan.clone(), next.clone())))
            .collect();
        let mut tally = Tally::default();
        for task in tasks {
            tally.merge(task.await.expect("a connection task does not panic"));
        }
        tally
    });
    let elapsed = started.elapsed().as_secs_f64();
    let ended_ms = unix_millis();
    let load_cpu = probe::cpu_seconds("self")
        .zip(cpu_before)
        .map(|(a, b)| 100.0 * (a - b) / elapsed);
    let server_cpu = pid
        .and_then(probe::cpu_seconds)
        .zip(server_cpu_before)
        .map(|(a, b)| 100.0 * (a - b) / elapsed);
    let rss_peak = pid.and_then(|p| probe::memory_kib(p, "VmHWM"));
    // Per thread: where the server spent its core (the HTTP worker, the journal writer, the actors).
    let mut server_threads: Vec<(String, f64)> = pid
        .map(probe::thread_cpu_seconds)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, after)| {
            let before = threads_before
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0.0, |t| t.1);
            (name, 100.0 * (after - before) / elapsed)
        })
        .filter(|(_, pct)| *pct >= 0.5)
        .collect();
    server_threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    let cores_busy = probe::busy_percent(&cores_before, &probe::core_jiffies());

    std::thread::sleep(Duration::from_secs_f64(args.settle.max(0.0)));
    let rss_after = pid.and_then(|p| probe::memory_kib(p, "VmRSS"));
    let commits_after = stats(&runtime);
    let daemon_latency = match args.stats {
        true => runtime.block_on(probe::daemon_latency(args.api_addr, &read_token)),
        false => Value::Null,
    };
    let (writes_per_commit, commit_ms) = match (commits_before, commits_after) {
        (Some(before), Some(after)) => before.per_commit(&after),
        _ => (None, None),
    };
    let journal = match &args.journal {
        Some(path) => journal::analyse(path, started_ms, ended_ms)
            .map_err(|e| format!("cannot read the journal {}: {e}", path.display()))?,
        None => Value::Null,
    };

    let mut lat = tally.ok_micros;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).max(1) - 1)
            .copied()
    };
    let sent = tally.statuses.values().sum::<u64>() + tally.io_errors;
    let row = json!({
        "server": args.server,
        "connections": args.connections,
        "symbols": args.symbols,
        "interval_ms": args.interval_ms,
        "elapsed_s": elapsed,
        "started_ms": started_ms,
        "ended_ms": ended_ms,
        "sent": sent,
        "ok": lat.len(),
        "ok_per_s": lat.len() as f64 / elapsed,
        "statuses": tally.statuses,
        "io_errors": tally.io_errors,
        "closed_by_server": tally.closed_by_server,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": lat.last(),
        "load_cpu_pct": load_cpu,
        "server_cpu_pct": server_cpu,
        "cores_busy_pct": cores_busy,
        "server_threads_cpu_pct": server_threads.iter().map(|(n, p)| json!({ "thread": n, "cpu_pct": p })).collect::<Vec<_>>(),
        "rss_kib": { "idle": rss_idle, "peak": rss_peak, "after": rss_after },
        "writes_per_commit": writes_per_commit,
        "commit_ms_mean": commit_ms,
        "daemon_latency": daemon_latency,
        "journal": journal,
    });
    summarise(&row);
    println!("{row}");
    append(args, &row)
}

fn summarise(row: &Value) {
    let ms = |key: &str| match row[key].as_f64() {
        Some(us) => format!("{:.3} ms", us / 1000.0),
        None => "n/a".to_string(),
    };
    println!(
        "{} connections, {} symbols, {:.1} s: sent {}, answers {}, io errors {}",
        row["connections"],
        row["symbols"],
        row["elapsed_s"].as_f64().unwrap_or(0.0),
        row["sent"],
        row["statuses"],
        row["io_errors"]
    );
    println!(
        "  2xx/s {:.0}; latency p50 {}  p99 {}  p99.9 {}  max {}",
        row["ok_per_s"].as_f64().unwrap_or(0.0),
        ms("p50_us"),
        ms("p99_us"),
        ms("p999_us"),
        ms("max_us")
    );
    if let Some(threads) = row["server_threads_cpu_pct"]
        .as_array()
        .filter(|t| !t.is_empty())
    {
        let each: Vec<String> = threads
            .iter()
            .map(|t| {
                format!(
                    "{} {:.0} %",
                    t["thread"].as_str().unwrap_or("?"),
                    t["cpu_pct"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        println!("  server threads: {}", each.join(", "));
    }
    let daemon = &row["daemon_latency"];
    if !daemon.is_null() {
        let span = |name: &str| {
            let h = &daemon[name];
            let ms = |key: &str| {
                h[key]
                    .as_f64()
                    .map_or("n/a".into(), |us| format!("{:.3}", us / 1000.0))
            };
            format!(
                "{name} p50 {} p99 {} p99.9 {} ms (n {})",
                ms("p50"),
                ms("p99"),
                ms("p999"),
                h["count"]
            )
        };
        println!(
            "  daemon's own histograms: {}",
            ["ack", "signal_to_order", "signal_to_fill"]
                .map(span)
                .join("; ")
        );
    }
    if let (Some(writes), Some(ms)) = (
        row["writes_per_commit"].as_f64(),
        row["commit_ms_mean"].as_f64(),
    ) {
        println!("  journal: {writes:.1} writes per commit, {ms:.3} ms per commit");
    }
    let journal = &row["journal"];
    if !journal.is_null() {
        println!(
            "  journal: {} received, {} finished in the window, {} pending at its end; outcomes {}",
            journal["received"],
            journal["finished"],
            journal["pending_at_end"],
            journal["statuses"]
        );
    }
}

fn append(args: &Args, row: &Value) -> Result<(), String> {
    let Some(path) = &args.rows else {
        return Ok(());
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{row}"))
        .map_err(|e| format!("cannot append to {}: {e}", path.display()))
}
