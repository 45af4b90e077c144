//! The account as the fills left it: balance, positions with entry prices and leverage, realized and unrealized PnL,
//! and the margin they hold (initial and maintenance margin, liquidation price, by Binance USD-M's one-way rules).

use std::collections::BTreeMap;

use rust_decimal::prelude::Signed;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::amount::add_to_total;
use crate::order::Fill;
use crate::types::{Leverage, Price, Symbol};

/// Fees, PnL and margins, in the quote currency, are kept to this many decimal places (USDT's precision on Binance),
/// rounded half away from zero: a PnL of 0.000000125 is booked as 0.00000013, one of -0.000000125 as -0.00000013.
pub const MONEY_SCALE: u32 = 8;

/// A liquidation price is kept to this many decimal places (`amount::MAX_SCALE`: finer than any exchange's tick),
/// rounded towards the entry, so that the position is liquidated no later than the exact price says.
pub const LIQUIDATION_SCALE: u32 = 12;

/// An amount of money as it is booked: `MONEY_SCALE` places, half away from zero.
pub fn money(value: Decimal) -> Decimal {
    value
        .round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// A margin the account must hold, rounded up to `MONEY_SCALE` places so that it is never understated.
fn margin_up(value: Decimal) -> Decimal {
    value
        .round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::AwayFromZero)
        .normalize()
}

/// How a symbol's position holds its margin (Binance's margin type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarginMode {
    /// The whole wallet backs every cross position: one position's loss eats into the others' margin.
    #[default]
    Cross,
    /// Only the margin the position was opened with backs it: at most that is lost.
    Isolated,
}

impl MarginMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MarginMode::Cross => "cross",
            MarginMode::Isolated => "isolated",
        }
    }
}

/// A symbol's margin terms, from its configuration (and the venue's brackets, when it has them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarginSpec {
    pub mode: MarginMode,
    /// Maintenance margin as a fraction of the position's notional (0.004 = 0.4 %, Binance's lowest bracket), when
    /// no bracket applies.
    pub maintenance_rate: Decimal,
    /// The venue's notional brackets (Binance's `leverageBracket`), lowest first: a larger position pays a higher
    /// rate, less the bracket's maintenance amount. Empty: `maintenance_rate` for every size.
    pub brackets: std::sync::Arc<[Bracket]>,
}

/// One of Binance's maintenance margin brackets: a position whose notional is at least `floor` and below `cap`
/// holds `notional x rate - amount` of maintenance margin (`amount` is Binance's `cum`, which makes the tiers meet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bracket {
    pub floor: Decimal,
    pub cap: Decimal,
    pub rate: Decimal,
    pub amount: Decimal,
}

impl MarginSpec {
    /// The maintenance rate and amount for a position of `notional`: its bracket's, or the configured rate and 0.
    /// Past the last bracket's cap, the last bracket's.
    pub fn maintenance(&self, notional: Decimal) -> (Decimal, Decimal) {
        let found = self
            .brackets
            .iter()
            .find(|b| notional >= b.floor && notional < b.cap)
            .or_else(|| self.brackets.last().filter(|b| notional >= b.cap));
        match found {
            Some(b) => (b.rate, b.amount),
            None => (self.maintenance_rate, Decimal::ZERO),
        }
    }
}

impl MarginSpec {
    /// 0.4 %: Binance's rate for the first bracket of BTCUSDT and most majors.
    pub const DEFAULT_MAINTENANCE_RATE: Decimal = Decimal::from_parts(4, 0, 0, false, 3);
}

impl Default for MarginSpec {
    fn default() -> Self {
        Self {
            mode: MarginMode::Cross,
            maintenance_rate: Self::DEFAULT_MAINTENANCE_RATE,
            brackets: std::sync::Arc::new([]),
        }
    }
}

/// One symbol's position. `quantity` is signed: > 0 long, < 0 short, 0 flat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub quantity: Decimal,
    /// Volume-weighted price of what is open; 0 when flat.
    pub entry_price: Decimal,
    /// The leverage of the whole position (Binance: one per symbol), set by the entry that opened or last grew it.
    /// Journals from before it: 1.
    #[serde(default = "one")]
    pub leverage: Leverage,
    /// PnL booked by the closing fills of the position that is open (since it last opened from flat), before fees.
    #[serde(default)]
    pub open_realized_pnl: Decimal,
    /// Fees paid by the fills of the position that is open (since it last opened from flat).
    #[serde(default)]
    pub open_fees: Decimal,
    /// Profit and loss booked by the closing fills on this symbol, over its whole history, before fees.
    pub realized_pnl: Decimal,
    /// Fees paid on this symbol, over its whole history.
    pub fees: Decimal,
}

fn one() -> Leverage {
    Leverage::ONE
}

impl Default for Position {
    fn default() -> Self {
        Self {
            quantity: Decimal::ZERO,
            entry_price: Decimal::ZERO,
            leverage: Leverage::ONE,
            open_realized_pnl: Decimal::ZERO,
            open_fees: Decimal::ZERO,
            realized_pnl: Decimal::ZERO,
            fees: Decimal::ZERO,
        }
    }
}

impl Position {
    pub fn is_flat(&self) -> bool {
        self.quantity.is_zero()
    }

    /// Applies a fill and returns the PnL it realized (rounded with `money`). `leverage` is the order's: a fill that
    /// opens, grows or flips the position sets the leverage of the whole position to it; `None` (a stop, a target, a
    /// liquidation) keeps it.
    ///
    /// The PnL of the open position starts again when a fill opens it from flat or flips it through zero (the
    /// flipping fill's fee is the new position's); the symbol's history keeps everything.
    ///
    /// With the bounds (positions of at most `MAX_QUANTITY` at prices of at most `MAX_PRICE`) no step here can
    /// overflow; the checked and saturating forms are for positions a journal from before the bounds may hold.
    pub fn apply(&mut self, fill: &Fill, leverage: Option<Leverage>) -> Decimal {
        let signed = fill.side.sign() * fill.quantity.get();
        let price = fill.price.get();
        let old = self.quantity;
        let new = old.saturating_add(signed);
        let mut realized = Decimal::ZERO;
        let grows = old.is_zero() || old.is_sign_positive() == signed.is_sign_positive();
        let flips = !grows && !new.is_zero() && new.is_sign_positive() != old.is_sign_positive();
        if grows {
            // Opening or adding: the entry becomes the volume-weighted average.
            self.entry_price = average(self.entry_price, old.abs(), price, signed.abs());
        } else {
            let closed = signed.abs().min(old.abs());
            realized = money(
                price
                    .saturating_sub(self.entry_price)
                    .saturating_mul(closed)
                    * old.signum(),
            );
            if new.is_zero() {
                self.entry_price = Decimal::ZERO;
            } else if flips {
                // Flipped through zero: what is left was opened at this fill's price.
                self.entry_price = price;
            }
        }
        if grows || flips {
            if let Some(leverage) = leverage {
                self.leverage = leverage;
            }
        }
        if old.is_zero() || flips {
            self.open_realized_pnl = Decimal::ZERO;
            self.open_fees = Decimal::ZERO;
        } else {
            self.open_realized_pnl =
                add_to_total("realized PnL", self.open_realized_pnl, realized).normalize();
        }
        self.open_fees = add_to_total("fees", self.open_fees, fill.fee).normalize();
        self.quantity = new.normalize();
        self.entry_price = self.entry_price.normalize();
        self.realized_pnl = add_to_total("realized PnL", self.realized_pnl, realized).normalize();
        self.fees = add_to_total("fees", self.fees, fill.fee).normalize();
        realized
    }

    /// What the open quantity would realize at `mark` (rounded with `money`): at most `MAX_QUANTITY` x `MAX_PRICE`
    /// = 1e22 either way.
    pub fn unrealized_pnl(&self, mark: Option<Price>) -> Decimal {
        match mark {
            Some(mark) if !self.is_flat() => money(
                mark.get()
                    .saturating_sub(self.entry_price)
                    .saturating_mul(self.quantity),
            ),
            _ => Decimal::ZERO,
        }
    }

    /// |quantity| x the mark, or x the entry price while no mark is known: at most 1e22.
    pub fn notional(&self, mark: Option<Price>) -> Decimal {
        let price = mark.map_or(self.entry_price, Price::get);
        self.quantity.abs().saturating_mul(price)
    }

    /// Notional / leverage, rounded up to `MONEY_SCALE` places.
    pub fn initial_margin(&self, mark: Option<Price>) -> Decimal {
        initial_margin(self.notional(mark), self.leverage)
    }

    /// Notional x its bracket's maintenance rate, less the bracket's amount (never below 0), rounded up to
    /// `MONEY_SCALE` places.
    pub fn maintenance_margin(&self, mark: Option<Price>, spec: &MarginSpec) -> Decimal {
        let notional = self.notional(mark);
        let (rate, amount) = spec.maintenance(notional);
        margin_up(
            notional
                .saturating_mul(rate)
                .saturating_sub(amount)
                .max(Decimal::ZERO),
        )
    }

    /// An isolated position's margin: what it was opened with, |quantity| x entry / leverage, rounded up.
    pub fn isolated_margin(&self) -> Decimal {
        self.initial_margin(None)
    }
}

/// Notional / leverage, rounded up to `MONEY_SCALE` places: what an order or a position holds of the wallet.
pub fn initial_margin(notional: Decimal, leverage: Leverage) -> Decimal {
    margin_up(notional / leverage.as_decimal())
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

    /// Books a fill that carries no leverage of its own (a stop, a target, a liquidation): the position keeps its
    /// leverage.
    pub fn apply_fill(&mut self, fill: &Fill) {
        self.apply_fill_at(fill, None);
    }

    /// Books a fill; `leverage`, the order's, becomes the position's when the fill opens, grows or flips it.
    pub fn apply_fill_at(&mut self, fill: &Fill, leverage: Option<Leverage>) {
        let position = self.positions.entry(fill.symbol.clone()).or_default();
        let realized = position.apply(fill, leverage);
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

impl Portfolio {
    /// The positions that are open, with their marks.
    fn open(&self) -> impl Iterator<Item = (&Symbol, &Position, Option<Price>)> {
        self.positions
            .iter()
            .filter(|(_, p)| !p.is_flat())
            .map(|(symbol, p)| (symbol, p, self.last_price(symbol)))
    }

    /// The initial margin one symbol's position holds now (0 when flat).
    pub fn position_margin(&self, symbol: &Symbol) -> Decimal {
        self.positions
            .get(symbol)
            .filter(|p| !p.is_flat())
            .map_or(Decimal::ZERO, |p| p.initial_margin(self.last_price(symbol)))
    }

    /// The initial margin of every open position, valued at its mark. Saturating, like `unrealized_pnl`.
    pub fn initial_margin(&self) -> Decimal {
        self.open()
            .map(|(_, p, mark)| p.initial_margin(mark))
            .fold(Decimal::ZERO, Decimal::saturating_add)
    }

    /// What new positions may still take as initial margin (Binance's available balance, cross): the wallet plus
    /// unrealized PnL minus the initial margin of every open position. Negative when the account is short of margin.
    pub fn available_margin(&self) -> Decimal {
        self.equity()
            .saturating_sub(self.initial_margin())
            .normalize()
    }

    /// The mark at which `symbol`'s position is liquidated, by Binance's one-way formula:
    ///
    /// `LP = (WB - TMM_other + UPNL_other + cumB - side x Q x EP) / (Q x MMR - side x Q)`
    ///
    /// with side +1 for a long and -1 for a short, Q = |position|, EP its entry price, MMR and cumB the maintenance
    /// rate and amount of the bracket its notional (at the mark) falls in (the configured rate and 0 without
    /// brackets).
    /// - isolated: WB is the position's isolated margin (Q x EP / leverage); the other terms are 0;
    /// - cross: WB is the wallet less the isolated margin of the isolated positions; TMM_other and UPNL_other are
    ///   the maintenance margin and unrealized PnL of the other cross positions at their marks.
    ///
    /// Rounded to `LIQUIDATION_SCALE` places towards the entry (a long's up, a short's down). `None` for a flat
    /// position, or when the price is not positive (a 1x long cannot be liquidated).
    pub fn liquidation_price(
        &self,
        symbol: &Symbol,
        spec_of: &dyn Fn(&Symbol) -> MarginSpec,
    ) -> Option<Decimal> {
        let position = self.positions.get(symbol).filter(|p| !p.is_flat())?;
        let spec = spec_of(symbol);
        let (wallet, others_mm, others_upnl) = match spec.mode {
            MarginMode::Isolated => (position.isolated_margin(), Decimal::ZERO, Decimal::ZERO),
            MarginMode::Cross => {
                let mut wallet = self.balance;
                let mut mm = Decimal::ZERO;
                let mut upnl = Decimal::ZERO;
                for (other, p, mark) in self.open().filter(|(other, ..)| *other != symbol) {
                    let other_spec = spec_of(other);
                    match other_spec.mode {
                        MarginMode::Isolated => wallet = wallet.checked_sub(p.isolated_margin())?,
                        MarginMode::Cross => {
                            mm = mm.checked_add(p.maintenance_margin(mark, &other_spec))?;
                            upnl = upnl.checked_add(p.unrealized_pnl(mark))?;
                        }
                    }
                }
                (wallet, mm, upnl)
            }
        };
        let side = position.quantity.signum();
        let quantity = position.quantity.abs();
        let (rate, amount) = spec.maintenance(position.notional(self.last_price(symbol)));
        let numerator = wallet
            .checked_sub(others_mm)?
            .checked_add(others_upnl)?
            .checked_add(amount)?
            .checked_sub(
                side.checked_mul(quantity)?
                    .checked_mul(position.entry_price)?,
            )?;
        let denominator = quantity
            .checked_mul(rate)?
            .checked_sub(side.checked_mul(quantity)?)?;
        let price = numerator.checked_div(denominator)?;
        let towards_entry = if side.is_sign_positive() {
            RoundingStrategy::ToPositiveInfinity
        } else {
            RoundingStrategy::ToNegativeInfinity
        };
        let price = price
            .round_dp_with_strategy(LIQUIDATION_SCALE, towards_entry)
            .normalize();
        (price > Decimal::ZERO).then_some(price)
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
            ..Position::default()
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

    fn leverage(x: u32) -> Option<Leverage> {
        Some(Leverage::new(x).unwrap())
    }

    fn spec(mode: MarginMode) -> MarginSpec {
        MarginSpec {
            mode,
            maintenance_rate: d("0.004"),
            ..MarginSpec::default()
        }
    }

    fn on(symbol: &str, mut fill: Fill) -> Fill {
        fill.symbol = Symbol::new(symbol).unwrap();
        fill
    }

    #[test]
    fn isolated_liquidation_prices_long_and_short() {
        let btc = Symbol::new("BTCUSDT").unwrap();
        let isolated = |_: &Symbol| spec(MarginMode::Isolated);
        // Long 1 at 24900, 10x: WB = 24900 / 10 = 2490.
        // LP = (2490 - 1 x 24900) / (1 x 0.004 - 1) = -22410 / -0.996 = 22500.
        // Check: at 22500 the loss is 2400, leaving 90 = 22500 x 0.004, the maintenance margin.
        let mut p = Portfolio::new(d("100000"));
        p.apply_fill_at(&fill(Side::Buy, "1", "24900", "0"), leverage(10));
        assert_eq!(p.liquidation_price(&btc, &isolated), Some(d("22500")));
        // Short 1 at 25100, 10x: WB = 2510. LP = (2510 + 25100) / (0.004 + 1) = 27610 / 1.004 = 27500.
        let mut p = Portfolio::new(d("100000"));
        p.apply_fill_at(&fill(Side::Sell, "1", "25100", "0"), leverage(10));
        assert_eq!(p.liquidation_price(&btc, &isolated), Some(d("27500")));
        // Long 1 at 10000, 10x: 9000 / 0.996 = 9036.14457831325301204..., rounded up at 12 places.
        let mut p = Portfolio::new(d("100000"));
        p.apply_fill_at(&fill(Side::Buy, "1", "10000", "0"), leverage(10));
        assert_eq!(
            p.liquidation_price(&btc, &isolated),
            Some(d("9036.144578313254"))
        );
        // Short 1 at 10000, 10x: 11000 / 1.004 = 10956.17529880478087649..., rounded down at 12 places.
        let mut p = Portfolio::new(d("100000"));
        p.apply_fill_at(&fill(Side::Sell, "1", "10000", "0"), leverage(10));
        assert_eq!(
            p.liquidation_price(&btc, &isolated),
            Some(d("10956.17529880478"))
        );
        // A 1x long is backed by its whole value: LP = (10000 - 10000) / -0.996 = 0, never reached.
        let mut p = Portfolio::new(d("100000"));
        p.apply_fill_at(&fill(Side::Buy, "1", "10000", "0"), leverage(1));
        assert_eq!(p.liquidation_price(&btc, &isolated), None);
        assert_eq!(
            p.liquidation_price(&Symbol::new("ETHUSDT").unwrap(), &isolated),
            None,
            "no position"
        );
    }

    #[test]
    fn cross_liquidation_prices_count_the_other_positions() {
        let btc = Symbol::new("BTCUSDT").unwrap();
        let eth = Symbol::new("ETHUSDT").unwrap();
        let cross = |_: &Symbol| spec(MarginMode::Cross);
        // Wallet 6064; long 1 BTC at 24900; short 10 ETH at 2000, marked at 2100.
        // ETH: maintenance margin 10 x 2100 x 0.004 = 84, unrealized (2000 - 2100) x 10 = -1000.
        // BTC's LP = (6064 - 84 - 1000 - 24900) / (0.004 - 1) = -19920 / -0.996 = 20000.
        // Check: at 20000, equity = 6064 - 4900 - 1000 = 164 = 20000 x 0.004 + 84.
        let mut p = Portfolio::new(d("6064"));
        p.apply_fill_at(&fill(Side::Buy, "1", "24900", "0"), leverage(5));
        p.apply_fill_at(
            &on("ETHUSDT", fill(Side::Sell, "10", "2000", "0")),
            leverage(5),
        );
        p.mark(&eth, Price::new(d("2100")).unwrap());
        assert_eq!(p.liquidation_price(&btc, &cross), Some(d("20000")));

        // Wallet 6104; BTC marked at 25000: maintenance 100, unrealized +100.
        // ETH's LP = (6104 - 100 + 100 + 10 x 2000) / (10 x 0.004 + 10) = 26104 / 10.04 = 2600.
        // Check: at 2600, equity = 6104 + 100 - 6000 = 204 = 100 + 10 x 2600 x 0.004.
        let mut p = Portfolio::new(d("6104"));
        p.apply_fill_at(&fill(Side::Buy, "1", "24900", "0"), leverage(5));
        p.apply_fill_at(
            &on("ETHUSDT", fill(Side::Sell, "10", "2000", "0")),
            leverage(5),
        );
        p.mark(&btc, Price::new(d("25000")).unwrap());
        assert_eq!(p.liquidation_price(&eth, &cross), Some(d("2600")));

        // An isolated position's margin is out of the cross wallet, and its PnL does not count: wallet 6490, ETH
        // isolated at 5x holds 10 x 2000 / 5 = 4000. BTC's LP = (6490 - 4000 - 24900) / -0.996 = 22500.
        let eth_isolated = |s: &Symbol| {
            if *s == eth {
                spec(MarginMode::Isolated)
            } else {
                spec(MarginMode::Cross)
            }
        };
        let mut p = Portfolio::new(d("6490"));
        p.apply_fill_at(&fill(Side::Buy, "1", "24900", "0"), leverage(5));
        p.apply_fill_at(
            &on("ETHUSDT", fill(Side::Sell, "10", "2000", "0")),
            leverage(5),
        );
        p.mark(&eth, Price::new(d("2100")).unwrap());
        assert_eq!(p.liquidation_price(&btc, &eth_isolated), Some(d("22500")));
    }

    #[test]
    fn the_entry_sets_the_leverage_of_the_whole_position() {
        let btc = Symbol::new("BTCUSDT").unwrap();
        let mut p = Portfolio::new(d("10000"));
        p.apply_fill_at(&fill(Side::Buy, "1", "100", "0"), leverage(5));
        p.mark(&btc, Price::new(d("100")).unwrap());
        // 1 x 100 / 5
        assert_eq!(p.position_margin(&btc), d("20"));
        p.apply_fill_at(&fill(Side::Buy, "1", "100", "0"), leverage(10));
        // The add at 10x re-margins all of it: 2 x 100 / 10.
        assert_eq!(p.positions[&btc].leverage, Leverage::new(10).unwrap());
        assert_eq!(p.position_margin(&btc), d("20"));
        // A stop (no leverage of its own) and a reducing order at another leverage keep it.
        p.apply_fill(&fill(Side::Sell, "0.5", "100", "0"));
        p.apply_fill_at(&fill(Side::Sell, "0.5", "100", "0"), leverage(3));
        assert_eq!(p.positions[&btc].leverage, Leverage::new(10).unwrap());
        // available = 10000 + 0 - 1 x 100 / 10
        assert_eq!(p.available_margin(), d("9990"));
        // 1 x 100 x 0.004
        assert_eq!(
            p.positions[&btc].maintenance_margin(None, &spec(MarginMode::Cross)),
            d("0.4")
        );
    }

    #[test]
    fn old_positions_without_leverage_or_open_pnl_load_at_1x() {
        let old = r#"{"quantity":"1","entry_price":"100","realized_pnl":"5","fees":"1"}"#;
        let p: Position = serde_json::from_str(old).unwrap();
        assert_eq!(p.leverage, Leverage::ONE);
        assert_eq!(p.open_realized_pnl, Decimal::ZERO);
        assert_eq!(p.realized_pnl, d("5"));
    }

    #[test]
    fn the_open_position_keeps_its_own_pnl_apart_from_the_history() {
        let btc = Symbol::new("BTCUSDT").unwrap();
        let mut p = Portfolio::new(d("10000"));
        // A first round trip: +10 realized, fees 0.1 + 0.1.
        p.apply_fill(&fill(Side::Buy, "1", "100", "0.1"));
        p.apply_fill(&fill(Side::Sell, "1", "110", "0.1"));
        // The position opened again from flat: long 2 at 100, fee 0.2; half closed at 95: (95 - 100) x 1 = -5.
        p.apply_fill(&fill(Side::Buy, "2", "100", "0.2"));
        p.apply_fill(&fill(Side::Sell, "1", "95", "0.1"));
        let position = &p.positions[&btc];
        assert_eq!(position.open_realized_pnl, d("-5"));
        assert_eq!(position.open_fees, d("0.3"));
        assert_eq!(position.realized_pnl, d("5")); // 10 - 5
        assert_eq!(position.fees, d("0.5"));
        // Flipping to short 1 at 90 closes the long (-10, the history's) and starts a new position with its fee.
        p.apply_fill(&fill(Side::Sell, "2", "90", "0.4"));
        let position = &p.positions[&btc];
        assert_eq!(position.quantity, d("-1"));
        assert_eq!(position.open_realized_pnl, Decimal::ZERO);
        assert_eq!(position.open_fees, d("0.4"));
        assert_eq!(position.realized_pnl, d("-5"));
        assert_eq!(position.fees, d("0.9"));
    }

    #[test]
    fn pnl_is_booked_to_eight_places_half_away_from_zero() {
        let btc = Symbol::new("BTCUSDT").unwrap();
        let mut p = Portfolio::new(d("10000"));
        // (0.000000375 - 0.00000025) x 1 = 0.000000125 -> 0.00000013
        p.apply_fill(&fill(Side::Buy, "1", "0.00000025", "0"));
        p.apply_fill(&fill(Side::Sell, "1", "0.000000375", "0"));
        assert_eq!(p.positions[&btc].realized_pnl, d("0.00000013"));
        // The same loss on a short: -0.00000013
        p.apply_fill(&fill(Side::Sell, "1", "0.00000025", "0"));
        p.apply_fill(&fill(Side::Buy, "1", "0.000000375", "0"));
        assert_eq!(p.positions[&btc].realized_pnl, Decimal::ZERO);
        assert_eq!(p.positions[&btc].open_realized_pnl, d("-0.00000013"));
    }

    /// Binance's first three BTCUSDT brackets: 0.4 % to 50k, 0.5 % less 50 to 250k, 1 % less 1,300 to 3M.
    fn bracketed() -> MarginSpec {
        let bracket = |floor: &str, cap: &str, rate: &str, amount: &str| Bracket {
            floor: d(floor),
            cap: d(cap),
            rate: d(rate),
            amount: d(amount),
        };
        MarginSpec {
            mode: MarginMode::Isolated,
            maintenance_rate: d("0.004"),
            brackets: std::sync::Arc::new([
                bracket("0", "50000", "0.004", "0"),
                bracket("50000", "250000", "0.005", "50"),
                bracket("250000", "3000000", "0.01", "1300"),
            ]),
        }
    }

    #[test]
    fn brackets_set_the_maintenance_margin_and_the_liquidation_price() {
        let spec = bracketed();
        assert_eq!(spec.maintenance(d("49999.99")), (d("0.004"), d("0")));
        assert_eq!(spec.maintenance(d("50000")), (d("0.005"), d("50")));
        assert_eq!(spec.maintenance(d("5000000")), (d("0.01"), d("1300")));
        // Without brackets, the configured rate for every size.
        assert_eq!(
            MarginSpec::default().maintenance(d("5000000")),
            (d("0.004"), d("0"))
        );

        // Isolated long 10 at 10,000 at 10x: notional 100,000 (second bracket), margin 10,000.
        let mut p = Portfolio::new(d("100000"));
        let btc = Symbol::new("BTCUSDT").unwrap();
        p.apply_fill_at(&fill(Side::Buy, "10", "10000", "0"), leverage(10));
        // 100,000 x 0.005 - 50
        assert_eq!(p.positions[&btc].maintenance_margin(None, &spec), d("450"));
        // (10,000 + 50 - 10 x 10,000) / (10 x 0.005 - 10) = 9040.2010050251256...; up, towards the entry.
        let level = p.liquidation_price(&btc, &|_| spec.clone()).unwrap();
        assert_eq!(level, d("9040.201005025126"));
        // Check: at that price the loss leaves 10,000 - 9,597.98994974874 = 402.01..., and the maintenance margin
        // of the 90,402.01 notional is 90,402.01 x 0.005 - 50 = 402.01.
    }
}
