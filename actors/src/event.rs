//! The typed events of the log: everything that happens to a signal, its orders and the account, in the order it
//! happened. The log is the record; every piece of state (the portfolio, the API's views, a restart) is a fold of it.

use std::fmt;

use serde::{Deserialize, Serialize};

use rust_decimal::Decimal;

use crate::exits::ArmedExits;
use crate::order::{Fill, OrderRequest, SignalOutcome};
use crate::risk::{DenyReason, TradingState};
use crate::signal::Signal;
use crate::types::{ClientOrderId, Price, SignalId, Symbol, Timestamp};
use crate::venue::VenueError;

/// A position in the log: the first event has offset 1, and offsets only grow.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    /// Before the first event: a consumer that starts here reads everything.
    pub const START: Offset = Offset(0);

    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// How a webhook arrived, kept with the signal for the operator and for idempotency across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The idempotency keys it claimed, as the ingress writes them.
    pub keys: String,
    /// The body as received, every secret field removed.
    pub payload: String,
}

/// Risk's verdict on one order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    Denied { reason: DenyReason },
}

/// Why a resting order was taken off the venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The position it protected is closed.
    PositionClosed,
    /// The other leg of its pair (stop loss or take profit) filled.
    OtherLegFilled,
    /// A later entry armed new levels.
    Replaced,
    /// The venue ended it on its own (cancelled on the venue's website, expired, rejected when it fired).
    ByVenue,
    /// A `gtd` limit entry reached its `expires_at` unfilled.
    Expired,
    /// Trading left `active` (halted or reducing): no entry may fill, so resting entries are taken off.
    TradingStopped,
}

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// An authenticated webhook: acknowledged once this is durable, and processed exactly once from then on.
    SignalAccepted { signal: Signal, delivery: Delivery },
    /// The orders a strategy decided on for a signal, before any is placed.
    Decided {
        signal_id: SignalId,
        symbol: Symbol,
        orders: Vec<OrderRequest>,
    },
    /// Risk checked one order.
    RiskChecked {
        order: OrderRequest,
        verdict: Verdict,
    },
    /// An approved order left for the venue.
    OrderSent { order: OrderRequest },
    /// A limit entry the market has not reached rests on the venue; it ends `Filled` or `Cancelled`.
    OrderResting { order: OrderRequest },
    /// The venue filled an order (`order` is `None` for a resting stop or target).
    Filled {
        order: Option<OrderRequest>,
        fill: Fill,
        /// For a stop, target or liquidation: the signal that opened the position and the tick that fired it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<ExitCause>,
    },
    /// The venue did not fill an order.
    Rejected {
        order: OrderRequest,
        error: VenueError,
    },
    /// A resting order was cancelled.
    Cancelled {
        symbol: Symbol,
        client_order_id: ClientOrderId,
        reason: CancelReason,
    },
    /// A signal was acted on (or not), and this is how it ended.
    SignalFinished {
        signal_id: SignalId,
        symbol: Symbol,
        outcome: SignalOutcome,
    },
    /// The account's trading state changed (the kill switch).
    TradingStateChanged { state: TradingState },
    /// A symbol was paused or resumed.
    StrategyStateChanged { symbol: Symbol, paused: bool },
    /// At start, the venue's account was read and differs from the log: the venue is the truth for what it holds,
    /// so the wallet and these positions (with the legs resting for them) are adopted as it reports them.
    Reconciled {
        /// The wallet balance in the quote currency, if it differs.
        balance: Option<Decimal>,
        positions: Vec<AdoptedPosition>,
        /// Every difference found, in words.
        mismatches: Vec<String>,
    },
    /// A signal (`update_stops`, `move_stop_to_breakeven`) moved the symbol's resting stop loss and take profit:
    /// these are the legs the venue now holds, replacing those before.
    ExitsMoved {
        symbol: Symbol,
        signal_id: SignalId,
        exits: ArmedExits,
    },
    /// An operator's command from a chat or other channel was carried out (after its confirmation).
    OperatorCommand {
        /// Where it came from (`telegram`).
        channel: String,
        /// Who sent it, as the channel names them (a chat id).
        who: String,
        /// The command as carried out (`/flatten BTCUSDT`).
        command: String,
    },
    /// Something a source or the venue reported that is not a trade signal: what rules act on.
    Observed { observation: Observation },
    /// A rule acted on the observation at `trigger`: what it did, journaled once the action was taken.
    RuleFired {
        rule: String,
        trigger: Offset,
        /// When the triggering observation was received, for the rule's latency.
        observed_at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        symbol: Option<Symbol>,
        /// The action as configured (`close`, `pause_all`, `add_margin`, ...).
        action: String,
        outcome: RuleOutcome,
    },
}

/// Something a source or the venue reported that is not an order: a funding rate, a mark price, a position, a
/// margin ratio, a risk model's reading, a news score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The configured source it came through, or the venue's name (`binance-futures`).
    pub source: String,
    /// What it reports (`funding_rate`, `margin_ratio`, `risk`, ...): rules listen for a type.
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<Symbol>,
    pub received_at: Timestamp,
    /// Its fields as sent, secrets removed; numbers kept as written.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// For an event posted to a webhook: its id and idempotency keys, so a restart still knows a redelivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<ObservedDelivery>,
}

impl Observation {
    /// The venue's own mark price for the symbol, when this is a venue's event that carries one (funding rates, mark
    /// prices and margin calls do). A webhook event always has its `delivery`, and its fields are the sender's: they
    /// value nothing.
    pub fn venue_mark(&self) -> Option<(&Symbol, Price)> {
        if self.delivery.is_some() {
            return None;
        }
        let symbol = self.symbol.as_ref()?;
        let text = match self.fields.get("mark_price")? {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => return None,
        };
        let mark = crate::amount::parse_decimal(&text).ok()?;
        Some((symbol, Price::new(mark).ok()?))
    }
}

/// How a webhook event arrived: what the idempotency index keeps for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedDelivery {
    /// The id the sender was answered with (`<source>:<sender's id>`, or a fresh one).
    pub id: SignalId,
    /// The idempotency keys it claimed, as `Delivery::keys` holds them.
    pub keys: String,
}

/// What a rule's action came to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RuleOutcome {
    /// Signals were accepted, journaled like a webhook's: their own records say how each ended.
    Signals { signal_ids: Vec<SignalId> },
    /// The account's trading state was set (pause or resume of all trading).
    TradingState { state: TradingState },
    /// Isolated margin is being asked of the venue: journaled before the call (which has no idempotency key), so a
    /// replay never asks twice. Followed by `MarginAdded` or `Failed` for the same trigger.
    MarginRequested { amount: Decimal },
    /// Isolated margin was added to the symbol's position on the venue.
    MarginAdded { amount: Decimal },
    /// The action could not be taken.
    Failed { error: String },
}

/// What led to a fill no order asked for (a stop loss, a take profit, a liquidation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitCause {
    /// The signal whose entry opened the position the fill closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_by: Option<SignalId>,
    /// The signal whose price crossed the level (paper); `None` when the venue's own market fired it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick: Option<SignalId>,
}

impl Event {
    /// A fill of `order` (`None`: a stop, target or liquidation), with no cause recorded.
    pub fn filled(order: Option<OrderRequest>, fill: Fill) -> Event {
        Event::Filled {
            order,
            fill,
            cause: None,
        }
    }
}

/// A position as the venue holds it, adopted at start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdoptedPosition {
    pub symbol: Symbol,
    /// Signed: > 0 long, 0 flat.
    pub quantity: Decimal,
    pub entry_price: Decimal,
    /// The stop loss and take profit resting on the venue for it.
    pub exits: Option<ArmedExits>,
}

/// The kind of an event, as the journal stores and the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    SignalAccepted,
    Decided,
    RiskChecked,
    OrderSent,
    OrderResting,
    Filled,
    Rejected,
    Cancelled,
    SignalFinished,
    TradingStateChanged,
    StrategyStateChanged,
    Reconciled,
    ExitsMoved,
    OperatorCommand,
    Observed,
    RuleFired,
}

impl EventKind {
    pub const ALL: [EventKind; 16] = [
        EventKind::SignalAccepted,
        EventKind::Decided,
        EventKind::RiskChecked,
        EventKind::OrderSent,
        EventKind::OrderResting,
        EventKind::Filled,
        EventKind::Rejected,
        EventKind::Cancelled,
        EventKind::SignalFinished,
        EventKind::TradingStateChanged,
        EventKind::StrategyStateChanged,
        EventKind::Reconciled,
        EventKind::ExitsMoved,
        EventKind::OperatorCommand,
        EventKind::Observed,
        EventKind::RuleFired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SignalAccepted => "signal_accepted",
            EventKind::Decided => "decided",
            EventKind::RiskChecked => "risk_checked",
            EventKind::OrderSent => "order_sent",
            EventKind::OrderResting => "order_resting",
            EventKind::Filled => "filled",
            EventKind::Rejected => "rejected",
            EventKind::Cancelled => "cancelled",
            EventKind::SignalFinished => "signal_finished",
            EventKind::TradingStateChanged => "trading_state_changed",
            EventKind::StrategyStateChanged => "strategy_state_changed",
            EventKind::Reconciled => "reconciled",
            EventKind::ExitsMoved => "exits_moved",
            EventKind::OperatorCommand => "operator_command",
            EventKind::Observed => "observed",
            EventKind::RuleFired => "rule_fired",
        }
    }

    pub fn parse(raw: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::SignalAccepted { .. } => EventKind::SignalAccepted,
            Event::Decided { .. } => EventKind::Decided,
            Event::RiskChecked { .. } => EventKind::RiskChecked,
            Event::OrderSent { .. } => EventKind::OrderSent,
            Event::OrderResting { .. } => EventKind::OrderResting,
            Event::Filled { .. } => EventKind::Filled,
            Event::Rejected { .. } => EventKind::Rejected,
            Event::Cancelled { .. } => EventKind::Cancelled,
            Event::SignalFinished { .. } => EventKind::SignalFinished,
            Event::TradingStateChanged { .. } => EventKind::TradingStateChanged,
            Event::StrategyStateChanged { .. } => EventKind::StrategyStateChanged,
            Event::Reconciled { .. } => EventKind::Reconciled,
            Event::ExitsMoved { .. } => EventKind::ExitsMoved,
            Event::OperatorCommand { .. } => EventKind::OperatorCommand,
            Event::Observed { .. } => EventKind::Observed,
            Event::RuleFired { .. } => EventKind::RuleFired,
        }
    }

    /// The signal it belongs to, if any.
    pub fn signal_id(&self) -> Option<&SignalId> {
        match self {
            Event::SignalAccepted { signal, .. } => Some(&signal.id),
            Event::Decided { signal_id, .. }
            | Event::SignalFinished { signal_id, .. }
            | Event::ExitsMoved { signal_id, .. } => Some(signal_id),
            Event::RiskChecked { order, .. }
            | Event::OrderSent { order }
            | Event::OrderResting { order }
            | Event::Rejected { order, .. } => Some(&order.signal_id),
            // A stop's fill belongs to the signal that opened the position it closed.
            Event::Filled { order, cause, .. } => order
                .as_ref()
                .map(|o| &o.signal_id)
                .or(cause.as_ref().and_then(|c| c.opened_by.as_ref())),
            Event::Cancelled { .. }
            | Event::TradingStateChanged { .. }
            | Event::StrategyStateChanged { .. }
            | Event::Reconciled { .. }
            | Event::OperatorCommand { .. }
            | Event::Observed { .. }
            | Event::RuleFired { .. } => None,
        }
    }

    /// The symbol it concerns, if any.
    pub fn symbol(&self) -> Option<&Symbol> {
        match self {
            Event::SignalAccepted { signal, .. } => Some(&signal.symbol),
            Event::Decided { symbol, .. }
            | Event::SignalFinished { symbol, .. }
            | Event::Cancelled { symbol, .. }
            | Event::StrategyStateChanged { symbol, .. }
            | Event::ExitsMoved { symbol, .. } => Some(symbol),
            Event::RiskChecked { order, .. }
            | Event::OrderSent { order }
            | Event::OrderResting { order }
            | Event::Rejected { order, .. } => Some(&order.symbol),
            Event::Filled { fill, .. } => Some(&fill.symbol),
            Event::Observed { observation } => observation.symbol.as_ref(),
            Event::RuleFired { symbol, .. } => symbol.as_ref(),
            Event::TradingStateChanged { .. }
            | Event::Reconciled { .. }
            | Event::OperatorCommand { .. } => None,
        }
    }

    /// The client order id it concerns, if any.
    pub fn client_order_id(&self) -> Option<&ClientOrderId> {
        match self {
            Event::RiskChecked { order, .. }
            | Event::OrderSent { order }
            | Event::OrderResting { order }
            | Event::Rejected { order, .. } => Some(&order.client_order_id),
            Event::Filled { fill, .. } => Some(&fill.client_order_id),
            Event::Cancelled {
                client_order_id, ..
            } => Some(client_order_id),
            _ => None,
        }
    }
}

/// An event as the log holds it: where it is, and when it was appended (by the log's clock).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub offset: Offset,
    pub at: Timestamp,
    pub event: Event,
}
