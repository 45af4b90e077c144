//! Account limits and stale signals: the configured limits (`Limits`), the state they are judged on (`LimitsState`,
//! a fold of the log kept in the ledger), and the checks risk runs on an order that opens or grows a position.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use rust_decimal::prelude::Signed;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::event::{Event, Stamped, Verdict};
use crate::order::OrderRequest;
use crate::portfolio::Portfolio;
use crate::risk::{DenyReason, TradingState};
use crate::types::{ClientOrderId, Price, SignalId, Symbol, Timestamp};

/// Milliseconds in a UTC day: days are counted from the Unix epoch.
const DAY_MS: i64 = 86_400_000;
/// The window of the orders-per-minute limits, and how far back order times are kept.
pub const WINDOW_MS: i64 = 60_000;
/// Orders of the last minute kept at most: the most an orders-per-minute limit may be set to (Binance allows 1,200
/// a minute), and a bound on what every published view copies, whatever the throughput.
pub const ORDERS_KEPT: usize = 2_000;

/// A limit written as an amount of the quote currency ("500") or a percentage of a base ("5%").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Absolute(Decimal),
    /// Percent of the base: 5 is 5 %.
    Percent(Decimal),
}

impl Bound {
    /// The limit in quote currency for `base` (start-of-day equity, peak equity). A percentage of a base at or
    /// below zero is zero. `None` only past `Decimal`'s range, which bounded balances never reach.
    pub fn of(self, base: Decimal) -> Option<Decimal> {
        match self {
            Bound::Absolute(amount) => Some(amount),
            Bound::Percent(pct) => base
                .max(Decimal::ZERO)
                .checked_mul(pct)?
                .checked_div(Decimal::ONE_HUNDRED)
                .map(|d| d.normalize()),
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Absolute(amount) => write!(f, "{amount}"),
            Bound::Percent(pct) => write!(f, "{pct}%"),
        }
    }
}

/// The `[risk]` account limits. Every one is off (`None`) unless configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Today's realized loss net of fees at which the account goes `reducing` until the next UTC day.
    pub max_daily_loss: Option<Bound>,
    /// Drawdown of mark-to-market equity from its peak at which the account is `halted`.
    pub max_drawdown: Option<Bound>,
    pub max_open_positions: Option<u32>,
    /// Sum over symbols of |position| x price, after the order.
    pub max_gross_exposure: Option<Decimal>,
    pub max_orders_per_minute: Option<u32>,
    pub max_orders_per_minute_per_symbol: Option<u32>,
    /// Least time between two entries on one symbol, in milliseconds.
    pub entry_cooldown_ms: Option<i64>,
    /// Percent: 5 is 5 %.
    pub max_price_deviation: Option<Decimal>,
    /// Oldest a signal may be when its entry is checked, in milliseconds.
    pub max_signal_age_ms: Option<i64>,
    /// A symbol's own cooldown and price band, in place of the account's (a volatile symbol needs a wider band).
    pub per_symbol: BTreeMap<Symbol, SymbolLimits>,
}

/// The limits a `[[symbols]]` table may set for itself; each unset one is the account's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolLimits {
    pub entry_cooldown_ms: Option<i64>,
    pub max_price_deviation: Option<Decimal>,
}

/// What the log says of a signal that has not finished, for the stale-signal and price-sanity checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalFacts {
    pub received_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub price: Option<Price>,
    /// The symbol's mark before this signal's own price replaced it.
    pub prior_mark: Option<Price>,
}

impl SignalFacts {
    /// How old the signal is at `now`: from the sender's timestamp when it gave one, else from its acceptance. A
    /// timestamp in the future (a sender's clock ahead of ours) is age 0.
    pub fn age_ms(&self, now: Timestamp) -> i64 {
        let from = self.sent_at.unwrap_or(self.received_at);
        now.0.saturating_sub(from.0).max(0)
    }
}

/// An order that left for the venue: what the orders-per-minute limits count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStamp {
    pub at: Timestamp,
    pub symbol: Symbol,
    pub client_order_id: ClientOrderId,
}

/// The account went `reducing` on this day with this loss: what the next day's release is judged on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReducingSince {
    pub day: i64,
    pub loss: Decimal,
    pub start_equity: Decimal,
}

/// The fold of the log the limits are judged on. Bounded: order times of the last 60 s, one entry time per symbol,
/// facts of unfinished signals only, one counter per denial code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsState {
    /// The UTC day (days since the epoch) of the last event folded.
    pub day: Option<i64>,
    /// Mark-to-market equity before the day's first event.
    pub day_start_equity: Decimal,
    /// Realized PnL net of fees at the start of the day, or at the last return to `active` that day: today's loss
    /// is counted from it.
    pub day_base_net: Decimal,
    /// Highest mark-to-market equity since the log began or the last return to `active`.
    pub peak_equity: Decimal,
    pub orders: VecDeque<OrderStamp>,
    pub last_entry: BTreeMap<Symbol, Timestamp>,
    pub signals: BTreeMap<SignalId, SignalFacts>,
    /// Risk denials by code, since the log began.
    pub denials: BTreeMap<String, u64>,
    pub reducing_since: Option<ReducingSince>,
}

/// What the fold needs to remember from before an event changed the portfolio.
#[derive(Clone, Copy, Debug)]
pub struct Before {
    position: Decimal,
}

fn day_of(at: Timestamp) -> i64 {
    at.0.div_euclid(DAY_MS)
}

/// Realized PnL net of fees over all symbols.
fn net(portfolio: &Portfolio) -> Decimal {
    portfolio.realized_pnl().saturating_sub(portfolio.fees())
}

/// A denial's `code`, as the journal and the API write it (`stale`, `halted`, ...).
pub fn denial_code(reason: &DenyReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.get("code")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Whether an order opens or grows a position (`false` for one that only shrinks it). A position so large that the
/// order overflows it grows.
pub fn grows(position: Decimal, order: &OrderRequest) -> bool {
    let Some(after) = position.checked_add(order.side.sign() * order.quantity.get()) else {
        return true;
    };
    let reduces =
        after.abs() <= position.abs() && (after.is_zero() || after.signum() == position.signum());
    !reduces
}

impl LimitsState {
    /// Called before `stamped` is folded into `portfolio`: starts a new UTC day, and remembers the mark and the
    /// position the event is about to replace.
    pub fn before(&mut self, stamped: &Stamped, portfolio: &Portfolio) -> Before {
        let day = day_of(stamped.at);
        if self.day.is_none_or(|d| day > d) {
            let equity = portfolio.equity();
            if self.day.is_none() {
                self.peak_equity = equity;
            }
            self.day = Some(day);
            self.day_start_equity = equity;
            self.day_base_net = net(portfolio);
        }
        let mut position = Decimal::ZERO;
        match &stamped.event {
            Event::SignalAccepted { signal, .. } => {
                self.signals.insert(
                    signal.id.clone(),
                    SignalFacts {
                        received_at: signal.received_at,
                        sent_at: signal.sent_at,
                        price: signal.price,
                        prior_mark: portfolio.last_price(&signal.symbol),
                    },
                );
            }
            Event::Filled { fill, .. } => position = portfolio.position_quantity(&fill.symbol),
            _ => {}
        }
        Before { position }
    }

    /// Called after `stamped` is folded into `portfolio`.
    pub fn after(&mut self, stamped: &Stamped, portfolio: &Portfolio, before: Before) {
        let at = stamped.at;
        let mut marked = false;
        match &stamped.event {
            Event::SignalAccepted { signal, .. } => marked = signal.price.is_some(),
            Event::OrderSent { order } => self.orders.push_back(OrderStamp {
                at,
                symbol: order.symbol.clone(),
                client_order_id: order.client_order_id.clone(),
            }),
            Event::Filled { fill, .. } => {
                let after = portfolio.position_quantity(&fill.symbol);
                let grew = after.abs() > before.position.abs()
                    || (!after.is_zero() && after.signum() != before.position.signum());
                if grew {
                    self.last_entry.insert(fill.symbol.clone(), at);
                }
                marked = true;
            }
            Event::SignalFinished { signal_id, .. } => {
                self.signals.remove(signal_id);
            }
            Event::RiskChecked {
                verdict: Verdict::Denied { reason },
                ..
            } => {
                let count = self.denials.entry(denial_code(reason)).or_default();
                *count = count.saturating_add(1);
            }
            Event::TradingStateChanged { state } => match state {
                // A return to active (an operator's resume, or the next day's release) clears the trips: today's
                // loss and the drawdown are counted from here.
                TradingState::Active => {
                    self.day_base_net = net(portfolio);
                    self.peak_equity = portfolio.equity();
                    self.reducing_since = None;
                }
                TradingState::Reducing => {
                    self.reducing_since = Some(ReducingSince {
                        day: day_of(at),
                        loss: self.loss_today(portfolio, at),
                        start_equity: self.day_start_equity,
                    });
                }
                TradingState::Halted => {}
            },
            Event::Reconciled { .. } => marked = true,
            _ => {}
        }
        if marked {
            self.peak_equity = self.peak_equity.max(portfolio.equity());
        }
        let horizon = at.0.saturating_sub(WINDOW_MS);
        while self.orders.front().is_some_and(|o| o.at.0 <= horizon)
            || self.orders.len() > ORDERS_KEPT
        {
            self.orders.pop_front();
        }
    }

    /// Today's realized loss net of fees (> 0 for a loss, 0 for a gain), as of `now`. Nothing is folded for a day
    /// that has not had an event yet: its loss is 0.
    pub fn loss_today(&self, portfolio: &Portfolio, now: Timestamp) -> Decimal {
        if self.day != Some(day_of(now)) {
            return Decimal::ZERO;
        }
        self.day_base_net
            .saturating_sub(net(portfolio))
            .max(Decimal::ZERO)
    }

    /// How far mark-to-market equity is below its peak (>= 0).
    pub fn drawdown(&self, portfolio: &Portfolio) -> Decimal {
        self.peak_equity
            .saturating_sub(portfolio.equity())
            .max(Decimal::ZERO)
    }

    /// Orders placed in the 60 s up to `now`, on `symbol` or on any symbol.
    fn orders_in_window<'a>(
        &'a self,
        now: Timestamp,
        extra: &'a [OrderStamp],
    ) -> impl Iterator<Item = &'a OrderStamp> {
        let from = now.0.saturating_sub(WINDOW_MS);
        let folded = self.orders.iter();
        let unfolded = extra.iter().filter(|e| {
            !self
                .orders
                .iter()
                .any(|o| o.client_order_id == e.client_order_id)
        });
        folded
            .chain(unfolded)
            .filter(move |o| o.at.0 > from && o.at <= now)
    }

    /// What `/api/account` shows of the limits at `now`.
    pub fn summary(&self, portfolio: &Portfolio, now: Timestamp) -> LimitsSummary {
        LimitsSummary {
            day_start_equity: self.day_start_equity,
            loss_today: self.loss_today(portfolio, now),
            peak_equity: self.peak_equity,
            drawdown: self.drawdown(portfolio),
            orders_last_minute: self.orders_in_window(now, &[]).count(),
        }
    }
}

/// The limits' state as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LimitsSummary {
    pub day_start_equity: Decimal,
    pub loss_today: Decimal,
    pub peak_equity: Decimal,
    pub drawdown: Decimal,
    pub orders_last_minute: usize,
}

/// What an order is judged with, besides the order itself.
pub struct Judged<'a> {
    pub now: Timestamp,
    pub state: &'a LimitsState,
    pub portfolio: &'a Portfolio,
    /// The signal the order came from, if the log has it.
    pub signal: Option<&'a SignalFacts>,
    /// The venue's own price for the symbol, when it streams one: preferred to the log's marks.
    pub venue_mark: Option<Price>,
    /// Orders approved that the folded state does not show yet.
    pub unfolded: &'a [OrderStamp],
}

impl Limits {
    /// Whether any check needs the order's signal (so risk waits for the ledger to fold it).
    pub fn needs_signal(&self) -> bool {
        self.max_signal_age_ms.is_some()
            || self.max_price_deviation.is_some()
            || self
                .per_symbol
                .values()
                .any(|s| s.max_price_deviation.is_some())
    }

    /// The cooldown between entries on `symbol`: its own, else the account's.
    fn entry_cooldown_ms(&self, symbol: &Symbol) -> Option<i64> {
        self.per_symbol
            .get(symbol)
            .and_then(|s| s.entry_cooldown_ms)
            .or(self.entry_cooldown_ms)
    }

    /// The widest a signal's price may be from the last mark on `symbol`, in percent: its own, else the account's.
    fn max_price_deviation(&self, symbol: &Symbol) -> Option<Decimal> {
        self.per_symbol
            .get(symbol)
            .and_then(|s| s.max_price_deviation)
            .or(self.max_price_deviation)
    }

    /// Checks an order that opens or grows a position against every configured limit. Orders that shrink a
    /// position are never checked here.
    pub fn check(&self, order: &OrderRequest, j: &Judged<'_>) -> Result<(), DenyReason> {
        let symbol = &order.symbol;
        if let (Some(limit_ms), Some(signal)) = (self.max_signal_age_ms, j.signal) {
            let age_ms = signal.age_ms(j.now);
            if age_ms > limit_ms {
                return Err(DenyReason::Stale { age_ms, limit_ms });
            }
        }
        if let (Some(limit_pct), Some(price)) = (
            self.max_price_deviation(symbol),
            j.signal.and_then(|s| s.price),
        ) {
            let mark = j.venue_mark.or(j.signal.and_then(|s| s.prior_mark));
            if let Some(mark) = mark {
                // |price - mark| < 1e13 and x100 stays far inside Decimal; mark > 0.
                let deviation_pct = ((price.get() - mark.get()).abs() * Decimal::ONE_HUNDRED)
                    .checked_div(mark.get())
                    .unwrap_or(Decimal::MAX)
                    .round_dp(4)
                    .normalize();
                if deviation_pct > limit_pct {
                    return Err(DenyReason::PriceDeviation {
                        price,
                        mark,
                        deviation_pct,
                        limit_pct,
                    });
                }
            }
        }
        if let (Some(cooldown_ms), Some(last)) = (
            self.entry_cooldown_ms(symbol),
            j.state.last_entry.get(symbol),
        ) {
            let since_ms = j.now.0.saturating_sub(last.0).max(0);
            if since_ms < cooldown_ms {
                return Err(DenyReason::Cooldown {
                    symbol: symbol.clone(),
                    since_ms,
                    cooldown_ms,
                });
            }
        }
        if let Some(limit) = self.max_orders_per_minute {
            let orders = j.state.orders_in_window(j.now, j.unfolded).count();
            if orders >= limit as usize {
                return Err(DenyReason::OrdersPerMinute {
                    symbol: None,
                    orders: orders as u64,
                    limit,
                });
            }
        }
        if let Some(limit) = self.max_orders_per_minute_per_symbol {
            let orders = j
                .state
                .orders_in_window(j.now, j.unfolded)
                .filter(|o| &o.symbol == symbol)
                .count();
            if orders >= limit as usize {
                return Err(DenyReason::OrdersPerMinute {
                    symbol: Some(symbol.clone()),
                    orders: orders as u64,
                    limit,
                });
            }
        }
        let position = j.portfolio.position_quantity(symbol);
        let after = position
            .checked_add(order.side.sign() * order.quantity.get())
            .unwrap_or(Decimal::MAX);
        if let Some(limit) = self.max_open_positions {
            let others = j
                .portfolio
                .positions
                .iter()
                .filter(|(s, p)| *s != symbol && !p.is_flat())
                .count();
            let open = others + usize::from(!after.is_zero());
            if open > limit as usize {
                return Err(DenyReason::OpenPositionsAboveLimit {
                    open: open as u64,
                    limit,
                });
            }
        }
        if let Some(limit) = self.max_gross_exposure {
            // Each term is at most MAX_QUANTITY x MAX_PRICE (1e22); the sum saturates rather than fail.
            let others = j
                .portfolio
                .positions
                .iter()
                .filter(|(s, p)| *s != symbol && !p.is_flat())
                .map(|(s, p)| {
                    let price = j.portfolio.last_price(s).map_or(p.entry_price, |m| m.get());
                    p.quantity.abs().saturating_mul(price)
                })
                .fold(Decimal::ZERO, Decimal::saturating_add);
            let exposure = others
                .saturating_add(after.abs().saturating_mul(order.reference_price.get()))
                .normalize();
            if exposure > limit {
                return Err(DenyReason::GrossExposureAboveLimit { exposure, limit });
            }
        }
        Ok(())
    }

    /// The trading state the limits call for at `now`, if it differs from `current`: `halted` once the drawdown
    /// reaches its limit, `reducing` once today's loss does, and `active` again on a later UTC day after a
    /// `reducing` that the daily loss caused.
    pub fn trip(
        &self,
        state: &LimitsState,
        portfolio: &Portfolio,
        now: Timestamp,
        current: TradingState,
    ) -> Option<TradingState> {
        if current == TradingState::Halted {
            return None;
        }
        if self.drawdown_reached(state, portfolio).is_some() {
            return Some(TradingState::Halted);
        }
        match current {
            TradingState::Active => self
                .daily_loss_reached(state, portfolio, now)
                .map(|_| TradingState::Reducing),
            TradingState::Reducing => {
                let since = state.reducing_since.as_ref()?;
                let bound = self.max_daily_loss?;
                let limit = bound.of(since.start_equity)?;
                let tripped = since.loss > Decimal::ZERO && since.loss >= limit;
                (tripped && since.day < day_of(now)).then_some(TradingState::Active)
            }
            TradingState::Halted => None,
        }
    }

    /// Today's loss and its limit, once the loss has reached it.
    pub fn daily_loss_reached(
        &self,
        state: &LimitsState,
        portfolio: &Portfolio,
        now: Timestamp,
    ) -> Option<(Decimal, Decimal)> {
        let limit = self.max_daily_loss?.of(state.day_start_equity)?;
        let loss = state.loss_today(portfolio, now);
        (loss > Decimal::ZERO && loss >= limit).then_some((loss, limit))
    }

    /// The drawdown and its limit, once the drawdown has reached it.
    pub fn drawdown_reached(
        &self,
        state: &LimitsState,
        portfolio: &Portfolio,
    ) -> Option<(Decimal, Decimal)> {
        let limit = self.max_drawdown?.of(state.peak_equity)?;
        let drawdown = state.drawdown(portfolio);
        (drawdown > Decimal::ZERO && drawdown >= limit).then_some((drawdown, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Delivery;
    use crate::ledger::Ledger;
    use crate::order::{Fill, FillReason, Protection, SignalOutcome};
    use crate::signal::{Action, Intent, Signal};
    use crate::types::{Leverage, Quantity, Side};
    use std::str::FromStr;

    /// 2024-01-01T00:00:00Z, the start of UTC day 19723.
    const DAY: i64 = 1_704_067_200_000;
    const MIN: i64 = 60_000;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn p(s: &str) -> Price {
        Price::from_str(s).unwrap()
    }

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    fn order(id: &str, symbol: &str, side: Side, qty: &str, price: &str) -> OrderRequest {
        let signal_id = SignalId::new(id).unwrap();
        OrderRequest {
            client_order_id: ClientOrderId::derive(&signal_id, 0),
            signal_id,
            symbol: sym(symbol),
            action: Action::OpenLong,
            side,
            quantity: Quantity::from_str(qty).unwrap(),
            reduce_only: false,
            leverage: Leverage::ONE,
            reference_price: p(price),
            protection: Protection::default(),
            limit: None,
        }
    }

    /// A ledger that folds events at the times given, offsets in order.
    struct Log {
        ledger: Ledger,
    }

    impl Log {
        fn new() -> Self {
            Self {
                ledger: Ledger::new(d("10000")),
            }
        }

        fn at(&mut self, at: i64, event: Event) -> &mut Self {
            let offset = self.ledger.upto.next();
            self.ledger.apply(&Stamped {
                offset,
                at: Timestamp(at),
                event,
            });
            self
        }

        fn signal(
            &mut self,
            at: i64,
            id: &str,
            symbol: &str,
            price: &str,
            sent_at: Option<i64>,
        ) -> &mut Self {
            let signal = Signal {
                id: SignalId::new(id).unwrap(),
                source: "t".into(),
                symbol: sym(symbol),
                received_at: Timestamp(at),
                sent_at: sent_at.map(Timestamp),
                price: Some(p(price)),
                intent: Intent::Tick,
                comment: None,
            };
            self.at(
                at,
                Event::SignalAccepted {
                    signal,
                    delivery: Delivery {
                        keys: String::new(),
                        payload: "{}".into(),
                    },
                },
            )
        }

        /// An order sent and filled at `price` with `fee`: a test's one line per trade reads best flat.
        #[allow(clippy::too_many_arguments)]
        fn trade(
            &mut self,
            at: i64,
            id: &str,
            symbol: &str,
            side: Side,
            qty: &str,
            price: &str,
            fee: &str,
        ) -> &mut Self {
            let order = order(id, symbol, side, qty, price);
            let fill = Fill {
                client_order_id: order.client_order_id.clone(),
                symbol: order.symbol.clone(),
                side,
                quantity: order.quantity,
                price: p(price),
                fee: d(fee),
                reason: FillReason::Signal,
                at: Timestamp(at),
            };
            self.at(
                at,
                Event::OrderSent {
                    order: order.clone(),
                },
            );
            self.at(
                at,
                Event::Filled {
                    order: Some(order),
                    fill,
                    cause: None,
                },
            )
        }

        fn state(&mut self, at: i64, state: TradingState) -> &mut Self {
            self.at(at, Event::TradingStateChanged { state })
        }

        fn judged(&self, now: i64, signal: Option<&str>) -> Judged<'_> {
            Judged {
                now: Timestamp(now),
                state: &self.ledger.limits,
                portfolio: &self.ledger.portfolio,
                signal: signal
                    .and_then(|id| self.ledger.limits.signals.get(&SignalId::new(id).unwrap())),
                venue_mark: None,
                unfolded: &[],
            }
        }
    }

    #[test]
    fn daily_loss_trips_to_reducing_and_resets_at_the_next_utc_day() {
        let mut log = Log::new();
        // Buy 1 at 100 (fee 0.1), sell 1 at 90 (fee 0.09): realized -10, fees 0.19, today's loss 10.19.
        log.trade(DAY + 10 * MIN, "a", "BTCUSDT", Side::Buy, "1", "100", "0.1")
            .trade(
                DAY + 20 * MIN,
                "b",
                "BTCUSDT",
                Side::Sell,
                "1",
                "90",
                "0.09",
            );
        let now = Timestamp(DAY + 21 * MIN);
        let st = &log.ledger.limits;
        assert_eq!(st.day_start_equity, d("10000"));
        assert_eq!(st.loss_today(&log.ledger.portfolio, now), d("10.19"));
        for (limit, trips) in [
            (Bound::Absolute(d("10.2")), false),
            (Bound::Absolute(d("10.19")), true),
            // 0.1 % of the start-of-day equity 10000 = 10.
            (Bound::Percent(d("0.1")), true),
        ] {
            let limits = Limits {
                max_daily_loss: Some(limit),
                ..Limits::default()
            };
            let want = trips.then_some(TradingState::Reducing);
            assert_eq!(
                limits.trip(st, &log.ledger.portfolio, now, TradingState::Active),
                want,
                "{limit}"
            );
        }
        let limits = Limits {
            max_daily_loss: Some(Bound::Absolute(d("10"))),
            ..Limits::default()
        };
        log.state(DAY + 21 * MIN, TradingState::Reducing);
        let st = &log.ledger.limits;
        assert_eq!(
            st.reducing_since,
            Some(ReducingSince {
                day: DAY / DAY_MS,
                loss: d("10.19"),
                start_equity: d("10000"),
            })
        );
        let pf = &log.ledger.portfolio;
        // Reducing for the rest of the day, active again from 00:00:00.000 UTC.
        let last_ms = Timestamp(DAY + DAY_MS - 1);
        assert_eq!(limits.trip(st, pf, last_ms, TradingState::Reducing), None);
        let midnight = Timestamp(DAY + DAY_MS);
        assert_eq!(
            limits.trip(st, pf, midnight, TradingState::Reducing),
            Some(TradingState::Active)
        );
        // The new day counts from zero: a loss of 9.5 does not trip the limit of 10, 10 more does.
        log.state(DAY + DAY_MS, TradingState::Active)
            .trade(
                DAY + DAY_MS + MIN,
                "c",
                "BTCUSDT",
                Side::Buy,
                "1",
                "100",
                "0",
            )
            .trade(
                DAY + DAY_MS + 2 * MIN,
                "d",
                "BTCUSDT",
                Side::Sell,
                "1",
                "90.5",
                "0",
            );
        let (st, pf) = (&log.ledger.limits, &log.ledger.portfolio);
        let now = Timestamp(DAY + DAY_MS + 3 * MIN);
        assert_eq!(st.day_start_equity, d("9989.81"));
        assert_eq!(st.loss_today(pf, now), d("9.5"));
        assert_eq!(limits.trip(st, pf, now, TradingState::Active), None);
    }

    #[test]
    fn an_operator_resume_clears_the_days_trip() {
        let mut log = Log::new();
        log.trade(DAY + MIN, "a", "BTCUSDT", Side::Buy, "1", "100", "0")
            .trade(DAY + 2 * MIN, "b", "BTCUSDT", Side::Sell, "1", "80", "0")
            .state(DAY + 3 * MIN, TradingState::Reducing)
            .state(DAY + 4 * MIN, TradingState::Active);
        let limits = Limits {
            max_daily_loss: Some(Bound::Absolute(d("10"))),
            ..Limits::default()
        };
        let (st, pf) = (&log.ledger.limits, &log.ledger.portfolio);
        let now = Timestamp(DAY + 5 * MIN);
        // The loss of 20 was before the resume: today counts from it.
        assert_eq!(st.loss_today(pf, now), d("0"));
        assert_eq!(limits.trip(st, pf, now, TradingState::Active), None);
        assert_eq!(st.reducing_since, None);
    }

    #[test]
    fn drawdown_from_peak_equity_halts() {
        let mut log = Log::new();
        // Long 1 at 100, then marked at 150: equity 10000 + 50 = 10050, the peak; then marked at 120: 10020.
        log.trade(DAY + MIN, "a", "BTCUSDT", Side::Buy, "1", "100", "0")
            .signal(DAY + 2 * MIN, "m1", "BTCUSDT", "150", None)
            .signal(DAY + 3 * MIN, "m2", "BTCUSDT", "120", None);
        let (st, pf) = (&log.ledger.limits, &log.ledger.portfolio);
        assert_eq!(st.peak_equity, d("10050"));
        assert_eq!(st.drawdown(pf), d("30"));
        let now = Timestamp(DAY + 4 * MIN);
        for (limit, halts) in [
            (Bound::Absolute(d("30.01")), false),
            (Bound::Absolute(d("30")), true),
            // 0.3 % of 10050 = 30.15 > 30; 0.29 % = 29.145 <= 30.
            (Bound::Percent(d("0.3")), false),
            (Bound::Percent(d("0.29")), true),
        ] {
            let limits = Limits {
                max_drawdown: Some(limit),
                ..Limits::default()
            };
            let want = halts.then_some(TradingState::Halted);
            assert_eq!(
                limits.trip(st, pf, now, TradingState::Active),
                want,
                "{limit}"
            );
            assert_eq!(
                limits.trip(st, pf, now, TradingState::Reducing),
                want,
                "{limit}"
            );
            assert_eq!(limits.trip(st, pf, now, TradingState::Halted), None);
        }
        // A resume measures from the equity at that moment (10020).
        log.state(DAY + 5 * MIN, TradingState::Active);
        assert_eq!(log.ledger.limits.peak_equity, d("10020"));
        assert_eq!(log.ledger.limits.drawdown(&log.ledger.portfolio), d("0"));
    }

    #[test]
    fn cooldown_between_entries_of_one_symbol() {
        let mut log = Log::new();
        log.trade(DAY + MIN, "a", "BTCUSDT", Side::Buy, "1", "100", "0");
        let limits = Limits {
            entry_cooldown_ms: Some(60_000),
            ..Limits::default()
        };
        let add = order("b", "BTCUSDT", Side::Buy, "1", "100");
        // 30 s after the entry: denied; at 60 s: allowed. Another symbol is not held back.
        assert_eq!(
            limits.check(&add, &log.judged(DAY + MIN + 30_000, None)),
            Err(DenyReason::Cooldown {
                symbol: sym("BTCUSDT"),
                since_ms: 30_000,
                cooldown_ms: 60_000,
            })
        );
        assert_eq!(limits.check(&add, &log.judged(DAY + 2 * MIN, None)), Ok(()));
        let eth = order("c", "ETHUSDT", Side::Buy, "1", "100");
        assert_eq!(limits.check(&eth, &log.judged(DAY + MIN + 1, None)), Ok(()));
        // A close is not an entry: the cooldown still runs from the buy.
        log.trade(
            DAY + MIN + 40_000,
            "d",
            "BTCUSDT",
            Side::Sell,
            "1",
            "100",
            "0",
        );
        assert_eq!(
            log.ledger.limits.last_entry[&sym("BTCUSDT")],
            Timestamp(DAY + MIN)
        );
    }

    #[test]
    fn a_symbol_s_own_cooldown_and_price_band_replace_the_account_s() {
        let mut log = Log::new();
        log.signal(DAY, "m1", "BTCUSDT", "100", None)
            .signal(DAY, "m2", "SOLUSDT", "100", None);
        log.trade(DAY + MIN, "a", "BTCUSDT", Side::Buy, "1", "100", "0");
        log.trade(DAY + MIN, "b", "SOLUSDT", Side::Buy, "1", "100", "0");
        log.signal(DAY + 2 * MIN, "c", "SOLUSDT", "108", None)
            .signal(DAY + 2 * MIN, "d", "BTCUSDT", "108", None);
        let limits = Limits {
            entry_cooldown_ms: Some(60_000),
            max_price_deviation: Some(d("5")),
            per_symbol: BTreeMap::from([(
                sym("SOLUSDT"),
                SymbolLimits {
                    entry_cooldown_ms: Some(600_000),
                    max_price_deviation: Some(d("10")),
                },
            )]),
            ..Limits::default()
        };
        assert!(limits.needs_signal());
        // 90 s after each entry: past BTCUSDT's account cooldown, inside SOLUSDT's own ten minutes.
        let now = DAY + MIN + 90_000;
        let btc = order("x", "BTCUSDT", Side::Buy, "1", "100");
        assert_eq!(limits.check(&btc, &log.judged(now, None)), Ok(()));
        let sol = order("y", "SOLUSDT", Side::Buy, "1", "100");
        assert_eq!(
            limits.check(&sol, &log.judged(now, None)),
            Err(DenyReason::Cooldown {
                symbol: sym("SOLUSDT"),
                since_ms: 90_000,
                cooldown_ms: 600_000,
            })
        );
        // 8 % from the mark: inside SOLUSDT's 10 % band, outside the account's 5 % for BTCUSDT.
        let later = DAY + 20 * MIN;
        let c = order("c", "SOLUSDT", Side::Buy, "1", "108");
        assert_eq!(limits.check(&c, &log.judged(later, Some("c"))), Ok(()));
        let d_order = order("d", "BTCUSDT", Side::Buy, "1", "108");
        assert_eq!(
            limits.check(&d_order, &log.judged(later, Some("d"))),
            Err(DenyReason::PriceDeviation {
                price: p("108"),
                mark: p("100"),
                deviation_pct: d("8"),
                limit_pct: d("5"),
            })
        );
    }

    #[test]
    fn a_price_far_from_the_last_mark_before_it_is_denied() {
        let mut log = Log::new();
        log.signal(DAY, "a", "BTCUSDT", "100", None)
            .signal(DAY + 1, "b", "BTCUSDT", "106", None)
            .signal(DAY + 2, "c", "BTCUSDT", "104", None);
        let limits = Limits {
            max_price_deviation: Some(d("5")),
            ..Limits::default()
        };
        // b: |106 - 100| / 100 = 6 % > 5 %. The ledger marks 106 on accepting b; its prior mark 100 is kept.
        let b = order("b", "BTCUSDT", Side::Buy, "1", "106");
        assert_eq!(
            limits.check(&b, &log.judged(DAY + 3, Some("b"))),
            Err(DenyReason::PriceDeviation {
                price: p("106"),
                mark: p("100"),
                deviation_pct: d("6"),
                limit_pct: d("5"),
            })
        );
        // c: |104 - 106| / 106 = 1.8868 %: allowed.
        let c = order("c", "BTCUSDT", Side::Buy, "1", "104");
        assert_eq!(limits.check(&c, &log.judged(DAY + 3, Some("c"))), Ok(()));
        // The venue's own mark, when it has one, is the reference: |104 - 110| / 110 = 5.4545 %.
        let mut judged = log.judged(DAY + 3, Some("c"));
        judged.venue_mark = Some(p("110"));
        assert_eq!(
            limits.check(&c, &judged),
            Err(DenyReason::PriceDeviation {
                price: p("104"),
                mark: p("110"),
                deviation_pct: d("5.4545"),
                limit_pct: d("5"),
            })
        );
        // The first price of a symbol has nothing to compare with.
        assert_eq!(
            log.ledger.limits.signals[&SignalId::new("a").unwrap()].prior_mark,
            None
        );
        let a = order("a", "BTCUSDT", Side::Buy, "1", "100");
        assert_eq!(limits.check(&a, &log.judged(DAY + 3, Some("a"))), Ok(()));
    }

    #[test]
    fn stale_signals_by_the_senders_timestamp_or_the_time_since_acceptance() {
        let mut log = Log::new();
        // "old" was sent 2 min before it arrived; "late" carries no timestamp and arrived at DAY.
        log.signal(DAY, "old", "BTCUSDT", "100", Some(DAY - 2 * MIN))
            .signal(DAY, "late", "BTCUSDT", "100", None)
            .signal(DAY, "ahead", "BTCUSDT", "100", Some(DAY + MIN));
        let limits = Limits {
            max_signal_age_ms: Some(60_000),
            ..Limits::default()
        };
        let check = |id: &str, now: i64| {
            limits.check(
                &order(id, "BTCUSDT", Side::Buy, "1", "100"),
                &log.judged(now, Some(id)),
            )
        };
        assert_eq!(
            check("old", DAY + 1000),
            Err(DenyReason::Stale {
                age_ms: 121_000,
                limit_ms: 60_000,
            })
        );
        assert_eq!(check("late", DAY + 1000), Ok(()));
        assert_eq!(check("late", DAY + 60_000), Ok(()));
        // Checked after a restart 60.001 s later (a recovered signal): stale.
        assert_eq!(
            check("late", DAY + 60_001),
            Err(DenyReason::Stale {
                age_ms: 60_001,
                limit_ms: 60_000,
            })
        );
        // A sender's clock ahead of ours: age 0.
        assert_eq!(check("ahead", DAY), Ok(()));
        // A finished signal's facts are dropped.
        log.at(
            DAY + 1,
            Event::SignalFinished {
                signal_id: SignalId::new("old").unwrap(),
                symbol: sym("BTCUSDT"),
                outcome: SignalOutcome::Ignored {
                    reason: crate::order::IgnoreReason::NothingToClose,
                },
            },
        );
        assert_eq!(log.ledger.limits.signals.len(), 2);
    }

    #[test]
    fn open_positions_and_gross_exposure() {
        let mut log = Log::new();
        // Long 1 BTC at 100, short 2 ETH at 50; ETH marked at 40 afterwards.
        log.trade(DAY, "a", "BTCUSDT", Side::Buy, "1", "100", "0")
            .trade(DAY, "b", "ETHUSDT", Side::Sell, "2", "50", "0")
            .signal(DAY, "m", "ETHUSDT", "40", None);
        let positions = Limits {
            max_open_positions: Some(2),
            ..Limits::default()
        };
        let sol = order("c", "SOLUSDT", Side::Buy, "1", "30");
        assert_eq!(
            positions.check(&sol, &log.judged(DAY, None)),
            Err(DenyReason::OpenPositionsAboveLimit { open: 3, limit: 2 })
        );
        let more_btc = order("d", "BTCUSDT", Side::Buy, "1", "100");
        assert_eq!(positions.check(&more_btc, &log.judged(DAY, None)), Ok(()));

        // BTC 1 x mark 100 (the fill marked nothing; the entry price 100) + ETH |-2| x mark 40 = 180, + SOL 1 x 30
        // = 210 after the order.
        let exposure = |limit: &str| Limits {
            max_gross_exposure: Some(d(limit)),
            ..Limits::default()
        };
        assert_eq!(
            exposure("209.99").check(&sol, &log.judged(DAY, None)),
            Err(DenyReason::GrossExposureAboveLimit {
                exposure: d("210"),
                limit: d("209.99"),
            })
        );
        assert_eq!(exposure("210").check(&sol, &log.judged(DAY, None)), Ok(()));
        // Adding 1 BTC valued at the order's 100: 2 x 100 + 80 = 280.
        assert_eq!(
            exposure("279").check(&more_btc, &log.judged(DAY, None)),
            Err(DenyReason::GrossExposureAboveLimit {
                exposure: d("280"),
                limit: d("279"),
            })
        );
    }

    #[test]
    fn orders_per_minute_count_the_last_60_seconds() {
        let mut log = Log::new();
        log.trade(DAY, "a", "BTCUSDT", Side::Buy, "1", "100", "0")
            .trade(DAY + 10_000, "b", "ETHUSDT", Side::Buy, "1", "100", "0")
            .trade(DAY + 20_000, "c", "BTCUSDT", Side::Buy, "1", "100", "0");
        let global = Limits {
            max_orders_per_minute: Some(3),
            ..Limits::default()
        };
        let next = order("d", "ETHUSDT", Side::Buy, "1", "100");
        assert_eq!(
            global.check(&next, &log.judged(DAY + 30_000, None)),
            Err(DenyReason::OrdersPerMinute {
                symbol: None,
                orders: 3,
                limit: 3,
            })
        );
        // At DAY + 60 s the first order is 60 s old and out of the window.
        assert_eq!(global.check(&next, &log.judged(DAY + 60_000, None)), Ok(()));
        // An approved order the ledger has not folded yet counts too.
        let unfolded = [OrderStamp {
            at: Timestamp(DAY + 59_000),
            symbol: sym("ETHUSDT"),
            client_order_id: ClientOrderId::derive(&SignalId::new("x").unwrap(), 0),
        }];
        let mut judged = log.judged(DAY + 60_000, None);
        judged.unfolded = &unfolded;
        assert!(global.check(&next, &judged).is_err());

        let per_symbol = Limits {
            max_orders_per_minute_per_symbol: Some(2),
            ..Limits::default()
        };
        let btc = order("e", "BTCUSDT", Side::Buy, "1", "100");
        assert_eq!(
            per_symbol.check(&btc, &log.judged(DAY + 30_000, None)),
            Err(DenyReason::OrdersPerMinute {
                symbol: Some(sym("BTCUSDT")),
                orders: 2,
                limit: 2,
            })
        );
        assert_eq!(
            per_symbol.check(&next, &log.judged(DAY + 30_000, None)),
            Ok(())
        );

        // The fold keeps only the last 60 s of order times.
        log.trade(DAY + 80_001, "f", "BTCUSDT", Side::Sell, "1", "100", "0");
        let kept: Vec<_> = log
            .ledger
            .limits
            .orders
            .iter()
            .map(|o| o.at.0 - DAY)
            .collect();
        assert_eq!(kept, [80_001]);
    }

    #[test]
    fn denials_are_counted_by_code_and_survive_a_checkpoint() {
        let mut log = Log::new();
        for reason in [
            DenyReason::Stale {
                age_ms: 1,
                limit_ms: 0,
            },
            DenyReason::Stale {
                age_ms: 2,
                limit_ms: 0,
            },
            DenyReason::Halted,
        ] {
            log.at(
                DAY,
                Event::RiskChecked {
                    order: order("a", "BTCUSDT", Side::Buy, "1", "100"),
                    verdict: Verdict::Denied { reason },
                },
            );
        }
        let want: BTreeMap<String, u64> =
            [("halted".to_owned(), 1), ("stale".to_owned(), 2)].into();
        assert_eq!(log.ledger.limits.denials, want);
        let back =
            Ledger::from_checkpoint(serde_json::from_str(&log.ledger.to_checkpoint()).unwrap())
                .unwrap();
        assert_eq!(back.limits, log.ledger.limits);
    }

    #[test]
    fn only_orders_that_open_or_grow_a_position_are_checked() {
        let buy = order("a", "BTCUSDT", Side::Buy, "1", "100");
        let sell = order("a", "BTCUSDT", Side::Sell, "1", "100");
        assert!(grows(d("0"), &buy));
        assert!(grows(d("1"), &buy));
        assert!(!grows(d("1"), &sell));
        assert!(!grows(d("2"), &sell));
        assert!(grows(d("0.5"), &sell), "a flip opens a short");
        assert!(grows(d("-1"), &sell));
    }
}
