//! Every message between the actors, with its sender, receiver and reply.
//!
//! Mailboxes are bounded: the ingress refuses a signal (503) rather than queue past `max_pending`, and each strategy's
//! mailbox holds at least that many; `send` to risk and the exchange waits for room (back-pressure), never drops.

use std::time::Instant;

use actix::Message;
use tokio::sync::OwnedSemaphorePermit;

use crate::event::{Delivery, Offset};
use crate::exits::ArmedExits;
use crate::log::{LogError, Receipt};
use crate::order::{Fill, OrderOutcome, OrderRequest};
use crate::risk::{Approved, TradingState};
use crate::signal::Signal;
use crate::types::{ClientOrderId, Price, SignalId, Symbol};
use crate::venue::VenueError;

/// HTTP edge -> ingress actor: an authenticated, parsed webhook. Replies with the receipt of its `SignalAccepted`
/// event (answer the sender once it is durable), or why it was not admitted.
#[derive(Debug, Message)]
#[rtype(result = "Result<Receipt, AdmitError>")]
pub struct Admit {
    pub signal: Signal,
    pub delivery: Delivery,
    /// When the webhook arrived, for the latency histograms.
    pub arrived: Instant,
}

/// Why a signal was not admitted. Nothing of it was recorded; the sender may retry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// As many signals as allowed are accepted and unfinished: shed load rather than acknowledge what cannot be
    /// processed promptly.
    #[error("{pending} signals are waiting to be processed; retry shortly")]
    Busy { pending: usize },
    /// No strategy runs for the symbol, or it is not taking signals (shutting down).
    #[error("no strategy is taking signals for {symbol}")]
    NoStrategy { symbol: Symbol },
    /// The log could not take the signal.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What a restart knows of a signal that was acknowledged but did not finish.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovered {
    /// The orders decided for it, placed again (idempotently) instead of deciding anew.
    pub decided: Option<Vec<OrderRequest>>,
    /// Its orders that the log shows filled.
    pub fills: Vec<Fill>,
}

/// Ingress actor (or the restart) -> strategy actor of `signal.symbol`: a signal to act on, in log order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SignalReceived {
    pub signal: Signal,
    /// Acted on only once this is durable; if it fails, the signal was never accepted and nothing happens.
    pub accepted: Receipt,
    /// Held until the signal is finished: the admission slot it takes.
    pub admission: Option<OwnedSemaphorePermit>,
    /// Set for a signal recovered after a restart.
    pub recovered: Option<Recovered>,
    /// When its webhook arrived (`None` after a restart), for the latency histograms.
    pub arrived: Option<Instant>,
}

/// Strategy actor -> risk actor: one order to check and, if approved, to place.
#[derive(Debug, Message)]
#[rtype(result = "Placed")]
pub struct Propose {
    pub order: OrderRequest,
}

/// What became of a proposed order, and where its fill is in the log (to wait for the ledger to count it).
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub outcome: OrderOutcome,
    pub recorded: Option<Offset>,
}

/// Risk actor -> exchange actor: an approved order to place. Replies with what the venue did.
#[derive(Debug, Message)]
#[rtype(result = "Result<Executed, VenueError>")]
pub struct Execute {
    pub order: Approved<OrderRequest>,
}

/// What became of an approved order at the venue.
#[derive(Clone, Debug, PartialEq)]
pub enum Executed {
    /// It filled; the fill's offset in the log (`None` when the venue had filled it before, and the log has it).
    Filled(Fill, Option<Offset>),
    /// A limit entry rests; the offset of its `OrderResting` event once durable.
    Resting(Offset),
}

/// Daemon -> exchange actor: take these resting limit entries off the venue, each cancel journaled with `reason`.
/// An order that is no longer resting (it filled, or was cancelled already) is skipped.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CancelResting {
    pub orders: Vec<(Symbol, ClientOrderId)>,
    pub reason: crate::event::CancelReason,
}

/// Strategy actor -> exchange actor: the symbol's last price. Replies with what it fired (resting stops, targets,
/// limit entries), if anything.
#[derive(Debug, Message)]
#[rtype(result = "Option<Triggered>")]
pub struct PriceUpdate {
    pub symbol: Symbol,
    pub price: Price,
    /// The signal that carried the price: named as the cause of what it fires.
    pub tick: Option<SignalId>,
}

/// What a price fired on the venue (stops, targets, liquidations, limit entries), and where the last of it is in
/// the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Triggered {
    pub offset: Offset,
    pub fills: Vec<Fill>,
}

/// Strategy actor -> exchange actor: move the symbol's resting stop loss and take profit to `exits` (a signal's
/// `update_stops` / `move_stop_to_breakeven`). Replies with the legs the venue now holds and the offset of their
/// `ExitsMoved` event once durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<(ArmedExits, Offset), VenueError>")]
pub struct MoveExits {
    pub symbol: Symbol,
    pub signal_id: SignalId,
    pub exits: ArmedExits,
}

/// Strategy actor -> exchange actor, after a restart: did the venue fill this order although the log does not say
/// so? Asked before a recovered order goes to risk, whose checks assume the order is new. A fill found is recorded.
#[derive(Debug, Message)]
#[rtype(result = "Option<(Fill, Offset)>")]
pub struct FindFill {
    pub order: OrderRequest,
}

/// Operator (HTTP API) -> risk actor: switch the account's trading state. Replies once the change is durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), LogError>")]
pub struct SetTradingState {
    pub state: TradingState,
}

/// HTTP API -> risk actor: the account's trading state.
#[derive(Debug, Message)]
#[rtype(result = "TradingState")]
pub struct GetTradingState;

/// Daemon -> ledger actor, at a clean shutdown: store a checkpoint now, so the next start folds nothing.
#[derive(Debug, Message)]
#[rtype(result = "Offset")]
pub struct Checkpoint;

/// Daemon -> risk actor, on a configuration reload: the symbols' rules and the account limits to judge by from now
/// on. The trading state, and what the limits have counted so far (day start, peak, recent orders), stay.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Reconfigure {
    pub rules: std::collections::HashMap<Symbol, crate::risk::SymbolRules>,
    pub limits: crate::limits::Limits,
}

/// Daemon -> strategy actor, on a configuration reload: the symbol's sizing, leverage and default levels. Applies
/// from the next signal; a paused symbol stays paused.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpdateSettings(pub crate::strategy::SymbolSettings);
