//! The paper exchange: market orders fill at the last price with slippage and fee; stop-loss and take-profit orders
//! rest and fire when a later price crosses them. Deterministic, all in `Decimal`.

use std::collections::HashMap;

use rust_decimal::prelude::Signed;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::gateway::{Execution, Gateway, GatewayError};
use crate::order::{Fill, FillReason, OrderRequest};
use crate::portfolio::Position;
use crate::risk::Approved;
use crate::signal::ExitLevel;
use crate::types::{ClientOrderId, PositionSide, Price, Quantity, Side, Symbol, Timestamp};

/// Leg numbers of the exit orders an entry arms, after the legs a signal itself can produce.
const STOP_LOSS_LEG: u8 = 90;
const TAKE_PROFIT_LEG: u8 = 91;
/// Fill prices and fees are kept to this many decimal places.
const SCALE: u32 = 8;

/// Paper trading costs, as fractions (0.0004 = 0.04 %).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaperCosts {
    pub fee_rate: Decimal,
    pub slippage: Decimal,
}

/// A market order to fill now.
struct Market {
    id: ClientOrderId,
    symbol: Symbol,
    side: Side,
    quantity: Quantity,
    reason: FillReason,
}

/// Exit orders resting for one symbol's position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RestingExits {
    side: PositionSide,
    stop_loss: Option<(Price, ClientOrderId)>,
    take_profit: Option<(Price, ClientOrderId)>,
}

/// A simulated exchange account.
#[derive(Debug)]
pub struct PaperGateway {
    costs: PaperCosts,
    book: PaperBook,
    /// Fills by client order id: a second submit of the same id gets the first fill back, as a real exchange's
    /// order lookup would give it.
    filled: HashMap<ClientOrderId, Fill>,
}

/// What the paper exchange holds besides past fills: saved in snapshots.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PaperBook {
    last: HashMap<Symbol, Price>,
    positions: HashMap<Symbol, Position>,
    exits: HashMap<Symbol, RestingExits>,
}

impl PaperGateway {
    pub fn new(costs: PaperCosts) -> Self {
        Self {
            costs,
            book: PaperBook::default(),
            filled: HashMap::new(),
        }
    }

    /// The stop-loss and take-profit prices resting for `symbol`.
    pub fn resting_exits(&self, symbol: &Symbol) -> (Option<Price>, Option<Price>) {
        self.book.exits.get(symbol).map_or((None, None), |e| {
            (
                e.stop_loss.as_ref().map(|s| s.0),
                e.take_profit.as_ref().map(|t| t.0),
            )
        })
    }

    /// The last price moved against the taker by the slippage. A result outside the price bounds (slippage at the
    /// very edge of them) fills at the last price instead.
    fn fill_at(&self, side: Side, last: Price) -> Price {
        Decimal::ONE
            .checked_add(side.sign() * self.costs.slippage)
            .and_then(|factor| last.get().checked_mul(factor))
            .and_then(|price| Price::new(price.round_dp(SCALE).normalize()).ok())
            .unwrap_or(last)
    }

    fn execute(&mut self, order: Market, last: Price, at: Timestamp) -> Fill {
        let Market {
            id,
            symbol,
            side,
            quantity,
            reason,
        } = order;
        let price = self.fill_at(side, last);
        // Price x quantity is at most 1e22 and a configured fee rate is below 1; saturating only for a rate that
        // did not come through the configuration's checks.
        let fee = (price.get() * quantity.get())
            .saturating_mul(self.costs.fee_rate)
            .round_dp(SCALE)
            .normalize();
        let fill = Fill {
            client_order_id: id.clone(),
            symbol: symbol.clone(),
            side,
            quantity,
            price,
            fee,
            reason,
            at,
        };
        self.book_fill(&fill);
        fill
    }

    /// Counts a fill in the positions; a flat position has no exits left.
    fn book_fill(&mut self, fill: &Fill) {
        let position = self.book.positions.entry(fill.symbol.clone()).or_default();
        position.apply(fill);
        if position.is_flat() {
            self.book.exits.remove(&fill.symbol);
        }
        self.filled
            .insert(fill.client_order_id.clone(), fill.clone());
    }

    /// After an entry fills: rest its stop-loss and take-profit for the whole position.
    fn after_entry(&mut self, order: &OrderRequest, fill: &Fill) {
        if !order.reduce_only && !self.book.positions[&order.symbol].is_flat() {
            self.arm_exits(order, fill.price);
        }
    }

    fn arm_exits(&mut self, order: &OrderRequest, entry: Price) {
        let position = &self.book.positions[&order.symbol];
        let side = if position.quantity.is_sign_positive() {
            PositionSide::Long
        } else {
            PositionSide::Short
        };
        let level = |exit: ExitLevel, against: bool| -> Option<Price> {
            match exit {
                ExitLevel::Price(price) => Some(price),
                ExitLevel::Percent(pct) => {
                    // A stop sits against the position, a profit target with it.
                    let up = (side == PositionSide::Long) != against;
                    let sign = if up {
                        Decimal::ONE
                    } else {
                        Decimal::NEGATIVE_ONE
                    };
                    // A level beyond the price bounds can never be crossed, so none is armed.
                    let factor = Decimal::ONE.checked_add(sign * pct / Decimal::ONE_HUNDRED)?;
                    let level = entry.get().checked_mul(factor)?;
                    Price::new(level.round_dp(SCALE).normalize()).ok()
                }
            }
        };
        let protection = order.protection;
        if protection.stop_loss.is_none() && protection.take_profit.is_none() {
            return;
        }
        let stop_loss = protection
            .stop_loss
            .and_then(|exit| level(exit, true))
            .map(|p| (p, ClientOrderId::derive(&order.signal_id, STOP_LOSS_LEG)));
        let take_profit = protection
            .take_profit
            .and_then(|exit| level(exit, false))
            .map(|p| (p, ClientOrderId::derive(&order.signal_id, TAKE_PROFIT_LEG)));
        self.book.exits.insert(
            order.symbol.clone(),
            RestingExits {
                side,
                stop_loss,
                take_profit,
            },
        );
    }
}

impl Gateway for PaperGateway {
    fn name(&self) -> &str {
        "paper"
    }

    fn submit(
        &mut self,
        order: &Approved<OrderRequest>,
        at: Timestamp,
    ) -> Result<Execution, GatewayError> {
        let order = order.get();
        if let Some(fill) = self.filled.get(&order.client_order_id) {
            return Ok(Execution::AlreadyFilled(fill.clone()));
        }
        let last = *self.book.last.get(&order.symbol).ok_or_else(|| {
            GatewayError::Rejected(format!("no price known for {} yet", order.symbol))
        })?;
        let mut quantity = order.quantity;
        if order.reduce_only {
            let open = self
                .book
                .positions
                .get(&order.symbol)
                .map_or(Decimal::ZERO, |p| p.quantity);
            if open.is_zero() || open.signum() == order.side.sign() {
                return Err(GatewayError::Rejected(
                    "reduce-only order would not reduce the position".into(),
                ));
            }
            // As exchanges do, a reduce-only order is cut to what is open.
            quantity = Quantity::new(quantity.get().min(open.abs())).unwrap_or(quantity);
        }
        let market = Market {
            id: order.client_order_id.clone(),
            symbol: order.symbol.clone(),
            side: order.side,
            quantity,
            reason: FillReason::Signal,
        };
        let fill = self.execute(market, last, at);
        self.after_entry(order, &fill);
        Ok(Execution::New(fill))
    }

    fn on_price(&mut self, symbol: &Symbol, price: Price, at: Timestamp) -> Vec<Fill> {
        self.book.last.insert(symbol.clone(), price);
        let Some(exits) = self.book.exits.get(symbol) else {
            return Vec::new();
        };
        let long = exits.side == PositionSide::Long;
        let stop_hit =
            exits
                .stop_loss
                .as_ref()
                .filter(|(stop, _)| if long { price <= *stop } else { price >= *stop });
        let profit_hit = exits.take_profit.as_ref().filter(|(target, _)| {
            if long {
                price >= *target
            } else {
                price <= *target
            }
        });
        let (id, reason) = match (stop_hit, profit_hit) {
            (Some((_, id)), _) => (id.clone(), FillReason::StopLoss),
            (None, Some((_, id))) => (id.clone(), FillReason::TakeProfit),
            (None, None) => return Vec::new(),
        };
        let open = self
            .book
            .positions
            .get(symbol)
            .map_or(Decimal::ZERO, |p| p.quantity);
        let Ok(quantity) = Quantity::new(open.abs()) else {
            self.book.exits.remove(symbol);
            return Vec::new();
        };
        let side = if long { Side::Sell } else { Side::Buy };
        let market = Market {
            id,
            symbol: symbol.clone(),
            side,
            quantity,
            reason,
        };
        let fill = self.execute(market, price, at);
        self.book.exits.remove(symbol);
        vec![fill]
    }

    fn find_fill(&self, client_order_id: &ClientOrderId) -> Option<Fill> {
        self.filled.get(client_order_id).cloned()
    }

    fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(&self.book).unwrap_or(serde_json::Value::Null)
    }

    fn restore_snapshot(&mut self, state: serde_json::Value) -> Result<(), String> {
        self.book =
            serde_json::from_value(state).map_err(|e| format!("paper snapshot unreadable: {e}"))?;
        Ok(())
    }

    fn restore_fill(&mut self, order: Option<&OrderRequest>, fill: &Fill, replay: bool) {
        if !replay {
            self.filled
                .insert(fill.client_order_id.clone(), fill.clone());
            return;
        }
        self.book.last.insert(fill.symbol.clone(), fill.price);
        self.book_fill(fill);
        if let Some(order) = order {
            self.after_entry(order, fill);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::Protection;
    use crate::risk::{Exposure, RiskEngine, SymbolRules, TradingState};
    use crate::signal::Action;
    use crate::types::{Leverage, SignalId};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn btc() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }

    fn paper() -> PaperGateway {
        PaperGateway::new(PaperCosts {
            fee_rate: d("0.0004"),
            slippage: d("0.0005"),
        })
    }

    /// Orders reach a gateway only through risk, so the tests approve them the same way.
    fn approved(
        signal: &str,
        side: Side,
        qty: &str,
        reduce_only: bool,
        protection: Protection,
    ) -> Approved<OrderRequest> {
        let rules = SymbolRules {
            enabled: true,
            allowed_actions: Action::ALL.into_iter().collect(),
            max_leverage: Leverage::new(125).unwrap(),
            max_notional: d("1000000000"),
        };
        let engine = RiskEngine::new([(btc(), rules)].into_iter().collect(), TradingState::Active);
        let signal_id = SignalId::new(signal).unwrap();
        let order = OrderRequest {
            client_order_id: ClientOrderId::derive(&signal_id, 0),
            signal_id,
            symbol: btc(),
            action: Action::OpenLong,
            side,
            quantity: Quantity::from_str(qty).unwrap(),
            reduce_only,
            leverage: Leverage::new(5).unwrap(),
            reference_price: Price::from_str("45000").unwrap(),
            protection,
        };
        let position = if reduce_only {
            d("1000") * side.opposite().sign()
        } else {
            Decimal::ZERO
        };
        engine.check(order, Exposure::position(position)).unwrap()
    }

    fn price(s: &str) -> Price {
        Price::from_str(s).unwrap()
    }

    fn new(result: Result<Execution, GatewayError>) -> Fill {
        match result {
            Ok(Execution::New(fill)) => fill,
            other => panic!("expected a new fill, got {other:?}"),
        }
    }

    #[test]
    fn market_buy_fills_at_last_price_plus_slippage_with_fee() {
        let mut gw = paper();
        gw.on_price(&btc(), price("45000"), Timestamp(1));
        let fill = new(gw.submit(
            &approved("a", Side::Buy, "0.1", false, Protection::default()),
            Timestamp(2),
        ));
        // 45000 * 1.0005 = 45022.5; fee = 45022.5 * 0.1 * 0.0004 = 1.8009
        assert_eq!(fill.price.get(), d("45022.5"));
        assert_eq!(fill.fee, d("1.8009"));
        let sell = new(gw.submit(
            &approved("b", Side::Sell, "0.1", true, Protection::default()),
            Timestamp(3),
        ));
        // 45000 * 0.9995 = 44977.5
        assert_eq!(sell.price.get(), d("44977.5"));
    }

    #[test]
    fn no_price_no_fill_and_the_same_client_order_id_fills_once() {
        let mut gw = paper();
        let order = approved("a", Side::Buy, "0.1", false, Protection::default());
        assert!(matches!(
            gw.submit(&order, Timestamp(1)),
            Err(GatewayError::Rejected(_))
        ));
        gw.on_price(&btc(), price("100"), Timestamp(2));
        let first = new(gw.submit(&order, Timestamp(3)));
        assert_eq!(
            gw.submit(&order, Timestamp(4)),
            Ok(Execution::AlreadyFilled(first))
        );
        assert_eq!(gw.book.positions[&btc()].quantity, d("0.1"), "filled once");
    }

    #[test]
    fn a_snapshot_and_replayed_fills_restore_the_book() {
        let mut gw = paper();
        gw.on_price(&btc(), price("45000"), Timestamp(1));
        let protection = Protection {
            stop_loss: Some(ExitLevel::Percent(d("2"))),
            take_profit: None,
        };
        let entry_order = approved("a", Side::Buy, "0.1", false, protection);
        let entry = new(gw.submit(&entry_order, Timestamp(2)));

        let mut restored = paper();
        restored.restore_snapshot(gw.snapshot()).unwrap();
        assert_eq!(restored.resting_exits(&btc()), gw.resting_exits(&btc()));
        restored.restore_fill(Some(entry_order.get()), &entry, false);
        assert_eq!(
            restored.submit(&entry_order, Timestamp(3)),
            Ok(Execution::AlreadyFilled(entry.clone()))
        );

        // From nothing, replaying the fill rebuilds the position and its stop.
        let mut replayed = paper();
        replayed.restore_fill(Some(entry_order.get()), &entry, true);
        assert_eq!(replayed.resting_exits(&btc()), gw.resting_exits(&btc()));
        assert_eq!(replayed.book.positions[&btc()], gw.book.positions[&btc()]);
    }

    #[test]
    fn percent_stop_loss_rests_and_fires_on_a_crossing_tick() {
        let mut gw = paper();
        gw.on_price(&btc(), price("45000"), Timestamp(1));
        let protection = Protection {
            stop_loss: Some(ExitLevel::Percent(d("2"))),
            take_profit: Some(ExitLevel::Percent(d("6"))),
        };
        let entry = new(gw.submit(
            &approved("a", Side::Buy, "0.1", false, protection),
            Timestamp(2),
        ));
        // Entry 45022.5: stop 2% below = 44122.05, target 6% above = 47723.85.
        assert_eq!(
            gw.resting_exits(&btc()),
            (Some(price("44122.05")), Some(price("47723.85")))
        );
        assert_eq!(entry.price, price("45022.5"));
        assert!(
            gw.on_price(&btc(), price("44200"), Timestamp(3)).is_empty(),
            "above the stop"
        );
        let fills = gw.on_price(&btc(), price("44100"), Timestamp(4));
        assert_eq!(fills.len(), 1);
        assert_eq!(fills[0].reason, FillReason::StopLoss);
        assert_eq!(fills[0].side, Side::Sell);
        assert_eq!(fills[0].quantity, Quantity::from_str("0.1").unwrap());
        assert_eq!(fills[0].price, price("44077.95")); // 44100 * 0.9995
        assert_eq!(gw.resting_exits(&btc()), (None, None));
        assert!(
            gw.on_price(&btc(), price("40000"), Timestamp(5)).is_empty(),
            "fires once"
        );
    }

    #[test]
    fn short_take_profit_at_an_absolute_price() {
        let mut gw = paper();
        gw.on_price(&btc(), price("2000"), Timestamp(1));
        let protection = Protection {
            stop_loss: None,
            take_profit: Some(ExitLevel::Price(price("1900"))),
        };
        new(gw.submit(
            &approved("a", Side::Sell, "1", false, protection),
            Timestamp(2),
        ));
        assert!(gw.on_price(&btc(), price("1950"), Timestamp(3)).is_empty());
        let fills = gw.on_price(&btc(), price("1899"), Timestamp(4));
        assert_eq!(fills[0].reason, FillReason::TakeProfit);
        assert_eq!(fills[0].side, Side::Buy);
    }

    #[test]
    fn a_reduce_only_order_with_nothing_open_is_rejected() {
        let mut gw = paper();
        gw.on_price(&btc(), price("100"), Timestamp(1));
        let close = approved("a", Side::Sell, "1", true, Protection::default());
        assert!(matches!(
            gw.submit(&close, Timestamp(2)),
            Err(GatewayError::Rejected(_))
        ));
    }

    #[test]
    fn prices_at_the_bounds_fill_and_protect_within_them() {
        let mut gw = paper();
        gw.on_price(&btc(), price("10000000000"), Timestamp(1));
        // Slippage would take the fill above the highest price: it fills at the last price.
        let protection = Protection {
            stop_loss: Some(ExitLevel::Percent(d("99.999999999999"))),
            take_profit: Some(ExitLevel::Percent(d("50"))),
        };
        let buy = new(gw.submit(
            &approved("a", Side::Buy, "0.1", false, protection),
            Timestamp(2),
        ));
        assert_eq!(buy.price, price("10000000000"));
        // The stop (1e10 x 1e-14 = 1e-4) rests; a target above the highest price could never be crossed, so none is.
        assert_eq!(gw.resting_exits(&btc()), (Some(price("0.0001")), None));

        let mut gw = paper();
        gw.on_price(&btc(), price("0.00000001"), Timestamp(1));
        let protection = Protection {
            stop_loss: Some(ExitLevel::Percent(d("50"))),
            take_profit: None,
        };
        let sell = new(gw.submit(
            &approved("b", Side::Sell, "20000", false, protection),
            Timestamp(2),
        ));
        assert_eq!(sell.price, price("0.00000001"));
        // 1e-8 x 20000 x 0.0004 = 8e-8
        assert_eq!(sell.fee, d("0.00000008"));
        // 1.5e-8, kept to the paper exchange's 8 places.
        assert_eq!(gw.resting_exits(&btc()), (Some(price("0.00000002")), None));
    }
}
