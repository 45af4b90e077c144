//! A symbol's strategy as plain logic: turns a signal and the current position into order requests.

use rust_decimal::prelude::Signed;
use rust_decimal::Decimal;

use super::sizing::{entry_quantity, round_to_step};
use super::stops::move_exits;
use crate::amount::MAX_QUANTITY;
use crate::exits::ArmedExits;
use crate::order::{IgnoreReason, OrderRequest, Protection};
use crate::risk::DenyReason;
use crate::signal::{
    Action, CloseSize, EntryParams, ExitLevel, Intent, LimitOrder, Signal, SizeSpec, TargetPosition,
};
use crate::types::{ClientOrderId, Leverage, PositionSide, Price, Quantity, Side, Symbol};

/// What a symbol's strategy needs to know from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolSettings {
    pub symbol: Symbol,
    pub default_size: SizeSpec,
    pub default_leverage: Leverage,
    pub default_stop_loss: Option<ExitLevel>,
    pub default_take_profit: Option<ExitLevel>,
    /// Order quantities are rounded down to a multiple of this (the exchange's lot step).
    pub quantity_step: Decimal,
}

/// The account as the strategy sees it when a signal arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketView {
    /// Signed: > 0 long, < 0 short.
    pub position: Decimal,
    pub equity: Decimal,
    pub last_price: Option<Price>,
    /// The position's average entry price (`%` levels of a stop move are measured from it); `None` when flat.
    pub entry_price: Option<Price>,
    /// The stop loss and take profit resting for the position: a move keeps the level it does not give.
    pub exits: Option<ArmedExits>,
}

/// What to do about a signal.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// At least one order, in the order to place them.
    Orders(Vec<OrderRequest>),
    Ignore(IgnoreReason),
    /// The signal asks for more than any order may hold: denied before an order exists.
    Deny(DenyReason),
    /// Move the position's resting stop loss and take profit to these (no order is placed).
    MoveExits(ArmedExits),
}

/// One symbol's strategy state. Positions live in the portfolio; what is here is what only the strategy knows.
#[derive(Clone, Debug)]
pub struct StrategyBook {
    settings: SymbolSettings,
    paused: bool,
}

impl StrategyBook {
    pub fn new(settings: SymbolSettings) -> Self {
        Self {
            settings,
            paused: false,
        }
    }

    pub fn symbol(&self) -> &Symbol {
        &self.settings.symbol
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Replaces the settings (a configuration reload); refused for another symbol's.
    pub fn set_settings(&mut self, settings: SymbolSettings) -> bool {
        if settings.symbol != self.settings.symbol {
            return false;
        }
        self.settings = settings;
        true
    }

    /// Restores the paused flag the journal recorded.
    pub fn with_paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }

    /// Takes a signal: pause and resume change the book, anything else is decided on.
    pub fn on_signal(&mut self, signal: &Signal, view: &MarketView) -> Decision {
        match signal.intent {
            Intent::Pause => {
                self.paused = true;
                Decision::Ignore(IgnoreReason::StateChanged)
            }
            Intent::Resume => {
                self.paused = false;
                Decision::Ignore(IgnoreReason::StateChanged)
            }
            _ => self.decide(signal, view),
        }
    }

    /// The orders a signal asks for, given the view. Takes `&self`: a panic here cannot leave the book half-changed.
    pub fn decide(&self, signal: &Signal, view: &MarketView) -> Decision {
        #[cfg(feature = "fault-injection")]
        if signal.comment.as_deref() == Some(crate::FAULT_INJECTION_PANIC) {
            panic!("fault injection: strategy for {} panics", signal.symbol);
        }
        // A limit entry is sized at its own price: it needs no market price to rest.
        let limit_price = match &signal.intent {
            Intent::Open { order, .. } => order.limit.map(|l| l.price),
            _ => None,
        };
        let Some(price) = signal.price.or(view.last_price).or(limit_price) else {
            return match signal.intent {
                Intent::Tick => Decision::Ignore(IgnoreReason::PriceUpdate),
                _ => Decision::Ignore(IgnoreReason::NoPrice),
            };
        };
        self.orders(signal, view, price)
            .unwrap_or_else(Decision::Deny)
    }

    fn orders(
        &self,
        signal: &Signal,
        view: &MarketView,
        price: Price,
    ) -> Result<Decision, DenyReason> {
        let mut legs = Legs::new(self, signal, price);
        let position = view.position;
        match &signal.intent {
            Intent::Tick | Intent::Pause | Intent::Resume => {
                return Ok(Decision::Ignore(IgnoreReason::PriceUpdate))
            }
            Intent::UpdateExits {
                stop_loss,
                take_profit,
                breakeven,
            } => {
                return Ok(move_exits(
                    signal,
                    view,
                    price,
                    *stop_loss,
                    *take_profit,
                    *breakeven,
                ))
            }
            Intent::Open { side, order } => {
                if self.paused {
                    return Ok(Decision::Ignore(IgnoreReason::Paused));
                }
                let at = order.limit.map_or(price, |l| l.price);
                let Some(quantity) = entry_quantity(&self.settings, order, at, view.equity)? else {
                    return Ok(Decision::Ignore(IgnoreReason::SizeBelowStep));
                };
                if opposes(position, *side) {
                    legs.close(position)?;
                }
                legs.open(*side, quantity, order, same_side(position, *side));
            }
            Intent::Close { side } => {
                let matches = match side {
                    None => !position.is_zero(),
                    Some(side) => same_side(position, *side),
                };
                if !matches {
                    return Ok(Decision::Ignore(IgnoreReason::NothingToClose));
                }
                legs.close(position)?;
            }
            Intent::PartialClose { side, size } => {
                let matches = match side {
                    None => !position.is_zero(),
                    Some(side) => same_side(position, *side),
                };
                if !matches {
                    return Ok(Decision::Ignore(IgnoreReason::NothingToClose));
                }
                let by = close_quantity(*size, position, self.settings.quantity_step);
                if by.is_zero() {
                    return Ok(Decision::Ignore(IgnoreReason::SizeBelowStep));
                }
                legs.reduce(position, by)?;
            }
            Intent::Reverse { order } => {
                if position.is_zero() {
                    return Ok(Decision::Ignore(IgnoreReason::NothingToClose));
                }
                let side = if position > Decimal::ZERO {
                    PositionSide::Short
                } else {
                    PositionSide::Long
                };
                legs.close(position)?;
                if !self.paused {
                    let quantity = match order.size {
                        Some(_) => entry_quantity(&self.settings, order, price, view.equity)?,
                        None => Quantity::new(position.abs()).ok(),
                    };
                    if let Some(quantity) = quantity {
                        legs.open(side, quantity, order, false);
                    }
                }
            }
            Intent::Target { target } => {
                let wanted = match target {
                    TargetPosition::Flat => Decimal::ZERO,
                    TargetPosition::Long(q) => round_to_step(q.get(), self.settings.quantity_step),
                    TargetPosition::Short(q) => {
                        -round_to_step(q.get(), self.settings.quantity_step)
                    }
                };
                if wanted == position {
                    return Ok(Decision::Ignore(IgnoreReason::AlreadyAtTarget));
                }
                let grows = wanted.abs() > position.abs()
                    || wanted.signum() * position.signum() < Decimal::ZERO;
                if self.paused && grows {
                    return Ok(Decision::Ignore(IgnoreReason::Paused));
                }
                let defaults = EntryParams::default();
                if wanted.is_zero() || wanted.signum() * position.signum() < Decimal::ZERO {
                    // Flat, or through zero: close what is open, then open the rest.
                    if !position.is_zero() {
                        legs.close(position)?;
                    }
                    if let Ok(quantity) = Quantity::new(wanted.abs()) {
                        legs.open(side_of(wanted), quantity, &defaults, false);
                    }
                } else if wanted.abs() < position.abs() {
                    legs.reduce(position, position.abs() - wanted.abs())?;
                } else if let Ok(quantity) = Quantity::new(wanted.abs() - position.abs()) {
                    let adding = !position.is_zero();
                    legs.open(side_of(wanted), quantity, &defaults, adding);
                }
            }
        }
        // A signal is never reported filled without an order (see `SignalOutcome::from_orders`).
        if legs.orders.is_empty() {
            return Ok(Decision::Ignore(IgnoreReason::AlreadyAtTarget));
        }
        Ok(Decision::Orders(legs.orders))
    }
}

/// How much of `position` a partial close takes: its quantity or percent, at most the whole position. A percent is
/// rounded down to the step (never more than asked); all of the position is never rounded.
fn close_quantity(size: CloseSize, position: Decimal, step: Decimal) -> Decimal {
    let held = position.abs();
    match size {
        CloseSize::Base(quantity) => quantity.get().min(held),
        CloseSize::PositionPercent(pct) if pct >= Decimal::ONE_HUNDRED => held,
        // At most 1e12 x 100: no overflow.
        CloseSize::PositionPercent(pct) => {
            round_to_step(held * pct / Decimal::ONE_HUNDRED, step).min(held)
        }
    }
}

pub(super) fn side_of(position: Decimal) -> PositionSide {
    if position > Decimal::ZERO {
        PositionSide::Long
    } else {
        PositionSide::Short
    }
}

fn same_side(position: Decimal, side: PositionSide) -> bool {
    !position.is_zero() && side_of(position) == side
}

fn opposes(position: Decimal, side: PositionSide) -> bool {
    !position.is_zero() && side_of(position) != side
}

/// Builds a signal's orders, numbering their legs so each gets a stable client order id.
struct Legs<'a> {
    book: &'a StrategyBook,
    signal: &'a Signal,
    price: Price,
    action: Action,
    orders: Vec<OrderRequest>,
}

impl<'a> Legs<'a> {
    fn new(book: &'a StrategyBook, signal: &'a Signal, price: Price) -> Self {
        Self {
            book,
            signal,
            price,
            action: signal.intent.action(),
            orders: Vec::new(),
        }
    }

    /// The order that flattens `position`; denied only for a position no order can hold, which the bounds keep
    /// risk from ever allowing (a journal from before them may hold one).
    fn close(&mut self, position: Decimal) -> Result<(), DenyReason> {
        self.reduce(position, position.abs())
    }

    fn reduce(&mut self, position: Decimal, by: Decimal) -> Result<(), DenyReason> {
        let quantity = Quantity::new(by).map_err(|_| DenyReason::PositionAboveLimit {
            quantity: by,
            limit: MAX_QUANTITY,
        })?;
        let side = side_of(position).entry_side().opposite();
        self.push(
            side,
            quantity,
            true,
            self.book.settings.default_leverage,
            Protection::default(),
            None,
        );
        Ok(())
    }

    /// An entry; `adding` to a position on the same side. The symbol's default levels arm a new position only: an
    /// add brings its own levels or none, and the levels resting stay for whatever it leaves out (`exits`).
    fn open(&mut self, side: PositionSide, quantity: Quantity, order: &EntryParams, adding: bool) {
        let settings = &self.book.settings;
        let protection = if adding {
            Protection {
                stop_loss: order.stop_loss,
                take_profit: order.take_profit,
            }
        } else {
            Protection {
                stop_loss: order.stop_loss.or(settings.default_stop_loss),
                take_profit: order.take_profit.or(settings.default_take_profit),
            }
        };
        let leverage = order.leverage.unwrap_or(settings.default_leverage);
        self.push(
            side.entry_side(),
            quantity,
            false,
            leverage,
            protection,
            order.limit,
        );
    }

    /// One leg; a limit entry is valued at its limit price, any other order at the last price.
    fn push(
        &mut self,
        side: Side,
        quantity: Quantity,
        reduce_only: bool,
        leverage: Leverage,
        protection: Protection,
        limit: Option<LimitOrder>,
    ) {
        let leg = self.orders.len() as u8;
        self.orders.push(OrderRequest {
            client_order_id: ClientOrderId::derive(&self.signal.id, leg),
            signal_id: self.signal.id.clone(),
            symbol: self.signal.symbol.clone(),
            action: self.action,
            side,
            quantity,
            reduce_only,
            leverage,
            reference_price: limit.map_or(self.price, |l| l.price),
            protection,
            limit,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Intent;
    use crate::types::{SignalId, Timestamp};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn book() -> StrategyBook {
        StrategyBook::new(SymbolSettings {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            default_size: SizeSpec::EquityPercent(d("5")),
            default_leverage: Leverage::new(2).unwrap(),
            default_stop_loss: None,
            default_take_profit: None,
            quantity_step: d("0.001"),
        })
    }

    fn signal(intent: Intent) -> Signal {
        Signal {
            id: SignalId::new("s1").unwrap(),
            source: "test".into(),
            symbol: Symbol::new("BTCUSDT").unwrap(),
            received_at: Timestamp(0),
            sent_at: None,
            price: Some(Price::from_str("45000").unwrap()),
            intent,
            comment: None,
        }
    }

    fn view(position: &str) -> MarketView {
        MarketView {
            position: d(position),
            equity: d("10000"),
            last_price: None,
            entry_price: None,
            exits: None,
        }
    }

    fn orders(decision: Decision) -> Vec<(Side, Decimal, bool)> {
        match decision {
            Decision::Orders(orders) => orders
                .into_iter()
                .map(|o| (o.side, o.quantity.get(), o.reduce_only))
                .collect(),
            other => panic!("no orders: {other:?}"),
        }
    }

    fn open(side: PositionSide, size: Option<SizeSpec>, leverage: Option<u32>) -> Intent {
        Intent::Open {
            side,
            order: EntryParams {
                size,
                leverage: leverage.map(|l| Leverage::new(l).unwrap()),
                ..EntryParams::default()
            },
        }
    }

    #[test]
    fn percent_size_is_margin_times_leverage() {
        // 10% of 10000 = 1000 margin, x5 = 5000 notional, / 45000 = 0.1111.. -> 0.111 at step 0.001.
        let intent = open(
            PositionSide::Long,
            Some(SizeSpec::EquityPercent(d("10"))),
            Some(5),
        );
        assert_eq!(
            orders(book().decide(&signal(intent), &view("0"))),
            vec![(Side::Buy, d("0.111"), false)]
        );
    }

    #[test]
    fn quote_and_base_sizes() {
        let quote = open(
            PositionSide::Short,
            Some(SizeSpec::Quote(d("900"))),
            Some(10),
        );
        assert_eq!(
            orders(book().decide(&signal(quote), &view("0"))),
            vec![(Side::Sell, d("0.02"), false)]
        );
        let base = open(
            PositionSide::Long,
            Some(SizeSpec::Base(Quantity::from_str("0.0159").unwrap())),
            None,
        );
        assert_eq!(
            orders(book().decide(&signal(base), &view("0"))),
            vec![(Side::Buy, d("0.015"), false)]
        );
    }

    #[test]
    fn opening_against_a_position_closes_it_first() {
        let intent = open(
            PositionSide::Long,
            Some(SizeSpec::Base(Quantity::from_str("1").unwrap())),
            None,
        );
        assert_eq!(
            orders(book().decide(&signal(intent), &view("-0.5"))),
            vec![(Side::Buy, d("0.5"), true), (Side::Buy, d("1"), false)]
        );
    }

    #[test]
    fn close_flatten_and_reverse() {
        let b = book();
        let close_long = signal(Intent::Close {
            side: Some(PositionSide::Long),
        });
        assert_eq!(
            orders(b.decide(&close_long, &view("0.3"))),
            vec![(Side::Sell, d("0.3"), true)]
        );
        assert_eq!(
            b.decide(&close_long, &view("-0.3")),
            Decision::Ignore(IgnoreReason::NothingToClose)
        );
        let flatten = signal(Intent::Close { side: None });
        assert_eq!(
            orders(b.decide(&flatten, &view("-0.3"))),
            vec![(Side::Buy, d("0.3"), true)]
        );
        let reverse = signal(Intent::Reverse {
            order: EntryParams::default(),
        });
        assert_eq!(
            orders(b.decide(&reverse, &view("0.3"))),
            vec![(Side::Sell, d("0.3"), true), (Side::Sell, d("0.3"), false)]
        );
    }

    #[test]
    fn targets_move_to_the_wanted_position() {
        let b = book();
        let target = |t| signal(Intent::Target { target: t });
        let long = |q: &str| TargetPosition::Long(Quantity::from_str(q).unwrap());
        let short = |q: &str| TargetPosition::Short(Quantity::from_str(q).unwrap());
        assert_eq!(
            orders(b.decide(&target(long("1")), &view("0"))),
            vec![(Side::Buy, d("1"), false)]
        );
        assert_eq!(
            orders(b.decide(&target(long("1")), &view("0.4"))),
            vec![(Side::Buy, d("0.6"), false)]
        );
        assert_eq!(
            orders(b.decide(&target(long("0.25")), &view("1"))),
            vec![(Side::Sell, d("0.75"), true)]
        );
        assert_eq!(
            orders(b.decide(&target(short("2")), &view("1"))),
            vec![(Side::Sell, d("1"), true), (Side::Sell, d("2"), false)]
        );
        assert_eq!(
            orders(b.decide(&target(TargetPosition::Flat), &view("-2"))),
            vec![(Side::Buy, d("2"), true)]
        );
        assert_eq!(
            b.decide(&target(long("1")), &view("1")),
            Decision::Ignore(IgnoreReason::AlreadyAtTarget)
        );
    }

    #[test]
    fn paused_symbols_only_reduce() {
        let mut b = book();
        b.on_signal(&signal(Intent::Pause), &view("0"));
        let entry = open(PositionSide::Long, None, None);
        assert_eq!(
            b.decide(&signal(entry.clone()), &view("0")),
            Decision::Ignore(IgnoreReason::Paused)
        );
        let close = signal(Intent::Close { side: None });
        assert_eq!(
            orders(b.decide(&close, &view("1"))),
            vec![(Side::Sell, d("1"), true)]
        );
        b.on_signal(&signal(Intent::Resume), &view("0"));
        assert!(matches!(
            b.decide(&signal(entry), &view("0")),
            Decision::Orders(_)
        ));
    }

    #[test]
    fn legs_get_distinct_stable_client_order_ids() {
        let intent = open(
            PositionSide::Long,
            Some(SizeSpec::Base(Quantity::from_str("1").unwrap())),
            None,
        );
        let Decision::Orders(first) = book().decide(&signal(intent.clone()), &view("-1")) else {
            panic!()
        };
        let Decision::Orders(again) = book().decide(&signal(intent), &view("-1")) else {
            panic!()
        };
        assert_ne!(first[0].client_order_id, first[1].client_order_id);
        assert_eq!(first[1].client_order_id, again[1].client_order_id);
    }

    fn at(price: &str, intent: Intent) -> Signal {
        Signal {
            price: Some(Price::from_str(price).unwrap()),
            ..signal(intent)
        }
    }

    #[test]
    fn entries_larger_than_one_order_are_denied_before_any_order() {
        let percent = open(
            PositionSide::Long,
            Some(SizeSpec::EquityPercent(d("100"))),
            Some(125),
        );
        // 10000 x 125 / 1e-8 = 1.25e14 units.
        assert_eq!(
            book().decide(&at("0.00000001", percent.clone()), &view("0")),
            Decision::Deny(DenyReason::SizeAboveLimit {
                size: SizeSpec::EquityPercent(d("100")),
                price: Price::from_str("0.00000001").unwrap(),
                limit: MAX_QUANTITY,
            })
        );
        // Reverse sizes its new side the same way.
        let reverse = at(
            "1",
            Intent::Reverse {
                order: EntryParams {
                    size: Some(SizeSpec::Quote(d("1000000000000000"))),
                    ..EntryParams::default()
                },
            },
        );
        assert!(matches!(
            book().decide(&reverse, &view("1")),
            Decision::Deny(DenyReason::SizeAboveLimit { .. })
        ));
    }

    #[test]
    fn the_largest_position_closes_in_one_order() {
        let close = at("10000000000", Intent::Close { side: None });
        assert_eq!(
            orders(book().decide(&close, &view("1000000000000"))),
            vec![(Side::Sell, MAX_QUANTITY, true)]
        );
        assert_eq!(
            orders(book().decide(&close, &view("-1000000000000"))),
            vec![(Side::Buy, MAX_QUANTITY, true)]
        );
        let target = signal(Intent::Target {
            target: TargetPosition::Short(Quantity::new(MAX_QUANTITY).unwrap()),
        });
        assert_eq!(
            orders(book().decide(&target, &view("1000000000000"))),
            vec![
                (Side::Sell, MAX_QUANTITY, true),
                (Side::Sell, MAX_QUANTITY, false)
            ]
        );
    }

    #[test]
    fn a_position_no_order_can_hold_is_denied_not_reported_filled() {
        // Only a journal from before the bounds can hold one; closing it must not look done.
        let close = signal(Intent::Close { side: None });
        assert_eq!(
            book().decide(&close, &view("5000000000000")),
            Decision::Deny(DenyReason::PositionAboveLimit {
                quantity: d("5000000000000"),
                limit: MAX_QUANTITY,
            })
        );
    }

    #[test]
    fn partial_closes_take_what_was_asked_and_no_more() {
        let b = book();
        let part = |size| {
            signal(Intent::PartialClose {
                side: Some(PositionSide::Long),
                size,
            })
        };
        let units = |q: &str| CloseSize::Base(Quantity::from_str(q).unwrap());
        assert_eq!(
            orders(b.decide(&part(units("0.4")), &view("1"))),
            vec![(Side::Sell, d("0.4"), true)]
        );
        // More than the position: capped to it.
        assert_eq!(
            orders(b.decide(&part(units("5")), &view("1"))),
            vec![(Side::Sell, d("1"), true)]
        );
        // 50% of 0.3 = 0.15; 33% of 0.3 = 0.099; 1% of 0.05 = 0.0005, below the 0.001 step.
        let pct = |p: &str| CloseSize::PositionPercent(d(p));
        assert_eq!(
            orders(b.decide(&part(pct("50")), &view("0.3"))),
            vec![(Side::Sell, d("0.15"), true)]
        );
        assert_eq!(
            orders(b.decide(&part(pct("33")), &view("0.3"))),
            vec![(Side::Sell, d("0.099"), true)]
        );
        assert_eq!(
            b.decide(&part(pct("1")), &view("0.05")),
            Decision::Ignore(IgnoreReason::SizeBelowStep)
        );
        assert_eq!(
            b.decide(&part(pct("50")), &view("-0.3")),
            Decision::Ignore(IgnoreReason::NothingToClose)
        );
        let any = signal(Intent::PartialClose {
            side: None,
            size: pct("100"),
        });
        assert_eq!(
            orders(b.decide(&any, &view("-0.3"))),
            vec![(Side::Buy, d("0.3"), true)]
        );
    }

    #[test]
    fn default_levels_arm_a_new_position_but_not_an_add() {
        let b = StrategyBook::new(SymbolSettings {
            default_take_profit: Some(ExitLevel::Percent(d("50"))),
            ..book().settings
        });
        let protection = |decision: Decision| match decision {
            Decision::Orders(orders) => orders.last().unwrap().protection,
            other => panic!("no orders: {other:?}"),
        };
        let bare = open(PositionSide::Long, None, None);
        assert_eq!(
            protection(b.decide(&signal(bare.clone()), &view("0"))).take_profit,
            Some(ExitLevel::Percent(d("50")))
        );
        assert_eq!(
            protection(b.decide(&signal(bare.clone()), &view("0.5"))),
            Protection::default()
        );
        // Opening against a short: a new position, so the defaults arm it.
        assert_eq!(
            protection(b.decide(&signal(bare), &view("-0.5"))).take_profit,
            Some(ExitLevel::Percent(d("50")))
        );
    }
}
