//! How many units an entry asks for: its size (percent of equity, base units or quote amount) at a price, rounded to
//! the symbol's step, or a denial when that is more than one order may hold.

use rust_decimal::{Decimal, RoundingStrategy};

use super::book::SymbolSettings;
use crate::amount::{MAX_QUANTITY, MAX_SCALE};
use crate::risk::DenyReason;
use crate::signal::{EntryParams, SizeSpec};
use crate::types::{Price, Quantity};

/// The quantity an entry asks for, rounded down to the step; `None` when that is nothing, a denial when it is more
/// than one order may hold. Checked arithmetic: equity has no bound of its own, and a quote size or margin divided
/// by a price near `MIN_PRICE` is 1e8 times larger.
pub(super) fn entry_quantity(
    settings: &SymbolSettings,
    order: &EntryParams,
    price: Price,
    equity: Decimal,
) -> Result<Option<Quantity>, DenyReason> {
    let leverage = order.leverage.unwrap_or(settings.default_leverage);
    let size = order.size.unwrap_or(settings.default_size);
    let raw = match size {
        SizeSpec::EquityPercent(pct) => equity
            .checked_mul(pct)
            .and_then(|n| n.checked_div(Decimal::ONE_HUNDRED))
            .and_then(|margin| margin.checked_mul(leverage.as_decimal()))
            .and_then(|notional| notional.checked_div(price.get())),
        SizeSpec::Base(quantity) => Some(quantity.get()),
        SizeSpec::Quote(notional) => notional.checked_div(price.get()),
    };
    match raw {
        Some(raw) if raw <= MAX_QUANTITY => {
            Ok(Quantity::new(round_to_step(raw, settings.quantity_step)).ok())
        }
        _ => Err(DenyReason::SizeAboveLimit {
            size,
            price,
            limit: MAX_QUANTITY,
        }),
    }
}

/// Rounds down to a multiple of `step`, and to at most `MAX_SCALE` places so that positions stay exact sums.
pub(super) fn round_to_step(quantity: Decimal, step: Decimal) -> Decimal {
    let stepped = if step > Decimal::ZERO {
        // Overflows only for a step below about 1e-16, finer than the places kept below anyway.
        quantity
            .checked_div(step)
            .and_then(|steps| steps.floor().checked_mul(step))
            .unwrap_or(quantity)
    } else {
        quantity
    };
    stepped
        .round_dp_with_strategy(MAX_SCALE, RoundingStrategy::ToZero)
        .normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Leverage, Symbol};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn settings(size: SizeSpec) -> SymbolSettings {
        SymbolSettings {
            symbol: Symbol::new("SHIBUSDT").unwrap(),
            default_size: size,
            default_leverage: Leverage::new(125).unwrap(),
            default_stop_loss: None,
            default_take_profit: None,
            quantity_step: d("1"),
        }
    }

    fn sized(size: SizeSpec, price: &str, equity: Decimal) -> Result<Option<Quantity>, DenyReason> {
        let price = Price::from_str(price).unwrap();
        entry_quantity(&settings(size), &EntryParams::default(), price, equity)
    }

    fn too_big(size: SizeSpec, price: &str) -> Result<Option<Quantity>, DenyReason> {
        Err(DenyReason::SizeAboveLimit {
            size,
            price: Price::from_str(price).unwrap(),
            limit: MAX_QUANTITY,
        })
    }

    #[test]
    fn sizes_beyond_one_order_are_denied_with_what_was_asked() {
        let all_in = SizeSpec::EquityPercent(d("100"));
        // 10000 x 125 / 1e-8 = 1.25e14 units.
        assert_eq!(
            sized(all_in, "0.00000001", d("10000")),
            too_big(all_in, "0.00000001")
        );
        // An equity at the end of Decimal's range overflows the sizing itself: denied the same way.
        assert_eq!(
            sized(all_in, "45000", Decimal::MAX),
            too_big(all_in, "45000")
        );
        let largest_quote = SizeSpec::Quote(d("1000000000000000"));
        assert_eq!(
            sized(largest_quote, "0.00000001", d("1")),
            too_big(largest_quote, "0.00000001")
        );
        // Exactly the largest quantity is one order.
        assert_eq!(
            sized(SizeSpec::Quote(d("10000")), "0.00000001", d("1")),
            Ok(Some(Quantity::new(MAX_QUANTITY).unwrap()))
        );
        // A negative equity sizes to nothing, not to a denial.
        assert_eq!(sized(all_in, "1", d("-5")), Ok(None));
    }

    #[test]
    fn rounding_never_fails_and_keeps_at_most_the_scale_cap() {
        let tiny = Decimal::new(1, 28);
        assert_eq!(round_to_step(MAX_QUANTITY, tiny), MAX_QUANTITY);
        assert_eq!(
            round_to_step(d("0.1234567890123456"), tiny),
            d("0.123456789012")
        );
        assert_eq!(round_to_step(d("0.0159"), d("0.001")), d("0.015"));
        assert_eq!(round_to_step(d("5"), MAX_QUANTITY), Decimal::ZERO);
    }
}
