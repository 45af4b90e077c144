//! The account as the fills left it: balance, positions with entry prices, realized and unrealized PnL.

use std::collections::BTreeMap;

use rust_decimal::prelude::Signed;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::amount::add_to_total;
use crate::order::Fill;
use crate::types::{Price, Symbol};

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
    ///
    /// With the bounds (positions of at most `MAX_QUANTITY` at prices of at most `MAX_PRICE`) no step here can
    /// overflow; the checked and saturating forms are for positions a journal from before the bounds may hold.
    pub fn apply(&mut self, fill: &Fill) -> Decimal {
        let signed = fill.side.sign() * fill.quantity.get();
        let price = fill.price.get();
        let old = self.quantity;
        let new = old.saturating_add(signed);
        let mut realized = Decimal::ZERO;
        if old.is_zero() || old.is_sign_positive() == signed.is_sign_positive() {
            // Opening or adding: the entry becomes the volume-weighted average.
            self.entry_price = average(self.entry_price, old.abs(), price, signed.abs());
        } else {
            let closed = signed.abs().min(old.abs());
            realized = price
                .saturating_sub(self.entry_price)
                .saturating_mul(closed)
                * old.signum();
            if new.is_zero() {
                self.entry_price = Decimal::ZERO;
            } else if new.is_sign_positive() != old.is_sign_positive() {
                // Flipped through zero: what is left was opened at this fill's price.
                self.entry_price = price;
            }
        }
        self.quantity = new.normalize();
        self.entry_price = self.entry_price.normalize();
        self.realized_pnl = add_to_total("realized PnL", self.realized_pnl, realized).normalize();
        self.fees = add_to_total("fees", self.fees, fill.fee).normalize();
        realized
    }

    /// What the open quantity would realize at `mark`: at most `MAX_QUANTITY` x `MAX_PRICE` = 1e22 either way.
    pub fn unrealized_pnl(&self, mark: Option<Price>) -> Decimal {
        match mark {
            Some(mark) if !self.is_flat() => mark
                .get()
                .saturating_sub(self.entry_price)
                .saturating_mul(self.quantity)
                .normalize(),
            _ => Decimal::ZERO,
        }
    }
}

/// The average price of `held` units at `entry` and `added` more at `price`.
fn average(entry: Decimal, held: Decimal, price: Decimal, added: Decimal) -> Decimal {
    let total = held.saturating_add(added);
    let weighted = entry
        .checked_mul(held)
        .zip(price.checked_mul(added))
        .and_then(|(a, b)| a.checked_add(b))
        .and_then(|sum| sum.checked_div(total));
    // The same average as entry + (price - entry) x added / total, whose steps cannot overflow (added / total is at
    // most 1); used only when the exact form does, so that bounded positions keep their exact entry price.
    weighted.unwrap_or_else(|| {
        let share = added.checked_div(total).unwrap_or(Decimal::ONE);
        entry.saturating_add(price.saturating_sub(entry).saturating_mul(share))
    })
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

    pub fn apply_fill(&mut self, fill: &Fill) {
        let position = self.positions.entry(fill.symbol.clone()).or_default();
        let realized = position.apply(fill);
        let balance = add_to_total("balance", self.balance, realized);
        self.balance = add_to_total("balance", balance, -fill.fee).normalize();
    }

    /// Takes a position as the venue reports it (adopted at start): its quantity and entry price replace ours;
    /// what it realized so far stays.
    pub fn adopt(&mut self, symbol: &Symbol, quantity: Decimal, entry_price: Decimal) {
        let position = self.positions.entry(symbol.clone()).or_default();
        position.quantity = quantity;
        position.entry_price = if quantity.is_zero() {
            Decimal::ZERO
        } else {
            entry_price
        };
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

    /// The sum over symbols. Saturating: each term is at most 1e22, so only an account of millions of symbols could
    /// reach the end of `Decimal`'s range, and then it shows that rather than failing.
    pub fn unrealized_pnl(&self) -> Decimal {
        self.positions
            .iter()
            .map(|(symbol, p)| p.unrealized_pnl(self.last_price(symbol)))
            .fold(Decimal::ZERO, Decimal::saturating_add)
            .normalize()
    }

    /// Balance plus what the open positions would realize at their marks.
    pub fn equity(&self) -> Decimal {
        self.balance
            .saturating_add(self.unrealized_pnl())
            .normalize()
    }

    /// Realized PnL over all symbols (saturating, like `unrealized_pnl`).
    pub fn realized_pnl(&self) -> Decimal {
        self.positions
            .values()
            .map(|p| p.realized_pnl)
            .fold(Decimal::ZERO, Decimal::saturating_add)
            .normalize()
    }

    /// Fees paid over all symbols (saturating, like `unrealized_pnl`).
    pub fn fees(&self) -> Decimal {
        self.positions
            .values()
            .map(|p| p.fees)
            .fold(Decimal::ZERO, Decimal::saturating_add)
            .normalize()
    }

    /// The largest of |balance|, the sum of |realized PnL| and the sum of |fees| over symbols: what risk keeps below
    /// `MAX_ACCOUNT_TOTAL` before it lets a position grow, so that every total above stays far from overflowing.
    pub fn largest_total(&self) -> Decimal {
        let sum_abs = |of: fn(&Position) -> Decimal| {
            self.positions
                .values()
                .map(|p| of(p).abs())
                .fold(Decimal::ZERO, Decimal::saturating_add)
        };
        self.balance
            .abs()
            .max(sum_abs(|p| p.realized_pnl))
            .max(sum_abs(|p| p.fees))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::{MAX_ACCOUNT_TOTAL, MAX_PRICE};
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

    #[test]
    fn the_largest_position_at_the_extreme_prices_is_exact() {
        let mut p = Portfolio::new(d("10000"));
        let btc = Symbol::new("BTCUSDT").unwrap();
        p.apply_fill(&fill(Side::Buy, "1000000000000", "0.00000001", "0"));
        p.mark(&btc, Price::new(MAX_PRICE).unwrap());
        // (1e10 - 1e-8) x 1e12, exactly.
        assert_eq!(p.unrealized_pnl(), d("9999999999999999990000"));
        assert_eq!(p.equity(), d("10000000000000000000000"));
        p.apply_fill(&fill(Side::Sell, "1000000000000", "10000000000", "0"));
        assert!(p.positions[&btc].is_flat());
        assert_eq!(p.balance, d("10000000000000000000000"));
        assert_eq!(p.largest_total(), d("10000000000000000000000"));
    }

    #[test]
    fn positions_from_before_the_bounds_saturate_instead_of_panicking() {
        // Journals written before the bounds may hold positions no order could make today.
        let huge = Position {
            quantity: Decimal::MAX,
            entry_price: d("0.0000000000001"),
            realized_pnl: Decimal::MAX,
            fees: Decimal::MAX,
        };
        let mut p = Portfolio::new(d("10000"));
        for symbol in ["AUSDT", "BUSDT", "CUSDT"] {
            let symbol = Symbol::new(symbol).unwrap();
            p.positions.insert(symbol.clone(), huge.clone());
            p.mark(&symbol, Price::new(MAX_PRICE).unwrap());
        }
        assert_eq!(p.unrealized_pnl(), Decimal::MAX);
        assert_eq!(p.equity(), Decimal::MAX);
        assert_eq!(p.realized_pnl(), Decimal::MAX);
        assert_eq!(p.fees(), Decimal::MAX);
        assert!(p.largest_total() > MAX_ACCOUNT_TOTAL);
        let mut symbol_fill = fill(Side::Buy, "1000000000000", "10000000000", "1");
        symbol_fill.symbol = Symbol::new("AUSDT").unwrap();
        p.apply_fill(&symbol_fill);
        symbol_fill.side = Side::Sell;
        p.apply_fill(&symbol_fill);
        let a = &p.positions[&Symbol::new("AUSDT").unwrap()];
        assert_eq!(a.realized_pnl, Decimal::MAX);
        assert!(a.entry_price <= MAX_PRICE);
    }

    #[test]
    fn largest_total_sums_magnitudes() {
        let mut p = Portfolio::new(d("-5"));
        for (name, realized, fees) in [("AUSDT", "3", "1"), ("BUSDT", "-4", "2")] {
            p.positions.insert(
                Symbol::new(name).unwrap(),
                Position {
                    realized_pnl: d(realized),
                    fees: d(fees),
                    ..Position::default()
                },
            );
        }
        assert_eq!(p.realized_pnl(), d("-1"));
        assert_eq!(p.fees(), d("3"));
        assert_eq!(p.largest_total(), d("7"));
    }
}
