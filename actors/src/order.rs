//! Orders a strategy asks for, the fills an exchange reports, and how each signal ended.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::exits::ArmedExits;
use crate::log::LogError;
use crate::risk::DenyReason;
use crate::signal::{Action, ExitLevel, LimitOrder};
use crate::types::{ClientOrderId, Leverage, Price, Quantity, Side, SignalId, Symbol, Timestamp};
use crate::venue::VenueError;

/// An order a strategy wants placed: a market order, or a limit entry. It reaches an exchange only inside `risk::Approved`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub client_order_id: ClientOrderId,
    pub signal_id: SignalId,
    pub symbol: Symbol,
    /// The payload action that produced it: risk checks it against the symbol's allowed actions.
    pub action: Action,
    pub side: Side,
    pub quantity: Quantity,
    /// Only shrinks a position, never opens or grows one.
    pub reduce_only: bool,
    pub leverage: Leverage,
    /// The last price the strategy knew: risk values the order at it.
    pub reference_price: Price,
    /// Stop-loss and take-profit to rest for the whole position once this entry fills.
    pub protection: Protection,
    /// A limit entry rests on the venue until the market reaches its price; `None`: a market order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitOrder>,
}

/// Exit orders that rest on the exchange after an entry fills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    pub stop_loss: Option<ExitLevel>,
    pub take_profit: Option<ExitLevel>,
}

/// Why an order was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillReason {
    Signal,
    StopLoss,
    TakeProfit,
    /// The venue closed the position at its liquidation price (paper: a mark crossed it).
    Liquidation,
}

/// One execution at the exchange.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    pub client_order_id: ClientOrderId,
    pub symbol: Symbol,
    pub side: Side,
    pub quantity: Quantity,
    pub price: Price,
    /// Paid in quote currency, always >= 0.
    pub fee: Decimal,
    pub reason: FillReason,
    pub at: Timestamp,
}

/// What happened to one order a signal produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OrderOutcome {
    Filled {
        order: OrderRequest,
        fill: Fill,
    },
    Denied {
        order: OrderRequest,
        reason: DenyReason,
    },
    Rejected {
        order: OrderRequest,
        error: VenueError,
    },
    /// A limit entry the market has not reached: it rests on the venue.
    Resting {
        order: OrderRequest,
    },
}

/// Why a signal could not be acted on at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case", from = "FailureRepr")]
pub enum Failure {
    /// The strategy panicked on it and was restarted with its state; nothing was ordered.
    StrategyPanicked { message: String },
    /// An actor on its path was gone (shutting down).
    ActorUnavailable { actor: String },
    /// What the signal led to could not be recorded in the log.
    NotRecorded { error: LogError },
    /// The venue did not move the resting stop loss and take profit; those resting before stay.
    ExitsNotMoved { error: VenueError },
}

/// Journals from before typed failures hold a text.
#[derive(Deserialize)]
#[serde(untagged)]
enum FailureRepr {
    Typed(FailureTagged),
    Text(String),
}

#[derive(Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
enum FailureTagged {
    StrategyPanicked { message: String },
    ActorUnavailable { actor: String },
    NotRecorded { error: LogError },
    ExitsNotMoved { error: VenueError },
}

impl From<FailureRepr> for Failure {
    fn from(repr: FailureRepr) -> Self {
        match repr {
            FailureRepr::Typed(FailureTagged::StrategyPanicked { message }) => {
                Failure::StrategyPanicked { message }
            }
            FailureRepr::Typed(FailureTagged::ActorUnavailable { actor }) => {
                Failure::ActorUnavailable { actor }
            }
            FailureRepr::Typed(FailureTagged::NotRecorded { error }) => {
                Failure::NotRecorded { error }
            }
            FailureRepr::Typed(FailureTagged::ExitsNotMoved { error }) => {
                Failure::ExitsNotMoved { error }
            }
            FailureRepr::Text(message) => Failure::StrategyPanicked { message },
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::StrategyPanicked { message } => {
                write!(f, "the strategy failed and was restarted: {message}")
            }
            Failure::ActorUnavailable { actor } => write!(f, "the {actor} actor is unavailable"),
            Failure::NotRecorded { error } => write!(f, "not recorded: {error}"),
            Failure::ExitsNotMoved { error } => {
                write!(f, "the stops were not moved (those resting stay): {error}")
            }
        }
    }
}

/// How a signal ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SignalOutcome {
    /// Every order it produced filled.
    Filled { orders: Vec<OrderOutcome> },
    /// Some orders filled, others were denied or rejected.
    Partial { orders: Vec<OrderOutcome> },
    /// Risk denied every order it produced.
    Denied {
        reason: DenyReason,
        orders: Vec<OrderOutcome>,
    },
    /// The exchange rejected every order it produced.
    Rejected { orders: Vec<OrderOutcome> },
    /// Every order before its last filled, and the last, a limit entry, rests on the venue.
    Resting { orders: Vec<OrderOutcome> },
    /// A market-data tick whose price fired resting orders: these fills (stops, targets, liquidations, limit
    /// entries), each journaled with the tick as its cause.
    Triggered { fills: Vec<Fill> },
    /// Nothing to do (already flat, paused, a tick, ...).
    Ignored { reason: IgnoreReason },
    /// `update_stops` / `move_stop_to_breakeven`: the position's stop loss and take profit now rest at `exits`.
    ExitsMoved { exits: ArmedExits },
    /// It could not be acted on; nothing was ordered.
    Failed { error: Failure },
}

impl SignalOutcome {
    /// Sums up what happened to a signal's orders.
    pub fn from_orders(orders: Vec<OrderOutcome>) -> Self {
        let filled = orders
            .iter()
            .filter(|o| matches!(o, OrderOutcome::Filled { .. }))
            .count();
        let first_denial = orders.iter().find_map(|o| match o {
            OrderOutcome::Denied { reason, .. } => Some(reason.clone()),
            _ => None,
        });
        let resting = matches!(orders.last(), Some(OrderOutcome::Resting { .. }));
        if filled == orders.len() {
            SignalOutcome::Filled { orders }
        } else if resting && filled + 1 == orders.len() {
            SignalOutcome::Resting { orders }
        } else if filled > 0 {
            SignalOutcome::Partial { orders }
        } else if let Some(reason) = first_denial {
            SignalOutcome::Denied { reason, orders }
        } else {
            SignalOutcome::Rejected { orders }
        }
    }

    pub fn status(&self) -> &'static str {
        match self {
            SignalOutcome::Filled { .. } => "filled",
            SignalOutcome::Partial { .. } => "partial",
            SignalOutcome::Denied { .. } => "denied",
            SignalOutcome::Rejected { .. } => "rejected",
            SignalOutcome::Resting { .. } => "resting",
            SignalOutcome::Triggered { .. } => "triggered",
            SignalOutcome::Ignored { .. } => "ignored",
            SignalOutcome::ExitsMoved { .. } => "exits_moved",
            SignalOutcome::Failed { .. } => "failed",
        }
    }
}

/// Why a signal needed no order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum IgnoreReason {
    /// A market-data tick: it only moved the last price.
    PriceUpdate,
    /// Nothing is open on that side.
    NothingToClose,
    /// The position already matches the target.
    AlreadyAtTarget,
    /// The symbol is paused: only closes, stops and targets run.
    Paused,
    /// Pause or resume took effect.
    StateChanged,
    /// The size works out to less than one quantity step.
    SizeBelowStep,
    /// No price is known yet for the symbol: send one in the payload or a tick first.
    NoPrice,
    /// Stops can only move for an open position, and none is open.
    NoPosition,
    /// A moved stop or target would be on the wrong side of the last price (break-even on a losing position puts
    /// the stop beyond the market): nothing was moved.
    LevelWrongSide {
        field: ExitField,
        level: Price,
        last_price: Price,
    },
}

/// Which resting exit a level is for, as the payload names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitField {
    StopLoss,
    TakeProfit,
}
