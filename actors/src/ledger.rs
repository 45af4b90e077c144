//! The ledger: the fold of the event log into everything the daemon's state is made of (the portfolio, resting exits,
//! the trading state, paused symbols, unfinished signals). A restart is the same fold from the last checkpoint; the
//! running daemon keeps folding as events become durable (see `ledger_actor`). Plain data, so it checkpoints as JSON.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::event::{Event, Offset, Stamped};
use crate::exits::{self, ArmedExits};
use crate::limits::LimitsState;
use crate::order::{Fill, OrderRequest};
use crate::portfolio::Portfolio;
use crate::risk::TradingState;
use crate::signal::Signal;
use crate::types::{ClientOrderId, SignalId, Symbol, Timestamp};

/// An acknowledged signal that has not finished: it is processed (again) after a restart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub offset: Offset,
    pub signal: Signal,
    /// The orders decided for it, if the decision was recorded: placed again (idempotently) instead of deciding
    /// anew.
    pub decided: Option<Vec<OrderRequest>>,
    /// Its orders that filled, so they are not placed twice.
    pub fills: Vec<Fill>,
}

/// Everything the log says, folded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// The last event folded in.
    pub upto: Offset,
    pub portfolio: Portfolio,
    pub exits: BTreeMap<Symbol, ArmedExits>,
    /// Limit entries resting on the venue, by client order id, until they fill or are cancelled.
    #[serde(default)]
    pub resting: BTreeMap<ClientOrderId, OrderRequest>,
    /// The signal whose entry opened each open position (from flat, or through zero).
    #[serde(default)]
    pub opened_by: BTreeMap<Symbol, SignalId>,
    /// `None`: never changed; the configuration's state holds.
    pub trading_state: Option<TradingState>,
    pub paused: BTreeMap<Symbol, bool>,
    /// What the account limits are judged on (day start, peak, recent orders, entries, denials).
    #[serde(default)]
    pub limits: LimitsState,
    pending: BTreeMap<SignalId, Pending>,
    /// The same signals by offset, oldest first.
    #[serde(skip)]
    order: BTreeSet<(Offset, SignalId)>,
}

impl Ledger {
    pub fn new(starting_balance: Decimal) -> Self {
        Self {
            upto: Offset::START,
            portfolio: Portfolio::new(starting_balance),
            exits: BTreeMap::new(),
            resting: BTreeMap::new(),
            opened_by: BTreeMap::new(),
            trading_state: None,
            paused: BTreeMap::new(),
            limits: LimitsState::default(),
            pending: BTreeMap::new(),
            order: BTreeSet::new(),
        }
    }

    /// A ledger read back from a checkpoint.
    pub fn from_checkpoint(state: serde_json::Value) -> Result<Self, serde_json::Error> {
        let mut ledger: Ledger = serde_json::from_value(state)?;
        ledger.order = ledger
            .pending
            .values()
            .map(|p| (p.offset, p.signal.id.clone()))
            .collect();
        Ok(ledger)
    }

    /// The ledger as JSON text, written straight from the data (no intermediate `Value` tree: with a thousand
    /// unfinished signals that tree was megabytes of small allocations at every checkpoint).
    pub fn to_checkpoint(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Folds one event in. Events at or before `upto` were folded already and change nothing.
    pub fn apply(&mut self, stamped: &Stamped) {
        if stamped.offset <= self.upto {
            return;
        }
        self.upto = stamped.offset;
        let before = self.limits.before(stamped, &self.portfolio);
        match &stamped.event {
            Event::SignalAccepted { signal, .. } => {
                if let Some(price) = signal.price {
                    self.portfolio.mark(&signal.symbol, price);
                    // The paper venue trails on the same price before it looks for a crossing; a restart must agree.
                    if let Some(armed) = self.exits.get_mut(&signal.symbol) {
                        armed.trail(price);
                    }
                }
                self.order.insert((stamped.offset, signal.id.clone()));
                self.pending.insert(
                    signal.id.clone(),
                    Pending {
                        offset: stamped.offset,
                        signal: signal.clone(),
                        decided: None,
                        fills: Vec::new(),
                    },
                );
            }
            Event::Decided {
                signal_id, orders, ..
            } => {
                if let Some(pending) = self.pending.get_mut(signal_id) {
                    pending.decided = Some(orders.clone());
                }
            }
            Event::OrderResting { order } => {
                self.resting
                    .insert(order.client_order_id.clone(), order.clone());
            }
            Event::Filled { order, fill, .. } => {
                self.resting.remove(&fill.client_order_id);
                let before = self.portfolio.position_quantity(&fill.symbol);
                // The entry's leverage becomes the position's, exactly as the paper book books it.
                self.portfolio
                    .apply_fill_at(fill, order.as_ref().map(|o| o.leverage));
                let after = self.portfolio.position_quantity(&fill.symbol);
                if after.is_zero() {
                    self.opened_by.remove(&fill.symbol);
                } else if before.is_zero() || before.is_sign_positive() != after.is_sign_positive()
                {
                    match order {
                        Some(o) => {
                            self.opened_by
                                .insert(fill.symbol.clone(), o.signal_id.clone());
                        }
                        None => {
                            self.opened_by.remove(&fill.symbol);
                        }
                    }
                }
                let mut armed = self.exits.remove(&fill.symbol);
                let entry = self
                    .portfolio
                    .positions
                    .get(&fill.symbol)
                    .map_or(Decimal::ZERO, |p| p.entry_price);
                exits::after_fill_at(&mut armed, order.as_ref(), fill, after, entry);
                if let Some(armed) = armed {
                    self.exits.insert(fill.symbol.clone(), armed);
                }
                if let Some(pending) = order
                    .as_ref()
                    .and_then(|o| self.pending.get_mut(&o.signal_id))
                {
                    pending.fills.push(fill.clone());
                }
            }
            Event::SignalFinished { signal_id, .. } => {
                if let Some(pending) = self.pending.remove(signal_id) {
                    self.order.remove(&(pending.offset, pending.signal.id));
                }
            }
            Event::TradingStateChanged { state } => self.trading_state = Some(*state),
            Event::StrategyStateChanged { symbol, paused } => {
                self.paused.insert(symbol.clone(), *paused);
            }
            // The legs the venue holds now replace those before, while the position they guard is open.
            Event::ExitsMoved { symbol, exits, .. } => {
                let open = !self.portfolio.position_quantity(symbol).is_zero();
                if open && (exits.stop_loss.is_some() || exits.take_profit.is_some()) {
                    self.exits.insert(symbol.clone(), exits.clone());
                } else {
                    self.exits.remove(symbol);
                }
            }
            Event::Cancelled {
                symbol,
                client_order_id,
                ..
            } => {
                self.resting.remove(client_order_id);
                if let Some(armed) = self.exits.get_mut(symbol) {
                    armed.cancel(client_order_id);
                }
            }
            Event::Reconciled {
                balance, positions, ..
            } => {
                if let Some(balance) = balance {
                    // A fresh log of a real account starts from nothing: its first balance is the venue's.
                    if self.portfolio.starting_balance.is_zero() {
                        self.portfolio.starting_balance = *balance;
                    }
                    self.portfolio.balance = *balance;
                }
                for adopted in positions {
                    self.portfolio
                        .adopt(&adopted.symbol, adopted.quantity, adopted.entry_price);
                    match &adopted.exits {
                        Some(exits) if !adopted.quantity.is_zero() => {
                            self.exits.insert(adopted.symbol.clone(), exits.clone());
                        }
                        _ => {
                            self.exits.remove(&adopted.symbol);
                        }
                    }
                }
            }
            Event::Observed { observation } => {
                // A venue's own mark values its positions between signals (a live venue's signals may carry no
                // price at all), so equity, unrealized PnL and the drawdown limit follow the market.
                if let Some((symbol, mark)) = observation.venue_mark() {
                    self.portfolio.mark(symbol, mark);
                }
            }
            Event::RiskChecked { .. }
            | Event::OrderSent { .. }
            | Event::Rejected { .. }
            | Event::OperatorCommand { .. }
            | Event::RuleFired { .. } => {}
        }
        self.limits.after(stamped, &self.portfolio, before);
    }

    /// Unfinished signals, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Pending> {
        self.order.iter().filter_map(|(_, id)| self.pending.get(id))
    }

    /// How many signals are unfinished, and when the oldest of them arrived.
    pub fn backlog(&self) -> (usize, Option<Timestamp>) {
        let oldest = self.pending().next().map(|p| p.signal.received_at);
        (self.pending.len(), oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Delivery;
    use crate::order::{FillReason, Protection, SignalOutcome};
    use crate::signal::{Action, ExitLevel, Intent};
    use crate::types::{ClientOrderId, Leverage, Price, Quantity, Side};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn btc() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }

    fn signal(id: &str, price: &str) -> Signal {
        Signal {
            id: SignalId::new(id).unwrap(),
            source: "t".into(),
            symbol: btc(),
            received_at: Timestamp(1),
            sent_at: None,
            price: Some(Price::from_str(price).unwrap()),
            intent: Intent::Tick,
            comment: None,
        }
    }

    fn order(signal: &str, side: Side, qty: &str, stop: Option<&str>) -> OrderRequest {
        let signal_id = SignalId::new(signal).unwrap();
        OrderRequest {
            client_order_id: ClientOrderId::derive(&signal_id, 0),
            signal_id,
            symbol: btc(),
            action: Action::OpenLong,
            side,
            quantity: Quantity::from_str(qty).unwrap(),
            reduce_only: false,
            leverage: Leverage::ONE,
            reference_price: Price::from_str("100").unwrap(),
            protection: Protection {
                stop_loss: stop.map(|s| ExitLevel::Percent(d(s))),
                take_profit: None,
            },
            limit: None,
        }
    }

    fn fill(order: &OrderRequest, price: &str) -> Fill {
        Fill {
            client_order_id: order.client_order_id.clone(),
            symbol: btc(),
            side: order.side,
            quantity: order.quantity,
            price: Price::from_str(price).unwrap(),
            fee: Decimal::ZERO,
            reason: FillReason::Signal,
            at: Timestamp(2),
        }
    }

    fn log(events: Vec<Event>) -> Vec<Stamped> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| Stamped {
                offset: Offset(i as u64 + 1),
                at: Timestamp(i as i64),
                event,
            })
            .collect()
    }

    #[test]
    fn folds_fills_exits_and_unfinished_signals() {
        let entry = order("a", Side::Buy, "2", Some("10"));
        let events = log(vec![
            Event::SignalAccepted {
                signal: signal("a", "100"),
                delivery: Delivery {
                    keys: String::new(),
                    payload: "{}".into(),
                },
            },
            Event::Decided {
                signal_id: entry.signal_id.clone(),
                symbol: btc(),
                orders: vec![entry.clone()],
            },
            Event::Filled {
                order: Some(entry.clone()),
                fill: fill(&entry, "100"),
                cause: None,
            },
            Event::SignalAccepted {
                signal: signal("b", "95"),
                delivery: Delivery {
                    keys: String::new(),
                    payload: "{}".into(),
                },
            },
            Event::SignalFinished {
                signal_id: entry.signal_id.clone(),
                symbol: btc(),
                outcome: SignalOutcome::Filled { orders: vec![] },
            },
            Event::TradingStateChanged {
                state: TradingState::Reducing,
            },
        ]);
        let mut ledger = Ledger::new(d("1000"));
        for e in &events {
            ledger.apply(e);
        }
        assert_eq!(ledger.portfolio.position_quantity(&btc()), d("2"));
        assert_eq!(
            ledger.portfolio.last_price(&btc()),
            Price::from_str("95").ok()
        );
        assert_eq!(
            ledger.exits[&btc()].stop_loss.as_ref().map(|s| s.0),
            Price::from_str("90").ok()
        );
        let pending: Vec<_> = ledger.pending().map(|p| p.signal.id.as_str()).collect();
        assert_eq!(pending, ["b"]);
        assert_eq!(ledger.trading_state, Some(TradingState::Reducing));
        assert_eq!(ledger.backlog().0, 1);

        // A checkpoint taken half-way, then the rest folded, gives the same ledger.
        let mut half = Ledger::new(d("1000"));
        for e in &events[..3] {
            half.apply(e);
        }
        let mut resumed =
            Ledger::from_checkpoint(serde_json::from_str(&half.to_checkpoint()).unwrap()).unwrap();
        for e in &events {
            resumed.apply(e);
        }
        assert_eq!(resumed, ledger);
        assert_eq!(resumed.pending().count(), 1);
    }

    #[test]
    fn a_resting_limit_entry_is_kept_until_it_fills_or_is_cancelled() {
        use crate::event::CancelReason;
        use crate::signal::{LimitOrder, TimeInForce};
        let limit = |mut o: OrderRequest, at: &str| {
            o.limit = Some(LimitOrder {
                price: Price::from_str(at).unwrap(),
                time_in_force: TimeInForce::Gtc,
                expires_at: None,
            });
            o.reference_price = Price::from_str(at).unwrap();
            o.leverage = Leverage::new(5).unwrap();
            o
        };
        let a = limit(order("a", Side::Buy, "2", Some("2")), "95");
        let b = limit(order("b", Side::Buy, "1", None), "90");
        let mut ledger = Ledger::new(d("1000"));
        for e in &log(vec![
            Event::OrderResting { order: a.clone() },
            Event::OrderResting { order: b.clone() },
        ]) {
            ledger.apply(e);
        }
        assert_eq!(ledger.resting.len(), 2);
        assert!(ledger.portfolio.position_quantity(&btc()).is_zero());
        // The margin they hold: 2 x 95 / 5 = 38 and 1 x 90 / 5 = 18.
        let view = crate::ledger_actor::View::of(&ledger);
        assert_eq!(
            view.resting_margin(&ClientOrderId::derive(&SignalId::new("x").unwrap(), 0)),
            d("56")
        );
        assert_eq!(view.resting_margin(&b.client_order_id), d("38"));

        // `a` fills at its limit: a position of 2 at 95, 5x, its 2 % stop at 93.1; `b` is cancelled.
        let mut filled = fill(&a, "95");
        filled.at = Timestamp(3);
        for e in &log(vec![
            Event::OrderResting { order: a.clone() },
            Event::OrderResting { order: b.clone() },
            Event::Filled {
                order: Some(a.clone()),
                fill: filled,
                cause: None,
            },
            Event::Cancelled {
                symbol: btc(),
                client_order_id: b.client_order_id.clone(),
                reason: CancelReason::TradingStopped,
            },
        ]) {
            ledger.apply(e);
        }
        assert!(ledger.resting.is_empty());
        assert_eq!(ledger.portfolio.position_quantity(&btc()), d("2"));
        assert_eq!(
            ledger.portfolio.positions[&btc()].leverage,
            Leverage::new(5).unwrap()
        );
        assert_eq!(
            ledger.exits[&btc()].stop_loss.as_ref().map(|s| s.0),
            Price::from_str("93.1").ok()
        );
    }

    #[test]
    fn a_venue_s_mark_values_the_position_and_a_webhook_event_s_does_not() {
        let entry = order("a", Side::Buy, "2", None);
        let observed =
            |mark: &str, delivery: Option<crate::event::ObservedDelivery>| Event::Observed {
                observation: crate::event::Observation {
                    source: "binance-futures".into(),
                    event_type: "funding_rate".into(),
                    symbol: Some(btc()),
                    received_at: Timestamp(3),
                    fields: serde_json::json!({"funding_rate": 0.0001, "mark_price": mark})
                        .as_object()
                        .unwrap()
                        .clone(),
                    delivery,
                },
            };
        let events = log(vec![
            Event::OrderSent {
                order: entry.clone(),
            },
            Event::Filled {
                order: Some(entry.clone()),
                fill: fill(&entry, "100"),
                cause: None,
            },
            observed("110.5", None),
            // The same from a webhook: a sender's field, not the market.
            observed(
                "1",
                Some(crate::event::ObservedDelivery {
                    id: SignalId::new("tv:x").unwrap(),
                    keys: String::new(),
                }),
            ),
        ]);
        let mut ledger = Ledger::new(d("1000"));
        for e in &events {
            ledger.apply(e);
        }
        assert_eq!(
            ledger.portfolio.last_price(&btc()),
            Some(Price::from_str("110.5").unwrap())
        );
        // 2 x (110.5 - 100) unrealized on 1000.
        assert_eq!(ledger.portfolio.equity(), d("1021"));
    }
}
