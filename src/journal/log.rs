//! `Journal`: the SQLite journal as the daemon's `EventLog`. Appends go through a bounded queue to the writer thread;
//! reads of recent offsets come from the in-memory ring, older ones from SQLite.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use sentinel_actors::event::{Event, Offset, Stamped};
use sentinel_actors::latency::{Buckets, Recorded};
use sentinel_actors::log::{Clock, EventLog, LogError, Receipt};
use sentinel_actors::types::Timestamp;
use serde::Serialize;
use tokio::sync::watch;

use super::queue::{Queue, Refused};
use super::ring::Ring;
use super::writer::{self, Job, Outlets, Prepared};
use super::Store;

/// Appends queued before `try_append` sheds load and `append` waits: enough for bursts, bounded memory.
pub const DEFAULT_QUEUE: usize = 65_536;

/// Recent events kept in memory for readers following the head.
pub const DEFAULT_RING: usize = 65_536;

/// Most queued jobs (batches, checkpoints) committed in one transaction.
const MAX_BATCH: usize = 4096;

/// The log. Share it as `Arc<Journal>` (or `Arc<dyn EventLog>`); the writer thread stops once the last handle is
/// dropped and everything queued is written.
pub struct Journal {
    queue: Queue<Job>,
    ring: Arc<Ring>,
    head: watch::Receiver<Offset>,
    /// For offsets older than the ring and for checkpoints: short queries, one at a time is enough.
    reader: Mutex<Connection>,
    stats: Arc<Stats>,
}

/// What group commit is doing, for `/api/security` and the benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JournalStats {
    /// Transactions committed (each one fsync).
    pub commits: u64,
    /// Batches (`append` / `try_append` calls) made durable.
    pub batches: u64,
    /// Events written.
    pub events: u64,
    /// Time spent in commits (begin to durable), summed and the slowest, in microseconds.
    pub commit_micros_total: u64,
    pub commit_micros_max: u64,
}

/// The longest commit kept as itself in the histogram (a minute), and the most events one commit can hold.
const HIGHEST_COMMIT_MICROS: u64 = 60_000_000;
const HIGHEST_COMMIT_EVENTS: u64 = 1 << 20;

pub(super) struct Stats {
    commits: AtomicU64,
    batches: AtomicU64,
    events: AtomicU64,
    micros_total: AtomicU64,
    micros_max: AtomicU64,
    /// Each commit's duration (microseconds) and size (events), for the metrics' histograms.
    commit_micros: Recorded,
    commit_events: Recorded,
    /// The last commit that wrote or failed to write a batch failed (a full disk, a lock held elsewhere).
    failing: AtomicBool,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            commits: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            events: AtomicU64::new(0),
            micros_total: AtomicU64::new(0),
            micros_max: AtomicU64::new(0),
            commit_micros: Recorded::new(HIGHEST_COMMIT_MICROS),
            commit_events: Recorded::new(HIGHEST_COMMIT_EVENTS),
            failing: AtomicBool::new(false),
        }
    }
}

impl Stats {
    pub fn commit(&self, batches: u64, events: u64, took: Duration) {
        let micros = took.as_micros().min(u64::MAX as u128) as u64;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(batches, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.micros_total.fetch_add(micros, Ordering::Relaxed);
        self.micros_max.fetch_max(micros, Ordering::Relaxed);
        self.commit_micros.record(micros);
        self.commit_events.record(events);
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }
}

impl Journal {
    /// Starts the writer thread on an opened store; `clock` stamps every event, `queue` bounds the appends waiting
    /// for the writer.
    pub fn start(store: Store, clock: Arc<dyn Clock>, queue: usize) -> Arc<Journal> {
        Self::start_with_ring(store, clock, queue, DEFAULT_RING)
    }

    /// `start` with `ring` recent events kept in memory instead of `DEFAULT_RING`.
    pub fn start_with_ring(
        store: Store,
        clock: Arc<dyn Clock>,
        queue: usize,
        ring: usize,
    ) -> Arc<Journal> {
        let Store {
            writer,
            reader,
            head,
        } = store;
        let (queue, rx) = Queue::new(queue);
        let ring = Arc::new(Ring::new(ring));
        let stats = Arc::new(Stats::default());
        let (head_tx, head_rx) = watch::channel(head);
        let outlets = Outlets {
            ring: ring.clone(),
            head: head_tx,
            stats: stats.clone(),
            clock,
        };
        std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer::run(writer, rx, outlets, MAX_BATCH))
            .expect("can start the journal writer thread");
        Arc::new(Journal {
            queue,
            ring,
            head: head_rx,
            reader: Mutex::new(reader),
            stats,
        })
    }

    /// Resolves once everything appended before it is durable (the offset of the last event then), or the log
    /// stopped. A clean shutdown waits on it.
    pub async fn flush(&self) -> Result<Offset, LogError> {
        self.append(Vec::new()).durable().await
    }

    /// Deletes finished signals and events older than `before` that no restart needs (see `docs/journal.md`).
    /// Queued behind the appends before it; not waited for.
    pub fn prune(&self, before: Timestamp) {
        self.queue.push(Job::Prune { before });
    }

    /// Whether the last commit that wrote batches succeeded: `false` while appends fail (a full disk, ...).
    pub fn is_healthy(&self) -> bool {
        !self.stats.failing.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> JournalStats {
        let s = &self.stats;
        JournalStats {
            commits: s.commits.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            events: s.events.load(Ordering::Relaxed),
            commit_micros_total: s.micros_total.load(Ordering::Relaxed),
            commit_micros_max: s.micros_max.load(Ordering::Relaxed),
        }
    }

    /// Commit durations (microseconds) and sizes (events) read at `micros` and `events` bounds.
    pub fn commit_histograms(&self, micros: &[u64], events: &[u64]) -> (Buckets, Buckets) {
        (
            self.stats.commit_micros.buckets(micros),
            self.stats.commit_events.buckets(events),
        )
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_stored(&self, from: Offset, max: usize) -> Result<Vec<Stamped>, LogError> {
        let conn = self.reader();
        let rows = (|| -> rusqlite::Result<Vec<(i64, i64, String)>> {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at, data FROM events WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![from.0 as i64, max.min(i64::MAX as usize) as i64],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )?;
            rows.collect()
        })()
        .map_err(storage)?;
        rows.into_iter()
            .map(|(seq, at, data)| {
                let event: Event = serde_json::from_str(&data).map_err(|e| {
                    LogError::Storage(format!("the event at offset {seq} is unreadable: {e}"))
                })?;
                Ok(Stamped {
                    offset: Offset(seq as u64),
                    at: Timestamp(at),
                    event,
                })
            })
            .collect()
    }
}

fn storage(e: rusqlite::Error) -> LogError {
    LogError::Storage(e.to_string())
}

/// Serialises a batch on the caller's thread (see `Prepared`).
fn prepare(events: Vec<Event>) -> Result<Vec<Prepared>, LogError> {
    events
        .into_iter()
        .map(|event| {
            let json = serde_json::to_string(&event).map_err(|e| {
                LogError::Storage(format!(
                    "a {} event cannot be serialised: {e}",
                    event.kind()
                ))
            })?;
            Ok(Prepared { event, json })
        })
        .collect()
}

impl EventLog for Journal {
    fn append(&self, events: Vec<Event>) -> Receipt {
        let events = match prepare(events) {
            Ok(events) => events,
            Err(e) => return Receipt::failed(e),
        };
        let (settle, receipt) = Receipt::pending();
        self.queue.push(Job::Append { events, settle });
        receipt
    }

    fn try_append(&self, events: Vec<Event>) -> Result<Receipt, LogError> {
        let events = prepare(events)?;
        let (settle, receipt) = Receipt::pending();
        match self.queue.try_push(Job::Append { events, settle }) {
            Ok(()) => Ok(receipt),
            Err(Refused::Full) => Err(LogError::Full),
            Err(Refused::Stopped) => Err(LogError::Stopped),
        }
    }

    fn read(&self, from: Offset, max: usize) -> Result<Vec<Stamped>, LogError> {
        let from = from.max(Offset(1));
        // The ring is filled before the head moves, so anything up to the head is in the ring or older than it.
        if max == 0 || from > *self.head.borrow() {
            return Ok(Vec::new());
        }
        match self.ring.read(from, max) {
            Some(events) => Ok(events),
            None => self.read_stored(from, max),
        }
    }

    fn head(&self) -> watch::Receiver<Offset> {
        self.head.clone()
    }

    fn checkpoint(&self, upto: Offset, state: String) {
        self.queue.push(Job::Checkpoint { upto, state });
    }

    fn last_checkpoint(&self) -> Result<Option<(Offset, serde_json::Value)>, LogError> {
        let row: Option<(i64, String)> = self
            .reader()
            .query_row(
                "SELECT upto_event, state FROM snapshots ORDER BY seq DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(storage)?;
        row.map(|(upto, state)| {
            let state = serde_json::from_str(&state)
                .map_err(|e| LogError::Storage(format!("the checkpoint is unreadable: {e}")))?;
            Ok((Offset(upto.max(0) as u64), state))
        })
        .transpose()
    }
}
