//! What a paper fill costs: the price moved against the taker by the slippage, and the fee on its value. Kept to
//! 8 decimal places, as the paper venue has always filled, so the numbers in the journal and the API stay the same.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use sentinel_actors::types::{Price, Quantity, Side};

/// Fill prices and fees are kept to this many decimal places.
const SCALE: u32 = 8;

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

    /// The last price moved against the taker by the slippage. A result outside the price bounds (slippage at the
    /// very edge of them) fills at the last price instead.
    pub fn fill_price(&self, side: Side, last: Price) -> Price {
        Decimal::ONE
            .checked_add(side.sign() * self.slippage)
            .and_then(|factor| last.get().checked_mul(factor))
            .and_then(|price| Price::new(price.round_dp(SCALE).normalize()).ok())
            .unwrap_or(last)
    }

    /// The fee on a fill of `quantity` at `price`, in quote currency.
    pub fn fee(&self, price: Price, quantity: Quantity) -> Decimal {
        // Price x quantity is at most 1e22 and a configured fee rate is below 1; saturating only for a rate that
        // did not come through the configuration's checks.
        (price.get() * quantity.get())
            .saturating_mul(self.fee_rate)
            .round_dp(SCALE)
            .normalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn price(s: &str) -> Price {
        Price::from_str(s).unwrap()
    }

    #[test]
    fn slippage_is_against_the_taker_and_fees_keep_eight_places() {
        let costs = PaperCosts {
            fee_rate: d("0.0004"),
            slippage: d("0.0005"),
        };
        // The README's example: 45000 x 1.0005, and 45022.5 x 0.111 x 0.0004.
        assert_eq!(
            costs.fill_price(Side::Buy, price("45000")),
            price("45022.5")
        );
        assert_eq!(
            costs.fill_price(Side::Sell, price("45000")),
            price("44977.5")
        );
        let quantity = Quantity::from_str("0.111").unwrap();
        assert_eq!(costs.fee(price("45022.5"), quantity), d("1.998999"));
        // 0.00000001 x 0.3 x 0.0004 rounds to nothing at 8 places.
        let tiny = Quantity::from_str("0.3").unwrap();
        assert_eq!(costs.fee(price("0.00000001"), tiny), Decimal::ZERO);
        assert_eq!(
            PaperCosts::FREE.fill_price(Side::Buy, price("3000.25")),
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
            costs.fill_price(Side::Buy, price("10000000000")),
            price("10000000000")
        );
    }
}
