//! The execution port: what the exchange actor needs from a venue (paper, Binance, ...), all asynchronous, so a
//! slow call for one symbol never holds up another's. Implementations live in `src/adapters/<venue>/`.

use std::future::Future;
use std::pin::Pin;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::event::CancelReason;
use crate::exits::ArmedExits;
use crate::order::{Fill, FillReason, OrderRequest};
use crate::risk::Approved;
use crate::types::{ClientOrderId, Price, Quantity, Side, Symbol, Timestamp};

/// The last market price of each symbol a venue follows.
pub type Marks = std::collections::HashMap<Symbol, Price>;

/// A venue call in flight. `'static`: implementations move what they need into it, so the exchange actor can run
/// many at once.
pub type VenueFuture<T> = Pin<Box<dyn Future<Output = Result<T, VenueError>> + Send + 'static>>;

/// Why a venue refused an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RejectReason {
    /// No price is known for the symbol yet, so a market order cannot be priced (paper).
    #[error("no price is known for {symbol} yet")]
    NoPrice { symbol: Symbol },
    /// A reduce-only order would not reduce the position.
    #[error("a reduce-only order would not reduce the position")]
    WouldNotReduce,
    /// No order with this client order id is resting: it filled, was cancelled, or never existed.
    #[error("no order {client_order_id} is resting")]
    UnknownOrder { client_order_id: ClientOrderId },
    /// The venue's own refusal, with its code and message.
    #[error("venue code {code}: {message}")]
    Venue { code: i64, message: String },
    /// The venue's published rules for the symbol refuse the order: caught before it was sent.
    #[error("{violation}")]
    Rule { violation: RuleViolation },
    /// The venue asked for a pause (a rate limit): entries are refused until it ends; exits wait for it.
    #[error("the venue asked for a pause until {until_ms} ms since the epoch: {why}")]
    Paused { until_ms: u64, why: String },
    /// Trading on the venue is halted (the API key was refused, ...): nothing is sent until an operator acts.
    #[error("trading on the venue is halted: {why}")]
    Halted { why: String },
    /// An `ioc` or `fok` limit entry found no price at or better than its limit: nothing filled.
    #[error("the market is not at the limit price {limit}: an {} order does not rest", time_in_force.as_str())]
    WouldNotFill {
        limit: Price,
        time_in_force: crate::signal::TimeInForce,
    },
    /// The symbol already has as many resting limit entries as the venue keeps (Binance's open-order limit).
    #[error("{limit} limit entries already rest on this symbol")]
    TooManyOpenOrders { limit: usize },
    /// A `gtd` limit entry whose `expires_at` had passed when it reached the venue.
    #[error("the order expired before it reached the venue")]
    Expired,
    /// The venue adapter does not rest limit entries (Binance): the entry is refused before it is sent.
    #[error("this venue does not take limit entries yet: send a market order")]
    LimitEntryUnsupported,
    /// The venue adapter does not move isolated margin (paper keeps no per-position margin).
    #[error("this venue does not add margin to a position")]
    AddMarginUnsupported,
    /// There is no open position to add margin to.
    #[error("no position is open on {symbol}")]
    NoPosition { symbol: Symbol },
    /// The venue adapter does not place trailing stops (Binance): the entry is refused before it is sent.
    #[error("this venue does not take trailing stops yet: send a fixed `stop_loss`")]
    TrailingStopUnsupported,
}

/// An order that the venue's published rules (exchange filters) refuse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum RuleViolation {
    #[error("{symbol} is not listed by the venue")]
    UnknownSymbol { symbol: Symbol },
    #[error("{symbol} is not trading (status {status})")]
    NotTrading { symbol: Symbol, status: String },
    #[error("quantity {quantity} is below the minimum of {min}")]
    BelowMinQuantity { quantity: Decimal, min: Decimal },
    #[error("quantity {quantity} is above the maximum of {max}")]
    AboveMaxQuantity { quantity: Decimal, max: Decimal },
    #[error("notional {notional} is below the minimum of {min}")]
    BelowMinNotional { notional: Decimal, min: Decimal },
    #[error("price {price} is outside the range {min} to {max}")]
    PriceOutOfRange {
        price: Decimal,
        min: Decimal,
        max: Decimal,
    },
}

/// Why a venue call did not do what was asked, and what that means for retrying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
#[serde(tag = "code", rename_all = "snake_case", from = "VenueErrorRepr")]
pub enum VenueError {
    /// The venue refused: retrying the same order cannot help.
    #[error("the venue rejected the order: {reason}")]
    Rejected { reason: RejectReason },
    /// The venue could not be reached, or failed before taking the order: the same order (same client order id)
    /// may be sent again.
    #[error("the venue is unavailable: {detail}")]
    Unavailable { detail: String },
    /// The venue may or may not have taken the order (a timeout mid-call): look it up by client order id before
    /// anything else.
    #[error("the order's fate at the venue is unknown: {detail}")]
    Unknown { detail: String },
}

/// Journals from before typed venue errors hold a text.
#[derive(Deserialize)]
#[serde(untagged)]
enum VenueErrorRepr {
    Typed(VenueErrorTagged),
    Text(String),
}

#[derive(Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
enum VenueErrorTagged {
    Rejected { reason: RejectReason },
    Unavailable { detail: String },
    Unknown { detail: String },
}

impl From<VenueErrorRepr> for VenueError {
    fn from(repr: VenueErrorRepr) -> Self {
        match repr {
            VenueErrorRepr::Typed(VenueErrorTagged::Rejected { reason }) => {
                VenueError::Rejected { reason }
            }
            VenueErrorRepr::Typed(VenueErrorTagged::Unavailable { detail }) => {
                VenueError::Unavailable { detail }
            }
            VenueErrorRepr::Typed(VenueErrorTagged::Unknown { detail }) => {
                VenueError::Unknown { detail }
            }
            VenueErrorRepr::Text(detail) => VenueError::Unavailable { detail },
        }
    }
}

impl VenueError {
    pub fn rejected(reason: RejectReason) -> Self {
        VenueError::Rejected { reason }
    }

    /// Whether sending the same order again could succeed.
    pub fn is_recoverable(&self) -> bool {
        !matches!(self, VenueError::Rejected { .. })
    }
}

/// What a submit did.
#[derive(Clone, Debug, PartialEq)]
pub enum Execution {
    /// The order filled now.
    New(Fill),
    /// An order with this client order id had already filled (a retry after a crash or a timeout): this is that
    /// fill, and nothing new happened.
    AlreadyFilled(Fill),
    /// A limit entry the market has not reached rests on the venue (or already rested, on a retry).
    Resting,
}

/// An order resting on the venue: a stop loss or take profit guarding a position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenOrder {
    pub client_order_id: ClientOrderId,
    pub symbol: Symbol,
    pub side: Side,
    /// `None`: closes whatever is open when it fires.
    pub quantity: Option<Quantity>,
    pub trigger: Price,
    pub reason: FillReason,
}

/// A position as the venue reports it; `quantity` is signed (> 0 long).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenuePosition {
    pub symbol: Symbol,
    pub quantity: Decimal,
    pub entry_price: Decimal,
}

/// The account's money as the venue reports it, in the quote currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub wallet: Decimal,
    pub available: Decimal,
}

/// Something the venue did on its own: a resting order fired or was cancelled.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecutionReport {
    /// A stop loss, take profit or liquidation.
    Filled(Fill),
    /// A resting limit entry filled: the order says what it opens and which exits it arms.
    EntryFilled {
        order: Box<OrderRequest>,
        fill: Fill,
    },
    Cancelled {
        symbol: Symbol,
        client_order_id: ClientOrderId,
        reason: CancelReason,
    },
}

/// One venue account.
pub trait ExecutionVenue: Send + Sync + 'static {
    /// A short name for logs and the API: `paper`, `binance-futures`.
    fn name(&self) -> &'static str;

    /// Places a market order and arms its protection (stop loss, take profit), or rests a limit entry the market has
    /// not reached. Idempotent by client order id: the same id never fills or rests twice.
    fn submit(&self, order: Approved<OrderRequest>, at: Timestamp) -> VenueFuture<Execution>;

    /// Cancels a resting order.
    fn cancel(&self, symbol: Symbol, client_order_id: ClientOrderId) -> VenueFuture<()>;

    /// The fill of the order with this client order id, if it filled.
    fn query(&self, symbol: Symbol, client_order_id: ClientOrderId) -> VenueFuture<Option<Fill>>;

    /// Replaces the symbol's resting stop loss and take profit with `exits`: legs whose client order id is resting
    /// already stay, the others are cancelled, new ones placed. Moving to the same legs twice changes nothing.
    /// Returns the legs actually resting afterwards.
    fn move_exits(&self, symbol: Symbol, exits: ArmedExits) -> VenueFuture<ArmedExits>;

    /// Orders resting on the venue, for one symbol or all.
    fn open_orders(&self, symbol: Option<Symbol>) -> VenueFuture<Vec<OpenOrder>>;

    /// Open positions.
    fn positions(&self) -> VenueFuture<Vec<VenuePosition>>;

    /// The account's balance.
    fn balance(&self) -> VenueFuture<Balance>;

    /// The symbol's last price, and what it triggered there and then: paper fills resting orders at it, so the
    /// signal that carried the price is decided on the position after them. A venue with its own market data
    /// returns nothing and reports on `reports`.
    fn mark(&self, symbol: &Symbol, price: Price, at: Timestamp) -> Vec<ExecutionReport>;

    /// What the venue did on its own, in order: taken once, by the exchange actor. Bounded.
    fn reports(&self) -> Option<mpsc::Receiver<ExecutionReport>>;

    /// What this venue keeps that a restart needs (paper's book), for a snapshot; `Null` for a venue that is
    /// itself the record.
    fn state(&self) -> serde_json::Value;

    /// The venue's own market prices, published read-only, for a venue with market data (a strategy sizes on
    /// them when a signal carries no price); `None` when prices come from signals.
    fn marks(&self) -> Option<watch::Receiver<Marks>> {
        None
    }

    /// What the venue reports that is not an execution (funding rates, mark prices, positions, margin ratios), for
    /// the event log: taken once. Bounded; `None` for a venue that reports nothing of the kind.
    fn observations(&self) -> Option<mpsc::Receiver<crate::event::Observation>> {
        None
    }

    /// Adds `amount` of isolated margin to the symbol's position; the answer is the amount added.
    fn add_margin(&self, symbol: Symbol, amount: Decimal) -> VenueFuture<Decimal> {
        let _ = (symbol, amount);
        Box::pin(async { Err(VenueError::rejected(RejectReason::AddMarginUnsupported)) })
    }

    /// How the venue connection stands (feeds, limits, a halt), for the operator API; `Null` when there is nothing
    /// to say.
    fn status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip_and_old_texts_still_read() {
        let typed = VenueError::rejected(RejectReason::WouldNotReduce);
        let json = serde_json::to_string(&typed).unwrap();
        assert_eq!(serde_json::from_str::<VenueError>(&json).unwrap(), typed);
        let old: VenueError = serde_json::from_str("\"exchange unavailable: timeout\"").unwrap();
        assert_eq!(
            old,
            VenueError::Unavailable {
                detail: "exchange unavailable: timeout".into()
            }
        );
    }
}
