//! What a paper fill costs: the price moved against the taker by the slippage, rounded to the symbol's tick against
//! the taker (no tick: not rounded at all), and the fee on its value, booked like all money (`portfolio::money`:
//! 8 decimal places, half away from zero).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use sentinel_actors::portfolio::money;
use sentinel_actors::types::{Price, Quantity, Side};

/// Paper trading costs, as fractions (0.0004 = 0.04 %). The configuration checks both are in [0, 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaperCosts {
    pub fee_rate: Decimal,
    pub slippage: Decimal,
}

impl PaperCosts {
    /// No fee, no slippage: fills at the last price exactly.
    pub const FREE: PaperCosts = PaperCosts {
        fee_rate: Decimal::ZERO,
        slippage: Decimal::ZERO,
    };

    /// The last price moved against the taker by the slippage, then, with a `tick`, rounded to a multiple of it in
    /// the direction that does not improve the fill (a buy up, a sell down); without one, exact. A result outside
    /// the price bounds (slippage at the very edge of them, a sell below one tick) fills at the last price instead.
    pub fn fill_price(&self, side: Side, last: Price, tick: Option<Decimal>) -> Price {
        Decimal::ONE
            .checked_add(side.sign() * self.slippage)
            .and_then(|factor| last.get().checked_mul(factor))
            .and_then(|price| match tick {
                Some(tick) => to_tick(price, tick, side),
                None => Some(price),
            })
            .and_then(|price| Price::new(price.normalize()).ok())
            .unwrap_or(last)
    }

    /// The fee on a fill of `quantity` at `price`, in quote currency.
    pub fn fee(&self, price: Price, quantity: Quantity) -> Decimal {
        // Price x quantity is at most 1e22 and a configured fee rate is below 1; saturating only for a rate that
        // did not come through the configuration's checks.
        money((price.get() * quantity.get()).saturating_mul(self.fee_rate))
    }
}

/// `price` on a multiple of `tick`: up for a buy, down for a sell. A price of at most 1e10 over a tick of at least
/// 1e-12 is at most 1e22 ticks: nothing here overflows for configured ticks.
fn to_tick(price: Decimal, tick: Decimal, side: Side) -> Option<Decimal> {
    let ticks = price.checked_div(tick)?;
    let whole = match side {
        Side::Buy => ticks.ceil(),
        Side::Sell => ticks.floor(),
    };
    whole.checked_mul(tick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn price(s: &str) -> Price {
        Price::new(d(s)).unwrap()
    }

    #[test]
    fn slippage_is_against_the_taker_and_fees_keep_eight_places() {
        let costs = PaperCosts {
            fee_rate: d("0.0004"),
            slippage: d("0.0005"),
        };
        // The README's example: 45000 x 1.0005, and 45022.5 x 0.111 x 0.0004.
        assert_eq!(
            costs.fill_price(Side::Buy, price("45000"), None),
            price("45022.5")
        );
        assert_eq!(
            costs.fill_price(Side::Sell, price("45000"), None),
            price("44977.5")
        );
        let quantity = Quantity::from_str("0.111").unwrap();
        assert_eq!(costs.fee(price("45022.5"), quantity), d("1.998999"));
        // 0.00000001 x 0.3 x 0.0004 rounds to nothing at 8 places.
        let tiny = Quantity::from_str("0.3").unwrap();
        assert_eq!(costs.fee(price("0.00000001"), tiny), Decimal::ZERO);
        assert_eq!(
            PaperCosts::FREE.fill_price(Side::Buy, price("3000.25"), None),
            price("3000.25")
        );
    }

    #[test]
    fn slippage_past_the_highest_price_fills_at_the_last_price() {
        let costs = PaperCosts {
            fee_rate: Decimal::ZERO,
            slippage: d("0.0005"),
        };
        assert_eq!(
            costs.fill_price(Side::Buy, price("10000000000"), None),
            price("10000000000")
        );
    }

    #[test]
    fn a_tiny_price_fills_exactly_or_on_its_tick_against_the_taker() {
        let costs = PaperCosts {
            fee_rate: d("0.0004"),
            slippage: d("0.0005"),
        };
        let last = price("0.0000012345");
        // No tick: exactly 0.05 % worse. 0.0000012345 x 1.0005 = 0.00000123511725 (it used to be rounded to
        // 0.00000124, 0.45 % worse); 0.0000012345 x 0.9995 = 0.00000123388275.
        assert_eq!(
            costs.fill_price(Side::Buy, last, None),
            price("0.00000123511725")
        );
        assert_eq!(
            costs.fill_price(Side::Sell, last, None),
            price("0.00000123388275")
        );
        // A tick of 0.0000000001: the buy's 12351.1725 ticks round up to 12352, the sell's 12338.8275 down to 12338.
        let tick = Some(d("0.0000000001"));
        assert_eq!(
            costs.fill_price(Side::Buy, last, tick),
            price("0.0000012352")
        );
        assert_eq!(
            costs.fill_price(Side::Sell, last, tick),
            price("0.0000012338")
        );
        // On a tick already: unchanged.
        assert_eq!(
            PaperCosts::FREE.fill_price(Side::Buy, price("45000.5"), Some(d("0.1"))),
            price("45000.5")
        );
        // A sell that would round below one tick fills at the last price.
        assert_eq!(
            costs.fill_price(Side::Sell, price("0.00000001"), Some(d("0.0000001"))),
            price("0.00000001")
        );
    }

    #[test]
    fn a_fee_half_way_between_two_places_rounds_away_from_zero() {
        let costs = PaperCosts {
            fee_rate: d("0.0004"),
            slippage: Decimal::ZERO,
        };
        // 0.3125 x 0.001 x 0.0004 = 0.000000125 -> 0.00000013 (to even it would be 0.00000012).
        let quantity = Quantity::from_str("0.001").unwrap();
        assert_eq!(costs.fee(price("0.3125"), quantity), d("0.00000013"));
    }
}
