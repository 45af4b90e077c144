//! What the paper venue's tests share: orders approved the way the daemon approves them, and short names.

use std::str::FromStr;

use rust_decimal::Decimal;

use sentinel_actors::order::{OrderRequest, Protection};
use sentinel_actors::risk::{Approved, Exposure, RiskEngine, SymbolRules, TradingState};
use sentinel_actors::signal::{Action, ExitLevel};
use sentinel_actors::types::{ClientOrderId, Leverage, Price, Quantity, Side, SignalId, Symbol};

use super::costs::PaperCosts;

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub fn price(s: &str) -> Price {
    Price::from_str(s).unwrap()
}

pub fn symbol(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

pub fn btc() -> Symbol {
    symbol("BTCUSDT")
}

/// The README's costs: 0.04 % fee, 0.05 % slippage.
pub fn costs() -> PaperCosts {
    PaperCosts {
        fee_rate: d("0.0004"),
        slippage: d("0.0005"),
    }
}

pub fn percent(stop_loss: Option<&str>, take_profit: Option<&str>) -> Protection {
    Protection {
        stop_loss: stop_loss.map(|p| ExitLevel::Percent(d(p))),
        take_profit: take_profit.map(|p| ExitLevel::Percent(d(p))),
    }
}

/// An order of `signal`'s first leg.
pub struct Order {
    pub signal: &'static str,
    pub symbol: Symbol,
    pub side: Side,
    pub quantity: &'static str,
    pub reduce_only: bool,
    pub protection: Protection,
}

impl Order {
    pub fn buy(signal: &'static str, quantity: &'static str) -> Self {
        Self {
            signal,
            symbol: btc(),
            side: Side::Buy,
            quantity,
            reduce_only: false,
            protection: Protection::default(),
        }
    }

    pub fn sell(signal: &'static str, quantity: &'static str) -> Self {
        Self {
            side: Side::Sell,
            ..Self::buy(signal, quantity)
        }
    }

    pub fn on(self, symbol: Symbol) -> Self {
        Self { symbol, ..self }
    }

    pub fn reduce_only(self) -> Self {
        Self {
            reduce_only: true,
            ..self
        }
    }

    pub fn protected(self, protection: Protection) -> Self {
        Self { protection, ..self }
    }

    pub fn request(&self) -> OrderRequest {
        let signal_id = SignalId::new(self.signal).unwrap();
        OrderRequest {
            client_order_id: ClientOrderId::derive(&signal_id, 0),
            signal_id,
            symbol: self.symbol.clone(),
            action: Action::OpenLong,
            side: self.side,
            quantity: Quantity::from_str(self.quantity).unwrap(),
            reduce_only: self.reduce_only,
            leverage: Leverage::new(5).unwrap(),
            reference_price: price("45000"),
            protection: self.protection,
            limit: None,
        }
    }

    /// Orders reach a venue only through risk, so the tests approve them the same way.
    pub fn approved(&self) -> Approved<OrderRequest> {
        let rules = SymbolRules {
            enabled: true,
            allowed_actions: Action::ALL.into_iter().collect(),
            max_leverage: Leverage::new(125).unwrap(),
            max_notional: d("1000000000"),
        };
        let engine = RiskEngine::new(
            [(self.symbol.clone(), rules)].into_iter().collect(),
            TradingState::Active,
        );
        // Risk lets a reduce-only order through against a position it shrinks; the venue judges the real one.
        let position = if self.reduce_only {
            d("1000") * self.side.opposite().sign()
        } else {
            Decimal::ZERO
        };
        engine
            .check(self.request(), Exposure::position(position))
            .unwrap()
    }
}
