//! The account as the fills left it: balance, positions with entry prices, realized and unrealized PnL.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use rust_decimal::prelude::Signed;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::order::Fill;
use crate::types::{Price, Symbol};

/// The portfolio, shared between the exchange actor (the only writer) and readers (strategies, risk, the HTTP API).
pub type SharedPortfolio = Arc<RwLock<Portfolio>>;

/// One symbol's position. `quantity` is signed: > 0 long, < 0 short, 0 flat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub quantity: Decimal,
    /// Volume-weighted price of what is open; 0 when flat.
    pub entry_price: Decimal,
    /// Profit and loss booked by the closing fills on this symbol, before fees.
    pub realized_pnl: Decimal,
    /// Fees paid on this symbol.
    pub fees: Decimal,
}

impl Position {
    pub fn is_flat(&self) -> bool {
        self.quantity.is_zero()
    }

    /// Applies a fill and returns the PnL it realized.
    pub fn apply(&mut self, fill: &Fill) -> Decimal {
        let signed = fill.side.sign() * fill.quantity.get();
        let price = fill.price.get();
        let old = self.quantity;
        let new = old + signed;
        let mut realized = Decimal::ZERO;
        if old.is_zero() || old.is_sign_positive() == signed.is_sign_positive() {
            // Opening or adding: the entry becomes the volume-weighted average.
            self.entry_price = (self.entry_price * old.abs() + price * signed.abs()) / new.abs();
        } else {
            let closed = signed.abs().min(old.abs());
            realized = (price - self.entry_price) * closed * old.signum();
            if new.is_zero() {
                self.entry_price = Decimal::ZERO;
            } else if new.is_sign_positive() != old.is_sign_positive() {
                // Flipped through zero: what is left was opened at this fill's price.
                self.entry_price = price;
            }
        }
        self.quantity = new.normalize();
        self.entry_price = self.entry_price.normalize();
        self.realized_pnl = (self.realized_pnl + realized).normalize();
        self.fees = (self.fees + fill.fee).normalize();
        realized
    }

    /// What the open quantity would realize at `mark`.
    pub fn unrealized_pnl(&self, mark: Option<Price>) -> Decimal {
        match mark {
            Some(mark) if !self.is_flat() => {
                ((mark.get() - self.entry_price) * self.quantity).normalize()
            }
            _ => Decimal::ZERO,
        }
    }
}

/// Balance and positions of the one exchange account Sentinel trades.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Portfolio {
    pub starting_balance: Decimal,
    /// Wallet balance: starting balance + realized PnL - fees.
    pub balance: Decimal,
    pub positions: BTreeMap<Symbol, Position>,
    /// The last price seen per symbol: marks open positions to market.
    pub marks: BTreeMap<Symbol, Price>,
}

impl Portfolio {
    pub fn new(starting_balance: Decimal) -> Self {
        Self {
            starting_balance,
            balance: starting_balance,
            positions: BTreeMap::new(),
            marks: BTreeMap::new(),
        }
    }

    pub fn shared(self) -> SharedPortfolio {
        Arc::new(RwLock::new(self))
    }

    pub fn apply_fill(&mut self, fill: &Fill) {
        let position = self.positions.entry(fill.symbol.clone()).or_default();
        let realized = position.apply(fill);
        self.balance = (self.balance + realized - fill.fee).normalize();
    }

    pub fn mark(&mut self, symbol: &Symbol, price: Price) {
        self.marks.insert(symbol.clone(), price);
    }

    pub fn position_quantity(&self, symbol: &Symbol) -> Decimal {
        self.positions
            .get(symbol)
            .map_or(Decimal::ZERO, |p| p.quantity)
    }

    pub fn last_price(&self, symbol: &Symbol) -> Option<Price> {
        self.marks.get(symbol).copied()
    }

    pub fn unrealized_pnl(&self) -> Decimal {
        self.positions
            .iter()
            .map(|(symbol, p)| p.unrealized_pnl(self.last_price(symbol)))
            .sum::<Decimal>()
            .normalize()
    }

    /// Balance plus what the open positions would realize at their marks.
    pub fn equity(&self) -> Decimal {
        (self.balance + self.unrealized_pnl()).normalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::FillReason;
    use crate::types::{ClientOrderId, Quantity, Side, SignalId, Timestamp};
    use rust_decimal::prelude::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn fill(side: Side, qty: &str, price: &str, fee: &str) -> Fill {
        Fill {
            client_order_id: ClientOrderId::derive(&SignalId::new("t").unwrap(), 0),
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side,
            quantity: Quantity::new(d(qty)).unwrap(),
            price: Price::new(d(price)).unwrap(),
            fee: d(fee),
            reason: FillReason::Signal,
            at: Timestamp(0),
        }
    }

    #[test]
    fn long_round_trip_books_pnl_minus_fees() {
        let mut p = Portfolio::new(d("10000"));
        p.apply_fill(&fill(Side::Buy, "0.1", "45000", "1.8"));
        p.apply_fill(&fill(Side::Buy, "0.1", "46000", "1.84"));
        let btc = Symbol::new("BTCUSDT").unwrap();
        assert_eq!(p.positions[&btc].entry_price, d("45500"));
        p.mark(&btc, Price::new(d("46000")).unwrap());
        assert_eq!(p.unrealized_pnl(), d("100")); // (46000-45500)*0.2
        p.apply_fill(&fill(Side::Sell, "0.2", "47000", "3.76"));
        assert!(p.positions[&btc].is_flat());
        assert_eq!(p.positions[&btc].realized_pnl, d("300")); // (47000-45500)*0.2
        assert_eq!(
            p.balance,
            d("10000") + d("300") - d("1.8") - d("1.84") - d("3.76")
        );
        assert_eq!(p.equity(), p.balance);
    }

    #[test]
    fn short_then_flip_long_reprices_the_remainder() {
        let mut p = Portfolio::new(d("1000"));
        p.apply_fill(&fill(Side::Sell, "2", "100", "0"));
        p.apply_fill(&fill(Side::Buy, "3", "90", "0"));
        let btc = Symbol::new("BTCUSDT").unwrap();
        assert_eq!(p.positions[&btc].quantity, d("1"));
        assert_eq!(p.positions[&btc].entry_price, d("90"));
        assert_eq!(p.positions[&btc].realized_pnl, d("20")); // (90-100)*2*(-1)
        assert_eq!(p.balance, d("1020"));
    }
}
