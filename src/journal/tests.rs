//! The journal as an event log, on real SQLite files: what is appended is read back, in order, durable, once.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use rust_decimal::Decimal;
use sentinel_actors::event::{Delivery, Event, Offset};
use sentinel_actors::log::{Clock, EventLog, LogError};
use sentinel_actors::order::{Fill, FillReason, IgnoreReason, SignalOutcome};
use sentinel_actors::risk::TradingState;
use sentinel_actors::signal::{Intent, Signal};
use sentinel_actors::types::{ClientOrderId, Price, Quantity, Side, SignalId, Symbol, Timestamp};
use serde_json::json;

use super::{open, Journal, Page, SignalStatus};

/// A clock the test moves by hand.
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::Relaxed))
    }
}

fn clock(at: i64) -> Arc<TestClock> {
    Arc::new(TestClock(AtomicI64::new(at)))
}

fn start(path: &Path, clock: Arc<TestClock>, queue: usize) -> Arc<Journal> {
    let (store, _) = open(Some(path)).unwrap();
    Journal::start(store, clock, queue)
}

fn accept(id: &str) -> Event {
    let signal = Signal {
        id: SignalId::new(id).unwrap(),
        source: "tradingview".into(),
        symbol: Symbol::new("BTCUSDT").unwrap(),
        received_at: Timestamp(1_000),
        sent_at: None,
        price: Some(Price::from_str("40000").unwrap()),
        intent: Intent::Tick,
        comment: None,
    };
    Event::SignalAccepted {
        signal,
        delivery: Delivery {
            keys: format!("id:{id}"),
            payload: r#"{"symbol":"BTCUSDT"}"#.into(),
        },
    }
}

fn finished(id: &str, reason: IgnoreReason) -> Event {
    Event::SignalFinished {
        signal_id: SignalId::new(id).unwrap(),
        symbol: Symbol::new("BTCUSDT").unwrap(),
        outcome: SignalOutcome::Ignored { reason },
    }
}

fn trading(state: TradingState) -> Event {
    Event::TradingStateChanged { state }
}

fn fill(client_order_id: &str) -> Event {
    Event::Filled {
        order: None,
        fill: Fill {
            client_order_id: ClientOrderId::try_from(client_order_id.to_string()).unwrap(),
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side: Side::Sell,
            quantity: Quantity::from_str("0.1").unwrap(),
            price: Price::from_str("39000").unwrap(),
            fee: Decimal::ZERO,
            reason: FillReason::StopLoss,
            at: Timestamp(2_000),
        },
        cause: None,
    }
}

fn count(path: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn appended_events_are_read_back_stamped_in_order_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.db");
    let journal = start(&path, clock(5_000), 16);
    let head = journal.head();
    assert_eq!(*head.borrow(), Offset::START);

    let first = journal.append(vec![accept("tv:a"), trading(TradingState::Halted)]);
    assert_eq!(first.durable().await, Ok(Offset(1)));
    assert_eq!(
        *head.borrow(),
        Offset(2),
        "the head is the batch's last event"
    );
    let read = journal.read(Offset::START, 10).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(
        (read[0].offset, read[0].at, &read[0].event),
        (Offset(1), Timestamp(5_000), &accept("tv:a"))
    );
    assert_eq!(read[1].event, trading(TradingState::Halted));
    assert!(
        journal.read(Offset(3), 10).unwrap().is_empty(),
        "past the head"
    );
    assert_eq!(journal.read(Offset(2), 1).unwrap().len(), 1);

    // The projection: a pending signal row whose seq is its accept's offset; the first outcome stands.
    let receipt = journal.append(vec![
        finished("tv:a", IgnoreReason::PriceUpdate),
        finished("tv:a", IgnoreReason::Paused),
    ]);
    assert_eq!(receipt.durable().await, Ok(Offset(3)));
    let reader = super::JournalReader::open(&path).unwrap();
    let signals = reader.signals(Page::default()).unwrap();
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0]["seq"], 1);
    assert_eq!(signals[0]["status"], "ignored");
    assert_eq!(signals[0]["outcome"]["reason"]["code"], "price_update");

    journal.checkpoint(Offset(4), json!({"upto": 4}).to_string());
    assert_eq!(journal.flush().await, Ok(Offset(4)));
    assert_eq!(
        journal.last_checkpoint().unwrap(),
        Some((Offset(4), json!({"upto": 4})))
    );
    journal.checkpoint(Offset(4), json!({"again": true}).to_string());
    journal.flush().await.unwrap();
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM snapshots"),
        1,
        "only the latest"
    );

    let before: Vec<_> = journal.read(Offset(1), 100).unwrap();
    drop(journal);
    let journal = start(&path, clock(9_000), 16);
    assert_eq!(*journal.head().borrow(), Offset(4));
    assert_eq!(
        journal.read(Offset(1), 100).unwrap(),
        before,
        "read back from SQLite"
    );
    assert_eq!(
        journal.last_checkpoint().unwrap().map(|(o, _)| o),
        Some(Offset(4))
    );
    assert_eq!(
        journal
            .append(vec![trading(TradingState::Active)])
            .durable()
            .await,
        Ok(Offset(5))
    );
}

#[tokio::test]
async fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let journal = start(&dir.path().join("sentinel.db"), clock(1), 4096);
    const THREADS: usize = 8;
    const EACH: usize = 100;
    // Submitters that each wait for their append before the next, as webhook handlers do.
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let journal = journal.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                for n in 0..EACH {
                    let receipt = journal
                        .try_append(vec![accept(&format!("tv:{t}-{n}"))])
                        .unwrap();
                    rt.block_on(receipt.durable()).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let waited = journal.stats();
    // And a burst queued at once.
    let receipts: Vec<_> = (0..1000)
        .map(|n| {
            journal.append(vec![trading(if n % 2 == 0 {
                TradingState::Halted
            } else {
                TradingState::Active
            })])
        })
        .collect();
    for receipt in &receipts {
        receipt.durable().await.unwrap();
    }
    let all = journal.stats();
    let burst = (all.commits - waited.commits, all.batches - waited.batches);
    println!(
        "group commit: {THREADS} waiting submitters: {} batches in {} commits ({:.1} per commit, mean commit {} µs, max {} µs); \
         a burst of 1000: {} commits",
        waited.batches,
        waited.commits,
        waited.batches as f64 / waited.commits as f64,
        all.commit_micros_total / all.commits.max(1),
        all.commit_micros_max,
        burst.0,
    );
    assert_eq!(waited.batches, (THREADS * EACH) as u64);
    assert_eq!(all.events, (THREADS * EACH + 1000) as u64);
    assert!(waited.commits < waited.batches, "{waited:?}");
    assert!(burst.0 < burst.1, "{all:?}");
    // Every offset once, in order.
    let read = journal.read(Offset(1), 10_000).unwrap();
    assert!(read
        .iter()
        .enumerate()
        .all(|(i, s)| s.offset == Offset(i as u64 + 1)));
}

#[tokio::test]
async fn a_duplicate_signal_fails_its_batch_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.db");
    let journal = start(&path, clock(1), 16);
    journal
        .append(vec![accept("tv:a")])
        .durable()
        .await
        .unwrap();

    // Queued together, so they most likely share a commit; the outcome is the same if they do not.
    let b = journal.append(vec![accept("tv:b")]);
    let again = journal.append(vec![trading(TradingState::Halted), accept("tv:a")]);
    let c = journal.append(vec![accept("tv:c")]);
    assert_eq!(b.durable().await, Ok(Offset(2)));
    assert_eq!(again.durable().await, Err(LogError::DuplicateSignal));
    assert_eq!(
        c.durable().await,
        Ok(Offset(3)),
        "the failed batch's offsets are not spent"
    );

    let kinds: Vec<_> = journal
        .read(Offset(1), 10)
        .unwrap()
        .into_iter()
        .map(|s| s.event.signal_id().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["tv:a", "tv:b", "tv:c"],
        "nothing of the failed batch"
    );
    assert_eq!(count(&path, "SELECT COUNT(*) FROM signals"), 3);
}

#[tokio::test]
async fn a_second_fill_of_one_order_is_a_diagnostic_not_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.db");
    let journal = start(&path, clock(1), 16);
    assert_eq!(
        journal.append(vec![fill("sn-1")]).durable().await,
        Ok(Offset(1))
    );
    let receipt = journal.append(vec![fill("sn-1"), trading(TradingState::Halted)]);
    assert_eq!(
        receipt.durable().await,
        Ok(Offset(2)),
        "the rest of the batch is recorded"
    );
    let read = journal.read(Offset(1), 10).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].event, trading(TradingState::Halted));
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM diagnostics WHERE kind = 'duplicate_fill' AND client_order_id = 'sn-1'"),
        1
    );
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM events WHERE kind = 'filled'"),
        1
    );
}

#[tokio::test]
async fn a_full_queue_refuses_try_append_and_makes_append_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.db");
    let journal = start(&path, clock(1), 1);
    // Another connection holds the write lock, so the writer is stuck on its first batch.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let first = journal.append(vec![trading(TradingState::Halted)]);
    let second = journal.append(vec![trading(TradingState::Reducing)]);
    let third = journal.append(vec![trading(TradingState::Active)]);
    assert_eq!(
        journal.try_append(vec![accept("tv:shed")]).unwrap_err(),
        LogError::Full
    );

    blocker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(first.durable().await, Ok(Offset(1)));
    assert_eq!(second.durable().await, Ok(Offset(2)));
    assert_eq!(
        third.durable().await,
        Ok(Offset(3)),
        "in order, behind the wait"
    );
    journal.flush().await.unwrap();
    let states: Vec<_> = journal
        .read(Offset(1), 10)
        .unwrap()
        .into_iter()
        .map(|s| s.event)
        .collect();
    assert_eq!(
        states,
        [
            trading(TradingState::Halted),
            trading(TradingState::Reducing),
            trading(TradingState::Active)
        ],
        "the refused batch is not in the log"
    );
}

#[tokio::test]
async fn offsets_older_than_the_ring_are_read_from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.db");
    let (store, _) = open(Some(&path)).unwrap();
    let journal = Journal::start_with_ring(store, clock(1), 16, 4);
    for n in 0..10 {
        let state = if n % 2 == 0 {
            TradingState::Halted
        } else {
            TradingState::Active
        };
        journal
            .append(vec![trading(state)])
            .durable()
            .await
            .unwrap();
    }
    // Change offsets 1 and 9 behind the journal's back: the ring (7-10) still has the old 9, SQLite the new 1.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE events SET data = '{\"kind\":\"trading_state_changed\",\"state\":\"reducing\"}' WHERE seq IN (1, 9)",
        [],
    )
    .unwrap();
    let old = journal.read(Offset(1), 3).unwrap();
    assert_eq!(old.len(), 3);
    assert_eq!(old[0].event, trading(TradingState::Reducing), "from SQLite");
    assert_eq!(old[1].event, trading(TradingState::Active));
    let recent = journal.read(Offset(9), 10).unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(
        recent[0].event,
        trading(TradingState::Halted),
        "from the ring"
    );
}

#[tokio::test]
async fn reads_for_the_operator_filter_and_count_pending_signals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.db");
    let (store, reader) = open(Some(&path)).unwrap();
    let journal = Journal::start(store, clock(7_000), 16);
    journal
        .append(vec![
            accept("tv:a"),
            accept("tv:b"),
            accept("tv:c"),
            fill("sn-9"),
        ])
        .durable()
        .await
        .unwrap();
    journal
        .append(vec![finished("tv:b", IgnoreReason::PriceUpdate)])
        .durable()
        .await
        .unwrap();

    let pending = Page {
        status: Some(SignalStatus::Pending),
        ..Page::default()
    };
    let ids: Vec<_> = reader
        .signals(pending)
        .unwrap()
        .iter()
        .map(|s| s["signal"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["tv:c", "tv:a"], "newest first");
    let ignored = Page {
        status: Some(SignalStatus::Ignored),
        ..Page::default()
    };
    assert_eq!(reader.signals(ignored).unwrap().len(), 1);
    assert_eq!(reader.pending_count().unwrap(), 2);
    assert_eq!(reader.oldest_pending().unwrap(), Some(Timestamp(1_000)));

    let orders = reader.orders(Page::default()).unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["kind"], "filled");
    assert_eq!(orders[0]["client_order_id"], "sn-9");
    assert_eq!(orders[0]["fill"]["reason"], "stop_loss");

    let story = reader.story("tv:b").unwrap().unwrap();
    let kinds: Vec<_> = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["signal_accepted", "signal_finished"]);

    let deliveries = reader.deliveries_since(Timestamp(0)).unwrap();
    assert_eq!(deliveries.len(), 3);
    assert_eq!(deliveries[0].0, "id:tv:a");
    assert_eq!(deliveries[0].1.as_str(), "tv:a");
    assert!(reader
        .deliveries_since(Timestamp(1_001))
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn retention_keeps_what_a_restart_needs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.db");
    let at = clock(1_000);
    let journal = start(&path, at.clone(), 16);
    journal
        .append(vec![accept("tv:done"), accept("tv:open")]) // 1, 2
        .durable()
        .await
        .unwrap();
    journal
        .append(vec![
            finished("tv:done", IgnoreReason::PriceUpdate),
            trading(TradingState::Halted),
        ]) // 3, 4
        .durable()
        .await
        .unwrap();
    journal.checkpoint(Offset(3), json!({}).to_string());
    at.0.store(5_000, Ordering::Relaxed);
    journal
        .append(vec![trading(TradingState::Active)])
        .durable()
        .await
        .unwrap(); // 5, new
    journal.prune(Timestamp(4_000));
    journal.flush().await.unwrap();

    let conn = rusqlite::Connection::open(&path).unwrap();
    let left: Vec<i64> = conn
        .prepare("SELECT seq FROM events ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // 1 and 3 (the finished signal, covered): gone. 2: its signal is unfinished. 4: after the checkpoint. 5: new.
    assert_eq!(left, [2, 4, 5]);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM signals"), 1);

    // Everything old and covered: the newest event still stays, and offsets go on from it.
    journal
        .append(vec![finished("tv:open", IgnoreReason::PriceUpdate)])
        .durable()
        .await
        .unwrap(); // 6
    journal.checkpoint(Offset(6), json!({}).to_string());
    journal.prune(Timestamp(10_000));
    journal.flush().await.unwrap();
    assert_eq!(count(&path, "SELECT COUNT(*) FROM events"), 1);
    assert_eq!(count(&path, "SELECT seq FROM events"), 6);
    drop(journal);
    let journal = start(&path, at, 16);
    assert_eq!(*journal.head().borrow(), Offset(6));
    assert_eq!(
        journal
            .append(vec![trading(TradingState::Halted)])
            .durable()
            .await,
        Ok(Offset(7))
    );
}

#[tokio::test]
async fn a_full_disk_fails_batches_and_the_log_still_says_exactly_what_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.db");
    let (store, _) = open(Some(&path)).unwrap();
    // A disk with room for a few dozen pages more.
    let pages: i64 = store
        .writer
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    store
        .writer
        .pragma_update(None, "max_page_count", pages + 24)
        .unwrap();
    let journal = Journal::start(store, clock(1), 1024);
    let big = |n: usize| match accept(&format!("tv:big-{n}")) {
        Event::SignalAccepted {
            signal,
            mut delivery,
        } => {
            delivery.payload = "x".repeat(6_000);
            Event::SignalAccepted { signal, delivery }
        }
        _ => unreachable!(),
    };
    let receipts: Vec<_> = (0..60).map(|n| (n, journal.append(vec![big(n)]))).collect();
    let mut durable = Vec::new();
    let mut failed = 0;
    for (n, receipt) in receipts {
        match receipt.durable().await {
            Ok(offset) => durable.push((offset, format!("tv:big-{n}"))),
            Err(LogError::Storage(_)) => failed += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(
        failed > 0 && !durable.is_empty(),
        "{failed} failed, {} durable",
        durable.len()
    );

    // Exactly the batches said to be durable are in the file, at the offsets they were given, and the log's head
    // and reads agree with the file.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let stored: Vec<(u64, String)> = conn
        .prepare("SELECT seq, signal_id FROM events ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let said: Vec<(u64, String)> = durable.iter().map(|(o, id)| (o.0, id.clone())).collect();
    assert_eq!(stored, said);
    assert_eq!(*journal.head().borrow(), Offset(stored.len() as u64));
    let read: Vec<_> = journal
        .read(Offset(1), 1000)
        .unwrap()
        .into_iter()
        .map(|s| (s.offset.0, s.event.signal_id().unwrap().to_string()))
        .collect();
    assert_eq!(read, said);
}
