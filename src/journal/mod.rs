//! The durable journal: an append-only SQLite file (WAL, `synchronous=FULL`) that records every accepted signal and
//! everything that followed from it. A webhook is acknowledged only once its row is on disk, and a restart rebuilds
//! the daemon's state from it (see `recovery`). Schema: docs/journal.md.

mod read;
mod recovery;
mod schema;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use rusqlite::{Connection, OpenFlags};
use sentinel_actors::order::{Fill, OrderRequest, SignalOutcome};
use sentinel_actors::portfolio::Position;
use sentinel_actors::recorder::{Durable, RecordError, Recorder};
use sentinel_actors::risk::{DenyReason, TradingState};
use sentinel_actors::router::Router;
use sentinel_actors::signal::Signal;
use sentinel_actors::types::{Symbol, Timestamp};
use serde_json::json;
use thiserror::Error;

pub use read::{JournalReader, Page};
pub use recovery::{recover, Recovered};
pub use writer::DUPLICATE_SIGNAL;
use writer::{Ack, Batch, Op, WriterStats};

/// Writes queued before submitters are made to wait (back-pressure rather than unbounded memory).
const QUEUE: usize = 65_536;

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("cannot open the journal {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("journal query failed: {0}")]
    Query(#[from] rusqlite::Error),
    #[error("the journal holds unreadable data: {0}")]
    Corrupt(String),
}

/// The handle every part of the daemon writes through. Cheap to share (`Arc`).
pub struct Journal {
    tx: SyncSender<Batch>,
    dispatcher: Arc<OnceLock<Router>>,
    stats: Arc<WriterStats>,
}

/// Opens (creating if needed) and migrates the journal file at `path`, or an in-memory one for `None`; returns the
/// writer's connection and a reader.
pub fn open(path: Option<&Path>) -> Result<(Connection, JournalReader), JournalError> {
    static MEMORY: AtomicU64 = AtomicU64::new(0);
    let (target, flags) = match path {
        Some(path) => (path.display().to_string(), OpenFlags::empty()),
        None => {
            let n = MEMORY.fetch_add(1, Ordering::Relaxed);
            let uri = format!(
                "file:sentinel-{}-{n}?mode=memory&cache=shared",
                std::process::id()
            );
            (uri, OpenFlags::SQLITE_OPEN_URI)
        }
    };
    let failed = |source| JournalError::Open {
        path: target.clone(),
        source,
    };
    let mut conn = Connection::open_with_flags(
        &target,
        flags
            | OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    let setup = |conn: &mut Connection| -> rusqlite::Result<()> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk (WAL fsynced) before it returns, so an acknowledged webhook survives a crash
        // or power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(conn)
    };
    setup(&mut conn).map_err(failed)?;
    let reader = Connection::open_with_flags(&target, flags | OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(failed)?;
    reader
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(failed)?;
    Ok((conn, JournalReader::from_connection(reader)))
}

impl Journal {
    /// Starts the writer thread on an open connection.
    pub fn start(conn: Connection) -> Arc<Journal> {
        let (tx, rx) = sync_channel(QUEUE);
        let dispatcher = Arc::new(OnceLock::new());
        let stats = Arc::new(WriterStats::default());
        let (for_writer, stats_for_writer) = (dispatcher.clone(), stats.clone());
        std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer::run(conn, rx, for_writer, stats_for_writer))
            .expect("can start the journal writer thread");
        Arc::new(Journal {
            tx,
            dispatcher,
            stats,
        })
    }

    /// Commits so far and the writes they carried.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.stats.commits.load(Ordering::Relaxed),
            self.stats.writes.load(Ordering::Relaxed),
        )
    }

    /// From now on, signals are handed to `router` once durable.
    pub fn set_router(&self, router: Router) {
        let _ = self.dispatcher.set(router);
    }

    fn send(&self, ops: Vec<Op>, ack: Ack) -> Result<(), RecordError> {
        self.tx
            .send(Batch { ops, ack })
            .map_err(|_| RecordError("the journal writer has stopped".into()))
    }

    /// Queues `ops` (waiting for room in the queue) and resolves once they are durable.
    fn durable(&self, ops: Vec<Op>) -> Durable {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self.send(ops, Ack::Async(tx));
        Self::acknowledged(sent, rx)
    }

    /// Like `durable`, but a full queue is an immediate error, so an HTTP worker is never blocked: the sender gets
    /// a 503 and retries.
    fn durable_or_busy(&self, ops: Vec<Op>) -> Durable {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .tx
            .try_send(Batch {
                ops,
                ack: Ack::Async(tx),
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => RecordError("the journal is behind; retry shortly".into()),
                TrySendError::Disconnected(_) => {
                    RecordError("the journal writer has stopped".into())
                }
            });
        Self::acknowledged(sent, rx)
    }

    fn acknowledged(
        sent: Result<(), RecordError>,
        rx: tokio::sync::oneshot::Receiver<Result<(), String>>,
    ) -> Durable {
        Box::pin(async move {
            sent?;
            match rx.await {
                Ok(result) => result.map_err(RecordError),
                Err(_) => Err(RecordError("the journal writer has stopped".into())),
            }
        })
    }

    fn blocking(&self, ops: Vec<Op>) -> Result<(), RecordError> {
        let (tx, rx) = sync_channel(1);
        self.send(ops, Ack::Blocking(tx))?;
        rx.recv()
            .map_err(|_| RecordError("the journal writer has stopped".into()))?
            .map_err(RecordError)
    }

    fn later(&self, op: Op) {
        if let Err(e) = self.send(vec![op], Ack::None) {
            tracing::error!(error = %e, "journal write dropped");
        }
    }

    /// Records an accepted signal; resolves once it is on disk, after which the router gets it.
    /// `payload` is the body with its secret fields removed.
    pub fn accept(&self, signal: &Signal, payload: String, delivery_key: String) -> Durable {
        let signal_json = match serde_json::to_string(signal) {
            Ok(json) => json,
            Err(e) => return Box::pin(async move { Err(RecordError(e.to_string())) }),
        };
        self.durable_or_busy(vec![Op::Accept {
            signal: Box::new(signal.clone()),
            payload,
            delivery_key,
            signal_json,
        }])
    }

    /// Resolves once everything queued before it is on disk (writes are committed in order).
    pub fn flush(&self) -> Durable {
        self.durable(Vec::new())
    }

    /// Deletes finished signals and events older than `before` that no restart needs.
    pub fn prune(&self, before: Timestamp) {
        self.later(Op::Prune { before: before.0 });
    }

    fn event(
        &self,
        kind: &'static str,
        signal: Option<&str>,
        symbol: Option<&str>,
        order: Option<&str>,
        data: serde_json::Value,
    ) -> Op {
        Op::Event {
            at: Timestamp::now().0,
            kind,
            signal_id: signal.map(str::to_string),
            symbol: symbol.map(str::to_string),
            client_order_id: order.map(str::to_string),
            data: data.to_string(),
        }
    }
}

impl Recorder for Journal {
    fn decided(&self, signal: &Signal, orders: &[OrderRequest]) -> Durable {
        let op = self.event(
            "decision",
            Some(signal.id.as_str()),
            Some(signal.symbol.as_str()),
            None,
            json!({ "orders": orders }),
        );
        self.durable(vec![op])
    }

    fn risk_checked(&self, order: &OrderRequest, denial: Option<&DenyReason>) {
        let (kind, data) = match denial {
            None => ("approval", json!({ "order": order })),
            Some(reason) => ("denial", json!({ "order": order, "reason": reason })),
        };
        let op = self.event(
            kind,
            Some(order.signal_id.as_str()),
            Some(order.symbol.as_str()),
            Some(order.client_order_id.as_str()),
            data,
        );
        self.later(op);
    }

    fn filled(
        &self,
        order: Option<&OrderRequest>,
        fill: &Fill,
        position: &Position,
    ) -> Result<(), RecordError> {
        let op = self.event(
            "fill",
            order.map(|o| o.signal_id.as_str()),
            Some(fill.symbol.as_str()),
            Some(fill.client_order_id.as_str()),
            json!({ "order": order, "fill": fill, "position": position }),
        );
        self.blocking(vec![op])
    }

    fn rejected(&self, order: &OrderRequest, error: &str) {
        let op = self.event(
            "rejection",
            Some(order.signal_id.as_str()),
            Some(order.symbol.as_str()),
            Some(order.client_order_id.as_str()),
            json!({ "order": order, "error": error }),
        );
        self.later(op);
    }

    fn signal_finished(&self, signal: &Signal, outcome: &SignalOutcome) {
        self.later(Op::Finish {
            signal_id: signal.id.to_string(),
            status: outcome.status(),
            outcome: serde_json::to_string(outcome).unwrap_or_default(),
            at: Timestamp::now().0,
        });
    }

    fn strategy_state_changed(&self, symbol: &Symbol, paused: bool) {
        let at = Timestamp::now().0;
        let event = self.event(
            "strategy_state",
            None,
            Some(symbol.as_str()),
            None,
            json!({ "paused": paused }),
        );
        let state = Op::State {
            key: format!("paused:{symbol}"),
            value: paused.to_string(),
            at,
        };
        if let Err(e) = self.send(vec![event, state], Ack::None) {
            tracing::error!(error = %e, "journal write dropped");
        }
    }

    fn trading_state_changed(&self, state: TradingState) -> Durable {
        let at = Timestamp::now().0;
        let event = self.event("trading_state", None, None, None, json!({ "state": state }));
        let value = serde_json::to_string(&state).unwrap_or_default();
        self.durable(vec![
            event,
            Op::State {
                key: "trading_state".into(),
                value,
                at,
            },
        ])
    }

    fn snapshot(&self, state: serde_json::Value) {
        self.later(Op::Snapshot {
            state: state.to_string(),
            at: Timestamp::now().0,
        });
    }
}
