//! The event log port: append a batch and learn when it is durable; read what was appended from an offset on.
//!
//! The daemon's SQLite journal is one implementation (in `src/`); a distributed log (NATS JetStream, Postgres) can be
//! another without any actor changing. Every consumer (the portfolio, a restart, the API) reads through this.

use std::sync::Arc;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;

use crate::event::{Event, Offset, Stamped};
use crate::types::Timestamp;

/// Why the log could not take or give events.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "code", content = "detail", rename_all = "snake_case")]
pub enum LogError {
    /// The append queue is full: the caller should shed load (a webhook gets 503) and retry later.
    #[error("the event log is behind; retry shortly")]
    Full,
    /// The events were not made durable (disk full, I/O error); nothing of the batch is in the log.
    #[error("the event log could not store the events: {0}")]
    Storage(String),
    /// The batch holds a signal id the log already has: the signal is not new.
    #[error("a signal with this id is already in the log")]
    DuplicateSignal,
    /// The log has stopped (shutdown, or its writer died).
    #[error("the event log has stopped")]
    Stopped,
}

impl LogError {
    /// Whether the same append could succeed later.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, LogError::Full)
    }
}

/// Where an append stands: pending, or settled with the offset of the batch's first event (or why it failed).
type Settled = Option<Result<Offset, LogError>>;

/// Resolves once an appended batch is durable. Cheap to clone: the webhook's answer and the strategy that acts on
/// the signal both wait on the same receipt.
#[derive(Clone, Debug)]
pub struct Receipt(watch::Receiver<Settled>);

/// The log's side of a `Receipt`.
#[derive(Debug)]
pub struct Settle(watch::Sender<Settled>);

impl Receipt {
    pub fn pending() -> (Settle, Receipt) {
        let (tx, rx) = watch::channel(None);
        (Settle(tx), Receipt(rx))
    }

    /// A receipt for events that are already durable (recovered from the log at start-up).
    pub fn durable_at(offset: Offset) -> Receipt {
        let (tx, rx) = watch::channel(Some(Ok(offset)));
        drop(tx);
        Receipt(rx)
    }

    /// A receipt that has already failed (the append was refused before it was queued).
    pub fn failed(error: LogError) -> Receipt {
        let (tx, rx) = watch::channel(Some(Err(error)));
        drop(tx);
        Receipt(rx)
    }

    /// The offset of the batch's first event once it is durable, or why it is not.
    pub async fn durable(&self) -> Result<Offset, LogError> {
        let mut rx = self.0.clone();
        let settled = match rx.wait_for(Option::is_some).await {
            Ok(settled) => settled.clone(),
            // Dropped: settled just before (`failed`), or the writer stopped before it got to the batch.
            Err(_) => None,
        };
        settled
            .or_else(|| rx.borrow().clone())
            .unwrap_or(Err(LogError::Stopped))
    }
}

impl Settle {
    pub fn settle(self, result: Result<Offset, LogError>) {
        let _ = self.0.send(Some(result));
    }
}

/// The log. Appends are totally ordered: a batch is durable only after every batch appended before it.
pub trait EventLog: Send + Sync + 'static {
    /// Queues `events` as one atomic batch, waiting for room in the queue if it is full (in the receipt, never on
    /// the caller's thread). For events that must not be lost: decisions, fills, outcomes.
    fn append(&self, events: Vec<Event>) -> Receipt;

    /// Like `append`, but a full queue is an immediate `LogError::Full` and nothing is queued: for callers that
    /// shed load instead of waiting (a webhook then gets 503).
    fn try_append(&self, events: Vec<Event>) -> Result<Receipt, LogError>;

    /// Up to `max` events from `from` on (inclusive), in order; fewer (or none) at the head of the log. Recent
    /// events are cheap to read (consumers following the head call this for every batch).
    fn read(&self, from: Offset, max: usize) -> Result<Vec<Stamped>, LogError>;

    /// The offset of the last durable event, updated as batches become durable: consumers wait on it.
    fn head(&self) -> watch::Receiver<Offset>;

    /// Stores `state`, a fold of every event up to and including `upto` as JSON text, so a restart reads only what
    /// came after.
    /// Queued behind the appends before it; not waited for.
    fn checkpoint(&self, upto: Offset, state: String);

    /// The last stored checkpoint, if any.
    fn last_checkpoint(&self) -> Result<Option<(Offset, serde_json::Value)>, LogError>;
}

/// Where time comes from: injected, so tests and replays control it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The machine's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The log from `from` on, as a stream of batches of durable events (at most `batch` each): what a consumer
/// follows. It catches up by reading, then waits on the head for more; it ends when the log stops.
pub fn tail(
    log: Arc<dyn EventLog>,
    from: Offset,
    batch: usize,
) -> impl Stream<Item = Result<Vec<Stamped>, LogError>> {
    let head = log.head();
    futures_util::stream::unfold(
        (log, from, head, false),
        move |(log, next, mut head, failed)| async move {
            if failed {
                return None;
            }
            loop {
                match log.read(next, batch) {
                    Ok(events) if events.is_empty() => {
                        // Caught up: wait until something new is durable.
                        head.wait_for(|h| *h >= next).await.ok()?;
                    }
                    Ok(events) => {
                        let after = events.last().map_or(next, |e| e.offset.next());
                        return Some((Ok(events), (log, after, head, false)));
                    }
                    Err(e) => return Some((Err(e), (log, next, head, true))),
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix::test]
    async fn receipts_settle_once_for_every_waiter() {
        let (settle, receipt) = Receipt::pending();
        let other = receipt.clone();
        let waiting = actix::spawn(async move { other.durable().await });
        settle.settle(Ok(Offset(7)));
        assert_eq!(receipt.durable().await, Ok(Offset(7)));
        assert_eq!(waiting.await.unwrap(), Ok(Offset(7)));
    }

    #[actix::test]
    async fn an_abandoned_receipt_is_a_stopped_log() {
        let (settle, receipt) = Receipt::pending();
        drop(settle);
        assert_eq!(receipt.durable().await, Err(LogError::Stopped));
        assert_eq!(
            Receipt::failed(LogError::Full).durable().await,
            Err(LogError::Full)
        );
    }
}
