//! Where the actors report what happened: the journal (in `src/`) implements this.
//!
//! Two calls are durable and waited for, because exactly-once processing across a crash rests on them: a strategy's
//! decision (the orders, with their client order ids) is on disk before the first order is placed, and a fill is on
//! disk before the portfolio counts it. Everything else is recorded in order, without waiting.

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

use crate::order::{Fill, OrderRequest, SignalOutcome};
use crate::portfolio::Position;
use crate::risk::{DenyReason, TradingState};
use crate::signal::Signal;
use crate::types::Symbol;

/// The record could not be made durable (disk full, I/O error, journal stopped).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("journal write failed: {0}")]
pub struct RecordError(pub String);

/// Resolves once the record is durable.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), RecordError>> + Send>>;

pub trait Recorder: Send + Sync + 'static {
    /// The strategy decided to place `orders` for `signal`. Durable before any of them is placed.
    fn decided(&self, signal: &Signal, orders: &[OrderRequest]) -> Durable;

    /// Risk checked an order: approved (`None`) or denied.
    fn risk_checked(&self, order: &OrderRequest, denial: Option<&DenyReason>);

    /// An order filled (`order` is `None` for resting stops and targets); `position` is the symbol's position after.
    /// Blocks until durable: called on the exchange actor's own thread.
    fn filled(
        &self,
        order: Option<&OrderRequest>,
        fill: &Fill,
        position: &Position,
    ) -> Result<(), RecordError>;

    /// The exchange refused an order.
    fn rejected(&self, order: &OrderRequest, error: &str);

    /// A signal was acted on (or not) and this is how it ended.
    fn signal_finished(&self, signal: &Signal, outcome: &SignalOutcome);

    /// A symbol was paused or resumed.
    fn strategy_state_changed(&self, symbol: &Symbol, paused: bool);

    /// The account's trading state changed. Durable when the returned future resolves.
    fn trading_state_changed(&self, state: TradingState) -> Durable;

    /// A consistent picture of the exchange side (portfolio and gateway) after the last recorded fill, so that a
    /// restart replays only the fills after it.
    fn snapshot(&self, state: serde_json::Value);
}
