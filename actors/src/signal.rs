//! The one typed `Signal` that every accepted payload format is normalised into.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::amount::{fits_scale, MAX_QUOTE, MAX_SCALE};
use crate::types::{
    InvalidValue, Leverage, PositionSide, Price, Quantity, SignalId, Symbol, Timestamp,
};

/// An authenticated, parsed webhook, ready for the symbol's strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub id: SignalId,
    /// The configured source (`[[sources]] name`) it came through.
    pub source: String,
    pub symbol: Symbol,
    pub received_at: Timestamp,
    /// When the sender says it produced the signal, if it said.
    pub sent_at: Option<Timestamp>,
    /// The price the sender saw; also updates the symbol's last price before the signal is acted on.
    pub price: Option<Price>,
    pub intent: Intent,
    /// Free text from the sender (TradingView's `comment`), kept for the operator.
    pub comment: Option<String>,
}

/// What the sender asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Intent {
    /// Open or add to a position on `side`; an opposite position is closed first.
    Open {
        side: PositionSide,
        order: EntryParams,
    },
    /// Close the position if it is on `side`; `None` closes whatever is open (flatten).
    Close {
        side: Option<PositionSide>,
    },
    /// Close part of the position if it is on `side` (`None`: whatever is open): `size` of it, at most all of it.
    PartialClose {
        side: Option<PositionSide>,
        size: CloseSize,
    },
    /// Close the open position and open the same-sized (or `order.size`) position on the other side.
    Reverse {
        order: EntryParams,
    },
    /// Stop opening new positions on this symbol until `Resume`; closes, stops and targets still run.
    Pause,
    Resume,
    /// Move the position to this target, whatever alerts were missed before.
    Target {
        target: TargetPosition,
    },
    /// Market data only: update the last price (fills, stop-losses, take-profits).
    Tick,
    /// Move the open position's resting stop loss and take profit: a level not given keeps the one resting;
    /// `breakeven` puts the stop at the position's average entry price.
    UpdateExits {
        stop_loss: Option<ExitLevel>,
        take_profit: Option<ExitLevel>,
        breakeven: bool,
    },
}

impl Intent {
    pub fn action(&self) -> Action {
        match self {
            Intent::Open {
                side: PositionSide::Long,
                ..
            } => Action::OpenLong,
            Intent::Open {
                side: PositionSide::Short,
                ..
            } => Action::OpenShort,
            Intent::Close {
                side: Some(PositionSide::Long),
            } => Action::CloseLong,
            Intent::Close {
                side: Some(PositionSide::Short),
            } => Action::CloseShort,
            Intent::Close { side: None } => Action::Close,
            Intent::PartialClose { side, .. } => match side {
                Some(PositionSide::Long) => Action::CloseLong,
                Some(PositionSide::Short) => Action::CloseShort,
                None => Action::Close,
            },
            Intent::Reverse { .. } => Action::Reverse,
            Intent::Pause => Action::Pause,
            Intent::Resume => Action::Resume,
            Intent::Target { .. } => Action::Target,
            Intent::Tick => Action::Tick,
            Intent::UpdateExits {
                breakeven: true, ..
            } => Action::MoveStopToBreakeven,
            Intent::UpdateExits { .. } => Action::UpdateStops,
        }
    }
}

/// The action names users write in payloads and in `allowed_actions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    OpenLong,
    OpenShort,
    CloseLong,
    CloseShort,
    Close,
    Reverse,
    Pause,
    Resume,
    Target,
    Tick,
    UpdateStops,
    MoveStopToBreakeven,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::OpenLong,
        Action::OpenShort,
        Action::CloseLong,
        Action::CloseShort,
        Action::Close,
        Action::Reverse,
        Action::Pause,
        Action::Resume,
        Action::Target,
        Action::Tick,
        Action::UpdateStops,
        Action::MoveStopToBreakeven,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::OpenLong => "open_long",
            Action::OpenShort => "open_short",
            Action::CloseLong => "close_long",
            Action::CloseShort => "close_short",
            Action::Close => "close",
            Action::Reverse => "reverse",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Target => "target",
            Action::Tick => "tick",
            Action::UpdateStops => "update_stops",
            Action::MoveStopToBreakeven => "move_stop_to_breakeven",
        }
    }

    pub fn parse(raw: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == raw)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How big, how leveraged and how protected an entry is; `None` fields take the symbol's configured default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryParams {
    pub size: Option<SizeSpec>,
    pub leverage: Option<Leverage>,
    pub stop_loss: Option<ExitLevel>,
    pub take_profit: Option<ExitLevel>,
    /// A limit entry: rests until the market reaches its price. `None`: a market order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitOrder>,
}

/// A limit entry's terms, as written in `limit_price`, `time_in_force` and `expires_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitOrder {
    /// A buy fills at this price or below, a sell at this price or above.
    pub price: Price,
    pub time_in_force: TimeInForce,
    /// When a `gtd` order is taken off the book unfilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

impl LimitOrder {
    /// Whether a market at `price` fills it: a buy's limit at or above it, a sell's at or below.
    pub fn crossed_by(&self, side: crate::types::Side, price: Price) -> bool {
        match side {
            crate::types::Side::Buy => price <= self.price,
            crate::types::Side::Sell => price >= self.price,
        }
    }

    /// Whether it has expired at `at` (only a `gtd` order expires).
    pub fn expired_at(&self, at: Timestamp) -> bool {
        self.expires_at.is_some_and(|expiry| at >= expiry)
    }
}

/// How long a limit entry rests, by the names Binance uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Good till cancelled: rests until it fills, trading halts or it is cancelled.
    Gtc,
    /// Immediate or cancel: fills now if the market is at its price, else is cancelled.
    Ioc,
    /// Fill or kill: the same on paper, where an order fills whole or not at all.
    Fok,
    /// Good till date: a `gtc` that expires at `expires_at`.
    Gtd,
}

impl TimeInForce {
    pub fn parse(raw: &str) -> Option<TimeInForce> {
        match raw.to_ascii_lowercase().as_str() {
            "gtc" => Some(TimeInForce::Gtc),
            "ioc" => Some(TimeInForce::Ioc),
            "fok" => Some(TimeInForce::Fok),
            "gtd" => Some(TimeInForce::Gtd),
            _ => None,
        }
    }

    /// The name Binance and users write.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "GTC",
            TimeInForce::Ioc => "IOC",
            TimeInForce::Fok => "FOK",
            TimeInForce::Gtd => "GTD",
        }
    }

    /// Whether an order that the market does not fill now rests.
    pub fn rests(self) -> bool {
        matches!(self, TimeInForce::Gtc | TimeInForce::Gtd)
    }
}

/// An entry's size, as written in `position_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "unit", content = "value", rename_all = "snake_case")]
pub enum SizeSpec {
    /// `"10%"`: this percent of account equity is the margin; notional = margin x leverage.
    EquityPercent(Decimal),
    /// `"0.01"`: this many units of the base asset.
    Base(Quantity),
    /// `"500 USDT"`: this much notional value in the quote currency (leverage does not multiply it).
    Quote(Decimal),
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeSpec::EquityPercent(pct) => write!(f, "{pct}%"),
            SizeSpec::Base(quantity) => write!(f, "{quantity}"),
            SizeSpec::Quote(amount) => write!(f, "{amount} in quote currency"),
        }
    }
}

impl SizeSpec {
    /// A percent of equity: above 0, at most 100.
    pub fn equity_percent(pct: Decimal) -> Result<Self, InvalidValue> {
        percent(pct, true).map(SizeSpec::EquityPercent)
    }

    /// A quote-currency amount: above 0, at most `MAX_QUOTE`.
    pub fn quote(amount: Decimal) -> Result<Self, InvalidValue> {
        if amount <= Decimal::ZERO || amount > MAX_QUOTE {
            return Err(InvalidValue(format!(
                "an amount must be greater than 0 and at most {MAX_QUOTE}, not {amount}"
            )));
        }
        scale(amount).map(SizeSpec::Quote)
    }
}

/// Checks a percentage: above 0%, and at most 100% (`hundred_allowed`) or below it.
fn percent(pct: Decimal, hundred_allowed: bool) -> Result<Decimal, InvalidValue> {
    let below_max = pct < Decimal::ONE_HUNDRED || (hundred_allowed && pct == Decimal::ONE_HUNDRED);
    if pct <= Decimal::ZERO || !below_max {
        let max = if hundred_allowed { "at most" } else { "below" };
        return Err(InvalidValue(format!(
            "a percentage must be above 0% and {max} 100%, not {pct}%"
        )));
    }
    scale(pct)
}

/// Refuses more decimal places than `MAX_SCALE` rather than rounding them away.
fn scale(value: Decimal) -> Result<Decimal, InvalidValue> {
    if fits_scale(value) {
        Ok(value.normalize())
    } else {
        Err(InvalidValue(format!(
            "{value} has more than {MAX_SCALE} decimal places"
        )))
    }
}

/// How much of a position a close takes, as written in a close's `position_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "unit", content = "value", rename_all = "snake_case")]
pub enum CloseSize {
    /// `"0.5"`: this many units of the base asset (all of the position if it holds less).
    Base(Quantity),
    /// `"50%"`: this percent of the position, above 0 and at most 100.
    PositionPercent(Decimal),
}

impl CloseSize {
    /// A percent of the position: above 0, at most 100.
    pub fn position_percent(pct: Decimal) -> Result<Self, InvalidValue> {
        percent(pct, true).map(CloseSize::PositionPercent)
    }
}

impl fmt::Display for CloseSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseSize::Base(quantity) => write!(f, "{quantity}"),
            CloseSize::PositionPercent(pct) => write!(f, "{pct}% of the position"),
        }
    }
}

/// A stop-loss or take-profit level, as written in `stop_loss` / `take_profit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "unit", content = "value", rename_all = "snake_case")]
pub enum ExitLevel {
    /// `"2%"`: this far from the position's average entry price after the entry fills, against the position for a
    /// stop, with it for a profit.
    Percent(Decimal),
    /// `"44000"`: this absolute price.
    Price(Price),
    /// `"trailing_stop": "1%"` (a stop only): starts this far below a long's average entry (above a short's) and
    /// follows each new best price at this distance, never back (`ArmedExits::trail`).
    Trailing(Decimal),
}

impl ExitLevel {
    /// A distance from the entry price: above 0%, below 100% (a 100% stop would sit at a price of 0).
    pub fn percent(pct: Decimal) -> Result<Self, InvalidValue> {
        percent(pct, false).map(ExitLevel::Percent)
    }

    /// A trailing stop's distance: from 0.1% to 10%, the callback rates Binance takes, so a stop that trails on
    /// paper could trail on the venue too.
    pub fn trailing(pct: Decimal) -> Result<Self, InvalidValue> {
        let (min, max) = (Decimal::new(1, 1), Decimal::TEN);
        if pct < min || pct > max {
            return Err(InvalidValue(format!(
                "a trailing stop must be from {min}% to {max}%, not {pct}%"
            )));
        }
        scale(pct).map(ExitLevel::Trailing)
    }
}

/// The position a strategy alert says the symbol should have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "side", content = "quantity", rename_all = "snake_case")]
pub enum TargetPosition {
    Flat,
    Long(Quantity),
    Short(Quantity),
}
