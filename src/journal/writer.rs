//! The journal's one writer: a thread that takes everything queued (group commit: one transaction, one fsync for all
//! of it), then publishes what became durable: the in-memory ring first, then the head, then each submitter's receipt,
//! so whoever wakes up can read what it was told about.

use std::sync::Arc;
use std::time::Instant;

use rusqlite::{params, Connection};
use sentinel_actors::event::{Event, Offset, Stamped};
use sentinel_actors::log::{Clock, LogError, Settle};
use sentinel_actors::types::Timestamp;
use tokio::sync::{mpsc, watch};
use tracing::error;

use super::log::Stats;
use super::ring::Ring;

/// One thing for the writer to do.
pub(super) enum Job {
    /// Events to append as one atomic batch.
    Append {
        events: Vec<Prepared>,
        settle: Settle,
    },
    /// A fold of the log up to `upto`, as JSON.
    Checkpoint { upto: Offset, state: String },
    /// Drops history older than `before` that no restart needs.
    Prune { before: Timestamp },
}

/// An event with its JSON, serialised by the submitter so the writer thread (the one thing every append waits on)
/// does not spend its time on it.
pub(super) struct Prepared {
    pub event: Event,
    pub json: String,
}

/// What the writer publishes to.
pub(super) struct Outlets {
    pub ring: Arc<Ring>,
    pub head: watch::Sender<Offset>,
    pub stats: Arc<Stats>,
    pub clock: Arc<dyn Clock>,
}

/// Why one batch was not written.
enum BatchError {
    DuplicateSignal,
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for BatchError {
    fn from(e: rusqlite::Error) -> Self {
        BatchError::Sql(e)
    }
}

/// The last offset ever handed out (events the retention deleted included), so offsets never repeat.
pub(super) fn last_offset(conn: &Connection) -> rusqlite::Result<Offset> {
    let seq: i64 = conn.query_row(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
        [],
        |row| row.get(0),
    )?;
    Ok(Offset(seq.max(0) as u64))
}

pub(super) fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    outlets: Outlets,
    max_batch: usize,
) {
    let mut head = *outlets.head.borrow();
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let done = commit(&mut conn, jobs, head, outlets.clock.as_ref());
        outlets.stats.commit(
            done.receipts.iter().filter(|(_, r)| r.is_ok()).count() as u64,
            done.events.len() as u64,
            started.elapsed(),
        );
        // A storage error says the file cannot be written; a written batch says it can again.
        let failed = done
            .receipts
            .iter()
            .any(|(_, r)| matches!(r, Err(LogError::Storage(_))));
        if failed || done.receipts.iter().any(|(_, r)| r.is_ok()) {
            outlets.stats.set_failing(failed);
        }
        head = done.head;
        outlets.ring.push(done.events);
        outlets.head.send_if_modified(|h| {
            let moved = *h != head;
            *h = head;
            moved
        });
        for (settle, result) in done.receipts {
            settle.settle(result);
        }
    }
}

/// One commit's results.
struct Done {
    events: Vec<Stamped>,
    receipts: Vec<(Settle, Result<Offset, LogError>)>,
    head: Offset,
}

/// Writes every job in one transaction, each inside its own savepoint, so one failing batch (a duplicate signal id,
/// a full disk) fails alone while the others commit together.
fn commit(conn: &mut Connection, jobs: Vec<Job>, head: Offset, clock: &dyn Clock) -> Done {
    let mut done = Done {
        events: Vec::new(),
        receipts: Vec::new(),
        head,
    };
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return failed(head, jobs, &e),
    };
    let mut jobs = jobs.into_iter();
    while let Some(job) = jobs.next() {
        match job {
            Job::Append { events, settle } => {
                let at = clock.now();
                match append(&mut tx, &events, at) {
                    Ok(offsets) => {
                        let first = offsets.iter().flatten().next().copied();
                        for (prepared, offset) in events.into_iter().zip(offsets) {
                            if let Some(offset) = offset {
                                done.head = offset;
                                done.events.push(Stamped {
                                    offset,
                                    at,
                                    event: prepared.event,
                                });
                            }
                        }
                        // Nothing recorded (an empty batch is a flush): everything before it is durable.
                        done.receipts.push((settle, Ok(first.unwrap_or(done.head))));
                    }
                    Err(BatchError::DuplicateSignal) => {
                        done.receipts.push((settle, Err(LogError::DuplicateSignal)))
                    }
                    Err(BatchError::Sql(e)) => {
                        error!(error = %e, "journal batch not written");
                        done.receipts
                            .push((settle, Err(LogError::Storage(e.to_string()))));
                    }
                }
            }
            Job::Checkpoint { upto, state } => {
                if let Err(e) = checkpoint(&mut tx, upto, &state, clock.now()) {
                    error!(error = %e, %upto, "checkpoint not written; a restart reads from the previous one");
                }
            }
            Job::Prune { before } => {
                if let Err(e) = prune(&mut tx, before) {
                    error!(error = %e, "journal retention failed; it runs again later");
                }
            }
        }
        // After some errors (a full disk, an I/O error) SQLite rolls back the whole transaction by itself: what was
        // written so far is gone, and anything more would commit statement by statement, outside any batch.
        if tx.is_autocommit() {
            let e = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the transaction was rolled back".into()),
            );
            return failed(head, jobs.collect(), &e).with_failed(done.receipts, &e);
        }
    }
    match tx.commit() {
        Ok(()) => done,
        Err(e) => {
            error!(error = %e, "journal commit failed");
            failed(head, Vec::new(), &e).with_failed(done.receipts, &e)
        }
    }
}

impl Done {
    /// Adds `receipts` as failed with `e` (their batches were written, then rolled back).
    fn with_failed(
        mut self,
        receipts: Vec<(Settle, Result<Offset, LogError>)>,
        e: &rusqlite::Error,
    ) -> Done {
        let storage = LogError::Storage(e.to_string());
        self.receipts.extend(
            receipts
                .into_iter()
                .map(|(settle, _)| (settle, Err(storage.clone()))),
        );
        self
    }
}

/// Nothing of `jobs` is written: every append fails with `e`, and the head stays at `head`.
fn failed(head: Offset, jobs: Vec<Job>, e: &rusqlite::Error) -> Done {
    error!(error = %e, "journal transaction failed");
    let receipts = jobs
        .into_iter()
        .filter_map(|job| match job {
            Job::Append { settle, .. } => Some((settle, Err(LogError::Storage(e.to_string())))),
            _ => None,
        })
        .collect();
    Done {
        events: Vec::new(),
        receipts,
        head,
    }
}

/// Writes one batch; each event's offset, `None` for a duplicate fill that was not recorded. A batch of one event that
/// cannot fail on its own is one statement, atomic by itself; only the others (several events, or an acceptance,
/// whose signal id may be taken) pay for a savepoint (profiled: a savepoint per batch was a good part of the writer's
/// time, at nine batches a signal).
fn append(
    tx: &mut rusqlite::Transaction<'_>,
    events: &[Prepared],
    at: Timestamp,
) -> Result<Vec<Option<Offset>>, BatchError> {
    let needs_savepoint = events.len() > 1
        || events
            .iter()
            .any(|p| matches!(p.event, Event::SignalAccepted { .. }));
    if !needs_savepoint {
        return events.iter().map(|p| write(tx, p, at)).collect();
    }
    let sp = tx.savepoint()?;
    let offsets = events
        .iter()
        .map(|p| write(&sp, p, at))
        .collect::<Result<Vec<_>, _>>()?;
    sp.commit()?;
    Ok(offsets)
}

fn write(
    sp: &Connection,
    prepared: &Prepared,
    at: Timestamp,
) -> Result<Option<Offset>, BatchError> {
    let event = &prepared.event;
    let kind = event.kind();
    let signal_id = event.signal_id().map(|s| s.as_str());
    let client_order_id = event.client_order_id().map(|c| c.as_str());
    let row = params![
        at.0,
        kind.as_str(),
        signal_id,
        event.symbol().map(|s| s.as_str()),
        client_order_id,
        prepared.json
    ];
    // A client order id fills once (the unique index `events_fill_once` stands behind this check); a second fill is
    // a bug upstream, not data. Checked first rather than `INSERT OR IGNORE`d: an ignored insert still spends an
    // AUTOINCREMENT offset, and the log's offsets have no gaps.
    if let Event::Filled { .. } = event {
        let filled = sp
            .prepare_cached("SELECT 1 FROM events WHERE kind = 'filled' AND client_order_id = ?1")?
            .exists(params![client_order_id])?;
        if filled {
            error!(
                client_order_id,
                "a second fill of one client order id was not recorded"
            );
            // Kept visible: tests and operators look for these, and there must never be one.
            sp.prepare_cached(
                "INSERT INTO diagnostics (at, kind, signal_id, client_order_id, data) VALUES (?1, 'duplicate_fill', ?2, ?3, ?4)",
            )?
            .execute(params![at.0, signal_id, client_order_id, prepared.json])?;
            return Ok(None);
        }
    }
    sp.prepare_cached(
        "INSERT INTO events (at, kind, signal_id, symbol, client_order_id, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(row)?;
    let offset = sp.last_insert_rowid();
    match event {
        Event::SignalAccepted { signal, delivery } => {
            let json = serde_json::to_string(signal).map_err(|e| {
                BatchError::Sql(rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
            })?;
            let inserted = sp
                .prepare_cached(
                    "INSERT INTO signals (seq, signal_id, source, symbol, action, received_at, delivery_key, payload, signal)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    offset,
                    signal.id.as_str(),
                    signal.source,
                    signal.symbol.as_str(),
                    signal.intent.action().as_str(),
                    signal.received_at.0,
                    delivery.keys,
                    delivery.payload,
                    json
                ]);
            match inserted {
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    return Err(BatchError::DuplicateSignal)
                }
                other => other?,
            };
        }
        Event::SignalFinished {
            signal_id, outcome, ..
        } => {
            let json = serde_json::to_string(outcome).map_err(|e| {
                BatchError::Sql(rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
            })?;
            // Exactly one outcome per signal: the first one stands.
            sp.prepare_cached(
                "UPDATE signals SET status = ?2, outcome = ?3, finished_at = ?4 WHERE signal_id = ?1 AND status IS NULL",
            )?
            .execute(params![signal_id.as_str(), outcome.status(), json, at.0])?;
        }
        // A resting limit entry's signal ends `filled` or `cancelled` when the entry does.
        Event::Filled {
            order: Some(order), ..
        } if order.limit.is_some() => {
            sp.prepare_cached(
                "UPDATE signals SET status = 'filled' WHERE signal_id = ?1 AND status = 'resting'",
            )?
            .execute(params![order.signal_id.as_str()])?;
        }
        Event::Cancelled {
            client_order_id, ..
        } => {
            sp.prepare_cached(
                "UPDATE signals SET status = 'cancelled' WHERE status = 'resting' AND signal_id IN
                   (SELECT signal_id FROM events WHERE kind = 'order_resting' AND client_order_id = ?1)",
            )?
            .execute(params![client_order_id.as_str()])?;
        }
        _ => {}
    }
    Ok(Some(Offset(offset as u64)))
}

/// Keeps only the newest checkpoint: a restart needs one.
fn checkpoint(
    tx: &mut rusqlite::Transaction<'_>,
    upto: Offset,
    state: &str,
    at: Timestamp,
) -> rusqlite::Result<()> {
    let sp = tx.savepoint()?;
    sp.prepare_cached("INSERT INTO snapshots (at, upto_event, state) VALUES (?1, ?2, ?3)")?
        .execute(params![at.0, upto.0 as i64, state])?;
    let seq = sp.last_insert_rowid();
    sp.execute("DELETE FROM snapshots WHERE seq < ?1", params![seq])?;
    sp.commit()
}

/// Finished signals received before `before`, and events before it that the last checkpoint covers and that belong
/// to no unfinished signal (a restart folds those in from the log: they stay), but never the newest event.
fn prune(tx: &mut rusqlite::Transaction<'_>, before: Timestamp) -> rusqlite::Result<()> {
    let sp = tx.savepoint()?;
    sp.execute(
        "DELETE FROM signals WHERE received_at < ?1 AND status IS NOT NULL",
        params![before.0],
    )?;
    sp.execute(
        "DELETE FROM events WHERE at < ?1
           AND seq <= (SELECT COALESCE(MAX(upto_event), 0) FROM snapshots)
           -- The newest event stays, so a read from any offset up to the head finds something to return.
           AND seq < (SELECT MAX(seq) FROM events)
           AND (signal_id IS NULL OR signal_id NOT IN (SELECT signal_id FROM signals WHERE status IS NULL))",
        params![before.0],
    )?;
    sp.execute("DELETE FROM diagnostics WHERE at < ?1", params![before.0])?;
    sp.commit()
}
