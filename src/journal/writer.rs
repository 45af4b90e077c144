//! The journal's one writer: a thread that takes every queued write, commits them in one transaction (one fsync for
//! all of them: group commit), then acknowledges each and hands newly accepted signals to the router in journal
//! order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, OnceLock};

use rusqlite::{params, Connection};
use sentinel_actors::router::Router;
use sentinel_actors::signal::Signal;
use tracing::{error, warn};

/// The error of an accept whose signal id is already in the journal (a sender reusing an id after the idempotency
/// index forgot it): the signal is not new.
pub const DUPLICATE_SIGNAL: &str = "a signal with this id is already in the journal";

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 4096;

/// One row to write.
pub(crate) enum Op {
    Accept {
        signal: Box<Signal>,
        payload: String,
        delivery_key: String,
        signal_json: String,
    },
    Event {
        at: i64,
        kind: &'static str,
        signal_id: Option<String>,
        symbol: Option<String>,
        client_order_id: Option<String>,
        data: String,
    },
    Finish {
        signal_id: String,
        status: &'static str,
        outcome: String,
        at: i64,
    },
    State {
        key: String,
        value: String,
        at: i64,
    },
    Snapshot {
        state: String,
        at: i64,
    },
    /// Deletes finished signals and old events before `before` (Unix ms), keeping what the last snapshot needs.
    Prune {
        before: i64,
    },
}

/// How the submitter learns that its writes are durable.
pub(crate) enum Ack {
    None,
    Async(tokio::sync::oneshot::Sender<Result<(), String>>),
    Blocking(SyncSender<Result<(), String>>),
}

pub(crate) struct Batch {
    pub ops: Vec<Op>,
    pub ack: Ack,
}

/// Commits and the writes they carried: writes per commit is what group commit buys.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub writes: AtomicU64,
}

pub(crate) fn run(
    mut conn: Connection,
    rx: Receiver<Batch>,
    dispatcher: Arc<OnceLock<Router>>,
    stats: Arc<WriterStats>,
) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while batches.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(batch) => batches.push(batch),
                Err(_) => break,
            }
        }
        let results = commit(&mut conn, &batches);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(batches.len() as u64, Ordering::Relaxed);
        let mut accepted = Vec::new();
        for (batch, result) in batches.into_iter().zip(results) {
            if result.is_ok() {
                for op in batch.ops {
                    if let Op::Accept { signal, .. } = op {
                        accepted.push(*signal);
                    }
                }
            }
            match batch.ack {
                Ack::None => {}
                Ack::Async(tx) => {
                    let _ = tx.send(result);
                }
                Ack::Blocking(tx) => {
                    let _ = tx.send(result);
                }
            }
        }
        // Dispatched only once durable, and in journal order, so per-symbol order is arrival order.
        if let Some(router) = dispatcher.get() {
            for signal in accepted {
                if let Err(e) = router.dispatch(signal) {
                    warn!(error = %e, "accepted signal not dispatched; it is processed after the next restart");
                }
            }
        }
    }
}

/// Writes every batch in one transaction, each inside its own savepoint, so one failing batch (a constraint, a
/// full disk) fails alone while the others commit together. Returns each batch's result.
fn commit(conn: &mut Connection, batches: &[Batch]) -> Vec<Result<(), String>> {
    let failed = |e: rusqlite::Error| {
        error!(error = %e, "journal commit failed");
        vec![Err(e.to_string()); batches.len()]
    };
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return failed(e),
    };
    let mut results = Vec::with_capacity(batches.len());
    for batch in batches {
        let result = (|| {
            let sp = tx.savepoint()?;
            for op in &batch.ops {
                write(&sp, op)?;
            }
            sp.commit()
        })();
        results.push(result.map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                DUPLICATE_SIGNAL.to_string()
            }
            other => {
                error!(error = %other, "journal write failed");
                other.to_string()
            }
        }));
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => failed(e),
    }
}

fn write(tx: &rusqlite::Savepoint<'_>, op: &Op) -> rusqlite::Result<()> {
    match op {
        Op::Accept {
            signal,
            payload,
            delivery_key,
            signal_json,
        } => {
            tx.prepare_cached(
                "INSERT INTO signals (signal_id, source, symbol, action, received_at, delivery_key, payload, signal)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                signal.id.as_str(),
                signal.source,
                signal.symbol.as_str(),
                signal.intent.action().as_str(),
                signal.received_at.0,
                delivery_key,
                payload,
                signal_json
            ])?;
        }
        Op::Event {
            at,
            kind,
            signal_id,
            symbol,
            client_order_id,
            data,
        } => {
            let sql = if *kind == "fill" {
                // The unique index keeps a client order id to one fill; a second is a bug upstream, not data.
                "INSERT OR IGNORE INTO events (at, kind, signal_id, symbol, client_order_id, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            } else {
                "INSERT INTO events (at, kind, signal_id, symbol, client_order_id, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            };
            let changed = tx.prepare_cached(sql)?.execute(params![
                at,
                kind,
                signal_id,
                symbol,
                client_order_id,
                data
            ])?;
            if changed == 0 {
                // Kept visible: tests and operators look for these, and there must never be one.
                error!(client_order_id = ?client_order_id, "a second fill of one client order id was not recorded");
                tx.prepare_cached(
                    "INSERT INTO events (at, kind, signal_id, symbol, client_order_id, data)
                     VALUES (?1, 'duplicate_fill', ?2, ?3, ?4, ?5)",
                )?
                .execute(params![at, signal_id, symbol, client_order_id, data])?;
            }
        }
        Op::Finish {
            signal_id,
            status,
            outcome,
            at,
        } => {
            // Exactly one outcome per signal: the first one stands.
            tx.prepare_cached(
                "UPDATE signals SET status = ?2, outcome = ?3, finished_at = ?4 WHERE signal_id = ?1 AND status IS NULL",
            )?
            .execute(params![signal_id, status, outcome, at])?;
            tx.prepare_cached(
                "INSERT INTO events (at, kind, signal_id, data) VALUES (?1, 'outcome', ?2, ?3)",
            )?
            .execute(params![at, signal_id, outcome])?;
        }
        Op::State { key, value, at } => {
            tx.prepare_cached(
                "INSERT INTO state (key, value, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, at = excluded.at",
            )?
            .execute(params![key, value, at])?;
        }
        Op::Snapshot { state, at } => {
            tx.prepare_cached(
                "INSERT INTO snapshots (at, upto_event, state)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) FROM events WHERE kind = 'fill'), ?2)",
            )?
            .execute(params![at, state])?;
            tx.execute(
                "DELETE FROM snapshots WHERE seq < (SELECT MAX(seq) FROM snapshots)",
                [],
            )?;
        }
        Op::Prune { before } => {
            tx.execute(
                "DELETE FROM signals WHERE received_at < ?1 AND status IS NOT NULL",
                params![before],
            )?;
            tx.execute(
                "DELETE FROM events WHERE at < ?1
                   AND seq <= (SELECT COALESCE(MAX(upto_event), 0) FROM snapshots)
                   AND (signal_id IS NULL OR signal_id NOT IN (SELECT signal_id FROM signals WHERE status IS NULL))",
                params![before],
            )?;
        }
    }
    Ok(())
}
