//! Restart to ready on a large journal: builds a journal of about a million events through the daemon's own journal
//! code (each signal accepted, decided, approved, sent, filled and finished, with a checkpoint every 50,000 events as
//! the ledger actor stores them), then starts the real binary on it three times and times the moment `/healthz`
//! answers.
//!
//! `cargo bench --bench recovery` (optionally `-- <signals>`; the default 174,999 signals make 1,049,994 events whose
//! last checkpoint is at 1,000,000, so a restart folds 49,994 events: near the most that checkpoints leave).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use sentinel::journal::{self, Journal};
use sentinel::protect::dedupe::DeliveryKey;
use sentinel_actors::event::{Delivery, Event, Offset, Stamped, Verdict};
use sentinel_actors::ledger::Ledger;
use sentinel_actors::log::{EventLog, Receipt, SystemClock};
use sentinel_actors::order::{
    Fill, FillReason, OrderOutcome, OrderRequest, Protection, SignalOutcome,
};
use sentinel_actors::signal::{Action, EntryParams, Intent, Signal};
use sentinel_actors::types::{
    ClientOrderId, Leverage, PositionSide, Price, Quantity, Side, SignalId, Symbol, Timestamp,
};

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

const PASSPHRASE: &str = "bench-passphrase-0123";

/// The daemon's checkpoint interval (`CHECKPOINT_EVERY` in src/daemon/core.rs).
const CHECKPOINT_EVERY: u64 = 50_000;

/// Accepted, decided, risk checked, sent, filled, finished.
const EVENTS_PER_SIGNAL: usize = 6;

/// Signals per `append`: big batches, so building the journal takes seconds, not one commit per event.
const SIGNALS_PER_APPEND: usize = 1_000;

/// Appends queued before the oldest one's receipt is awaited: bounds the memory the writer's queue holds.
const APPENDS_IN_FLIGHT: usize = 8;

/// Signal `n`: alternately opens and closes a long on BTCUSDT (even `n`) and ETHUSDT (odd `n`), so positions stay
/// between 0 and one order's quantity; every order filled at the signal's price.
fn signal_events(n: usize, received_at: Timestamp) -> Vec<Event> {
    let (symbol, base, quantity) = if n.is_multiple_of(2) {
        ("BTCUSDT", 4_000_000, Decimal::new(1, 2))
    } else {
        ("ETHUSDT", 200_000, Decimal::new(1, 1))
    };
    let symbol = Symbol::new(symbol).unwrap();
    let price = Price::new(Decimal::new(base + (n % 1000) as i64, 2)).unwrap();
    let quantity = Quantity::new(quantity).unwrap();
    let open = (n / 2).is_multiple_of(2);
    let (intent, action, side) = if open {
        let intent = Intent::Open {
            side: PositionSide::Long,
            order: EntryParams::default(),
        };
        (intent, Action::OpenLong, Side::Buy)
    } else {
        let intent = Intent::Close {
            side: Some(PositionSide::Long),
        };
        (intent, Action::CloseLong, Side::Sell)
    };
    let sender_id = format!("bench-{n}");
    let id = SignalId::new(&format!("tradingview:{sender_id}")).unwrap();
    let payload = serde_json::json!({
        "symbol": symbol, "action": action.as_str(), "price": price, "id": sender_id,
    })
    .to_string();
    let keys = DeliveryKey::Id {
        source: "tradingview".into(),
        id: sender_id,
    }
    .to_text();
    let signal = Signal {
        id: id.clone(),
        source: "tradingview".into(),
        symbol: symbol.clone(),
        received_at,
        sent_at: None,
        price: Some(price),
        intent,
        comment: None,
    };
    let order = OrderRequest {
        client_order_id: ClientOrderId::derive(&id, 0),
        signal_id: id.clone(),
        symbol: symbol.clone(),
        action,
        side,
        quantity,
        reduce_only: !open,
        leverage: Leverage::ONE,
        reference_price: price,
        protection: Protection::default(),
        limit: None,
    };
    let fill = Fill {
        client_order_id: order.client_order_id.clone(),
        symbol: symbol.clone(),
        side,
        quantity,
        price,
        fee: price.get() * quantity.get() * Decimal::new(4, 4),
        reason: FillReason::Signal,
        at: received_at,
    };
    let outcome = SignalOutcome::from_orders(vec![OrderOutcome::Filled {
        order: order.clone(),
        fill: fill.clone(),
    }]);
    vec![
        Event::SignalAccepted {
            signal,
            delivery: Delivery { keys, payload },
        },
        Event::Decided {
            signal_id: id.clone(),
            symbol: symbol.clone(),
            orders: vec![order.clone()],
        },
        Event::RiskChecked {
            order: order.clone(),
            verdict: Verdict::Approved,
        },
        Event::OrderSent {
            order: order.clone(),
        },
        Event::Filled {
            order: Some(order),
            fill,
            cause: None,
        },
        Event::SignalFinished {
            signal_id: id,
            symbol,
            outcome,
        },
    ]
}

/// Appends `signals` signals' events to a new journal at `path`, folding a ledger as the daemon's ledger actor does
/// and storing its checkpoint every `CHECKPOINT_EVERY` events. Returns the ledger at the head.
async fn write_journal(path: &Path, signals: usize, starting_balance: Decimal) -> Ledger {
    let (store, _reader) = journal::open(Some(path)).unwrap();
    let log = Journal::start(store, Arc::new(SystemClock), journal::DEFAULT_QUEUE);
    let mut ledger = Ledger::new(starting_balance);
    let first_received = Timestamp::now().0 - signals as i64;
    let mut in_flight: VecDeque<(Receipt, Offset)> = VecDeque::new();
    for start in (0..signals).step_by(SIGNALS_PER_APPEND) {
        let first = ledger.upto.next();
        let mut batch = Vec::with_capacity(SIGNALS_PER_APPEND * EVENTS_PER_SIGNAL);
        let mut checkpoints = Vec::new();
        for n in start..(start + SIGNALS_PER_APPEND).min(signals) {
            let received_at = Timestamp(first_received + n as i64);
            for event in signal_events(n, received_at) {
                let stamped = Stamped {
                    offset: ledger.upto.next(),
                    at: received_at,
                    event,
                };
                ledger.apply(&stamped);
                if stamped.offset.0.is_multiple_of(CHECKPOINT_EVERY) {
                    checkpoints.push((stamped.offset, ledger.to_checkpoint()));
                }
                batch.push(stamped.event);
            }
        }
        in_flight.push_back((log.append(batch), first));
        // Queued behind the batch that holds the events they cover, as the ledger actor's are.
        for (upto, state) in checkpoints {
            log.checkpoint(upto, state);
        }
        if in_flight.len() > APPENDS_IN_FLIGHT {
            let (receipt, expected) = in_flight.pop_front().unwrap();
            assert_eq!(receipt.durable().await, Ok(expected), "offsets out of step");
        }
    }
    for (receipt, expected) in in_flight {
        assert_eq!(receipt.durable().await, Ok(expected), "offsets out of step");
    }
    assert_eq!(log.flush().await, Ok(ledger.upto));
    ledger
}

/// Folds the journal at `path` as a start does, in this process, and reads the idempotency keys: where a restart's
/// time goes before the actors start.
fn fold_in_process(path: &Path, config: &sentinel::Config, expected: &Ledger) {
    let (store, reader) = journal::open(Some(path)).unwrap();
    let log = Journal::start(store, Arc::new(SystemClock), journal::DEFAULT_QUEUE);
    let checkpoint = log.last_checkpoint().unwrap().map(|(upto, _)| upto);
    let started = Instant::now();
    let folded = sentinel::daemon::fold(&*log, config).unwrap();
    let fold_took = started.elapsed();
    assert_eq!(
        &folded, expected,
        "the daemon's fold differs from the bench's"
    );
    let started = Instant::now();
    let deliveries = reader.deliveries_since(Timestamp(0)).unwrap().len();
    let read_took = started.elapsed();
    println!(
        "in process: fold from the checkpoint at {} to {}: {:.0} ms; {deliveries} delivery keys read: {:.0} ms",
        checkpoint.unwrap_or_default(),
        folded.upto,
        fold_took.as_secs_f64() * 1e3,
        read_took.as_secs_f64() * 1e3
    );
}

/// A `key=value` field of a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let signals: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(174_999);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, CONFIG).unwrap();
    let config = sentinel::Config::parse(CONFIG, dir.path().to_path_buf(), &|name| {
        (name == "BENCH_PASSPHRASE").then(|| PASSPHRASE.to_string())
    })
    .unwrap();
    let path = dir.path().join("journal.db");

    let written = Instant::now();
    let balance = config.exchange.starting_balance();
    let ledger = actix::System::new().block_on(write_journal(&path, signals, balance));
    let events = ledger.upto.0;
    let written = written.elapsed();
    let size = file_size(&path) + file_size(&dir.path().join("journal.db-wal"));
    println!(
        "journal: {signals} signals, {events} events, {:.0} MiB, written in {:.1} s",
        size as f64 / 1048576.0,
        written.as_secs_f64()
    );
    fold_in_process(&path, &config, &ledger);

    let binary = std::env::var("SENTINEL_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sentinel").to_string());
    for attempt in 1..=3 {
        let run = restart(&binary, &config_path);
        assert_eq!(
            run.upto,
            events.to_string(),
            "the daemon did not fold to the head"
        );
        println!(
            "restart {attempt}: ready in {:.0} ms (journal folded and keys restored at {:.0} ms; \
             actors started: upto={} recovered={} took_ms={})",
            run.ready.as_secs_f64() * 1e3,
            run.keys_restored.as_secs_f64() * 1e3,
            run.upto,
            run.recovered,
            run.took_ms
        );
    }
}

/// One start of the daemon, as its log and `/healthz` tell it.
struct Restart {
    /// Process start to `/healthz` answering 200.
    ready: Duration,
    /// Process start to the log line that follows the fold and the idempotency keys' load.
    keys_restored: Duration,
    upto: String,
    recovered: String,
    took_ms: String,
}

/// Starts the daemon, times it to ready, and kills it: killed, not stopped, since a clean stop would store a
/// checkpoint at the head and the next start would fold nothing.
fn restart(binary: &str, config: &Path) -> Restart {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["run", "--config"])
        .arg(config)
        .env("BENCH_PASSPHRASE", PASSPHRASE)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained to the end on a thread of its own: a full pipe would block the daemon's logging, and a closed one
    // makes it exit (its logger panics when a write fails).
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send((started.elapsed(), line));
        }
    });
    let mut run = Restart {
        ready: Duration::ZERO,
        keys_restored: Duration::ZERO,
        upto: "?".into(),
        recovered: "?".into(),
        took_ms: "?".into(),
    };
    let mut address = None;
    for (at, line) in lines.iter() {
        if line.contains("ERROR") || line.starts_with("error") {
            panic!("the daemon failed: {line}");
        }
        if line.contains("idempotency keys restored") {
            run.keys_restored = at;
        }
        if line.contains("actors started from the log") {
            let get = |key| field(&line, key).unwrap_or("?").to_string();
            (run.upto, run.recovered, run.took_ms) =
                (get("upto"), get("recovered"), get("took_ms"));
        }
        if let Some(found) = field(&line, "address") {
            address = Some(found.to_string());
            break;
        }
    }
    let address = address.expect("the daemon exited before listening");
    run.ready = loop {
        if let Some(status) = child.try_wait().unwrap() {
            let rest: Vec<String> = lines.try_iter().map(|(_, line)| line).collect();
            panic!("the daemon exited ({status}) before it was ready: {rest:#?}");
        }
        if let Ok(mut s) = std::net::TcpStream::connect(&address) {
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
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    run
}
