//! Bounds on amounts (prices, quantities, sizes, account totals) and the strict reading of a sender's numbers.
//!
//! The bounds make every product and sum the actors compute from bounded amounts stay far inside `Decimal`'s range
//! (about 7.9e28), so that arithmetic cannot overflow; docs/security.md ("Bounds on amounts") has the argument.

use rust_decimal::Decimal;
use thiserror::Error;

/// The lowest price taken: 1e-8, the finest tick Binance and OKX quote (SHIB trades near 1e-5). It keeps divisions
/// by a price (sizing) at most 1e8 times their numerator.
pub const MIN_PRICE: Decimal = Decimal::from_parts(1, 0, 0, false, 8);

/// The highest price taken: 1e10, above Bitcoin in any currency an exchange quotes it in (about 1e5 USD, 2.6e9 VND).
pub const MAX_PRICE: Decimal = Decimal::from_parts(1_410_065_408, 2, 0, false, 0);

/// The most units of the base asset an order or a position may hold: 1e12 (a trillion SHIB is about 1e7 USD). A close
/// must fit in one order, so this bounds positions too: risk denies an order that would take one past it.
pub const MAX_QUANTITY: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);

/// The largest quote-currency size (`"500 USDT"`) taken: 1e15, more than the world's yearly output. Divided by the
/// lowest price it is 1e23, still far inside `Decimal`.
pub const MAX_QUOTE: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);

/// Past this (1e26), the account's running totals (balance, realized PnL, fees) are beyond anything real and risk
/// allows only reducing orders. The fill that crossed it and closing what is open move each total by at most 4e22
/// per symbol, so the totals stay below `Decimal::MAX` for any account of fewer than a million symbols.
pub const MAX_ACCOUNT_TOTAL: Decimal =
    Decimal::from_parts(3_825_205_248, 3_704_098_002, 5_421_010, false, 0);

/// The most decimal places a sender may write in a price, quantity, size or percentage: 12, four more than any
/// exchange's tick or lot step. Anything finer is refused, not rounded. It also keeps positions exact: a sum of
/// quantities of at most 1e12 with 12 places needs 25 digits, within the 28 a `Decimal` holds.
pub const MAX_SCALE: u32 = 12;

/// The most characters a number may be written with. No amount needs more (28 significant digits, a sign, a point
/// and an exponent fit), and the digits of a longer one could only be rounded away.
pub const MAX_NUMBER_LEN: usize = 64;

/// Why text is not a number Sentinel takes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NumberError {
    #[error("`{0}` is not a number: write digits with an optional `.` and exponent, like 45000.5 or 1.5e-5")]
    Syntax(String),
    #[error("a number may be written with at most {MAX_NUMBER_LEN} characters")]
    TooLong,
    #[error(
        "`{0}` cannot be held exactly: use at most 28 significant digits and a value below 7.9e28"
    )]
    NotExact(String),
}

/// Reads a number exactly as written, or refuses it. `[+-]digits[.digits][(e|E)[+-]digits]`, ASCII only, no spaces
/// (trim first), no `_` separators, no digits beyond what a `Decimal` holds: `Decimal::from_str` would read
/// `4_5000` as 45000 and silently round a 30th digit, so it is not used on a sender's text.
pub fn parse_decimal(text: &str) -> Result<Decimal, NumberError> {
    if text.len() > MAX_NUMBER_LEN {
        return Err(NumberError::TooLong);
    }
    let syntax = || NumberError::Syntax(text.to_string());
    let not_exact = || NumberError::NotExact(text.to_string());
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !digits(whole) || !digits(fraction) {
        return Err(syntax());
    }
    let exponent = exponent.unwrap_or("0");
    let unsigned_exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if unsigned_exponent.is_empty() || !digits(unsigned_exponent) {
        return Err(syntax());
    }
    // value = significant digits x 10^power, with the zeros on either side taken off.
    let all = format!("{whole}{fraction}");
    let significant = all.trim_start_matches('0');
    let trailing = significant.len() - significant.trim_end_matches('0').len();
    let significant = &significant[..significant.len() - trailing];
    if significant.is_empty() {
        return Ok(Decimal::ZERO);
    }
    // Well-formed but too long for an i64: far beyond any Decimal, unless the digits are all zeros.
    let exponent: i64 = exponent.parse().map_err(|_| not_exact())?;
    let power = exponent
        .checked_sub(fraction.len() as i64)
        .and_then(|p| p.checked_add(trailing as i64))
        .ok_or_else(not_exact)?;
    // 29 digits can exceed 2^96 but always fit an i128; the checks below say whether the value fits a Decimal.
    if significant.len() > 29 || !(-28..=28).contains(&power) {
        return Err(not_exact());
    }
    let mut mantissa: i128 = significant.parse().map_err(|_| not_exact())?;
    let scale = if power < 0 {
        power.unsigned_abs() as u32
    } else {
        0
    };
    if power > 0 {
        mantissa = 10i128
            .checked_pow(power as u32)
            .and_then(|p| mantissa.checked_mul(p))
            .ok_or_else(not_exact)?;
    }
    if negative {
        mantissa = -mantissa;
    }
    Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|_| not_exact())
}

/// Whether `value` has at most `MAX_SCALE` decimal places once trailing zeros are dropped.
pub fn fits_scale(value: Decimal) -> bool {
    value.normalize().scale() <= MAX_SCALE
}

/// `a + b`, or the nearest end of `Decimal`'s range. For running totals only, which the bounds keep far from it; if
/// one still gets there it is logged, since the account's numbers are then meaningless.
pub(crate) fn add_to_total(what: &str, a: Decimal, b: Decimal) -> Decimal {
    a.checked_add(b).unwrap_or_else(|| {
        tracing::error!(total = what, %a, %b, "total saturated at the end of Decimal's range");
        a.saturating_add(b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn the_bounds_are_the_numbers_the_docs_give() {
        assert_eq!(MIN_PRICE, d("0.00000001"));
        assert_eq!(MAX_PRICE, Decimal::from(10_000_000_000i64));
        assert_eq!(MAX_QUANTITY, Decimal::from(1_000_000_000_000i64));
        assert_eq!(MAX_QUOTE, Decimal::from(1_000_000_000_000_000i64));
        assert_eq!(MAX_ACCOUNT_TOTAL, d("100000000000000000000000000"));
    }

    #[test]
    fn numbers_are_read_exactly_as_written() {
        let cases = [
            ("45000", "45000"),
            ("45000.50", "45000.5"),
            ("-1.5", "-1.5"),
            ("+2", "2"),
            (".5", "0.5"),
            ("5.", "5"),
            ("-0", "0"),
            (
                "000000000000000000000000000000000000000000000000000000000000001",
                "1",
            ),
            ("45000.123456789012345", "45000.123456789012345"),
            ("1e5", "100000"),
            ("4.5E+4", "45000"),
            ("1.5e-5", "0.000015"),
            ("1e-28", "0.0000000000000000000000000001"),
            (
                "79228162514264337593543950335",
                "79228162514264337593543950335",
            ),
            ("1000e-3", "1"),
            ("0e999999999999999999999", "0"),
        ];
        for (text, value) in cases {
            assert_eq!(parse_decimal(text), Ok(d(value)), "{text}");
        }
    }

    #[test]
    fn what_cannot_be_read_exactly_is_refused() {
        let syntax = [
            "4_5000", "", "-", ".", "e5", "1e", "1e+", "1.2.3", " 5", "5 ", "1,5", "0x10", "NaN",
            "inf", "١", "--1", "1e5.5", "5%",
        ];
        for text in syntax {
            assert!(
                matches!(parse_decimal(text), Err(NumberError::Syntax(_))),
                "{text}: {:?}",
                parse_decimal(text)
            );
        }
        let inexact = [
            "1e-30",
            "1e40",
            "79228162514264337593543950336",
            "0.10000000000000000000000000000001",
            "1.2345678901234567890123456789012",
            "1e99999999999999999999",
        ];
        for text in inexact {
            assert!(
                matches!(parse_decimal(text), Err(NumberError::NotExact(_))),
                "{text}: {:?}",
                parse_decimal(text)
            );
        }
        assert_eq!(parse_decimal(&"1".repeat(65)), Err(NumberError::TooLong));
        assert_eq!(
            parse_decimal(&format!("0.{}", "0".repeat(70))),
            Err(NumberError::TooLong)
        );
    }

    #[test]
    fn scale_counts_significant_places_only() {
        assert!(fits_scale(d("0.000000000001")));
        assert!(fits_scale(d("1.500000000000000000")));
        assert!(!fits_scale(d("0.0000000000001")));
    }

    proptest! {
        #[test]
        fn any_decimal_round_trips(mantissa in any::<i64>(), scale in 0u32..=28) {
            let value = Decimal::new(mantissa, scale);
            prop_assert_eq!(parse_decimal(&value.to_string()), Ok(value));
        }

        #[test]
        fn scientific_text_reads_like_from_scientific(mantissa in -99_999i64..99_999, exponent in -20i32..20) {
            let text = format!("{mantissa}e{exponent}");
            prop_assert_eq!(parse_decimal(&text).ok(), Decimal::from_scientific(&text).ok());
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
            let _ = parse_decimal(&text);
        }

        #[test]
        fn text_with_an_underscore_is_never_a_number(a in "[0-9]{1,10}", b in "[0-9]{1,10}") {
            let text = format!("{a}_{b}");
            prop_assert!(parse_decimal(&text).is_err());
        }
    }
}
