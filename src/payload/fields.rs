//! Field values as senders write them: numbers as JSON numbers or strings, sizes, exit levels and timestamps.

use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use sentinel_actors::amount::parse_decimal;
use sentinel_actors::signal::{ExitLevel, SizeSpec};
use sentinel_actors::types::{Price, Quantity, Timestamp};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A number's text: a JSON number as the sender wrote it (serde_json keeps the digits), or a numeric string.
fn number_text(value: &Value) -> Result<String, String> {
    match value {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.trim().to_string()),
        other => Err(format!("expected a number, found {}", kind(other))),
    }
}

/// A decimal exactly as written, or an error: no `_` separators, no digits rounded away (see `parse_decimal`).
pub(super) fn decimal(value: &Value) -> Result<Decimal, String> {
    parse_decimal(&number_text(value)?).map_err(|e| e.to_string())
}

pub(super) fn text(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .map(str::trim)
        .ok_or_else(|| format!("expected text, found {}", kind(value)))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A price within the bounds, with at most `MAX_SCALE` decimal places.
pub(super) fn price(value: &Value) -> Result<Price, String> {
    Price::from_str(&number_text(value)?).map_err(|e| e.to_string())
}

/// A quantity within the bounds, with at most `MAX_SCALE` decimal places.
pub(super) fn quantity(value: &Value) -> Result<Quantity, String> {
    Quantity::from_str(&number_text(value)?).map_err(|e| e.to_string())
}

/// `"10%"` (of equity, as margin), `"0.01"` (base units) or `"500 USDT"` (quote notional), each within its bounds.
pub fn parse_size(raw: &str, quote_currency: &str) -> Result<SizeSpec, String> {
    let raw = raw.trim();
    if let Some(pct) = raw.strip_suffix('%') {
        let pct =
            parse_decimal(pct.trim()).map_err(|e| format!("`{raw}` is not a percentage: {e}"))?;
        return SizeSpec::equity_percent(pct).map_err(|e| format!("`{raw}`: {e}"));
    }
    if let Some((amount, unit)) = raw.split_once(char::is_whitespace) {
        let unit = unit.trim();
        if !unit.eq_ignore_ascii_case(quote_currency) {
            return Err(format!(
                "`{raw}`: the unit must be the quote currency {quote_currency}"
            ));
        }
        let amount =
            parse_decimal(amount.trim()).map_err(|e| format!("`{raw}` is not an amount: {e}"))?;
        return SizeSpec::quote(amount).map_err(|e| format!("`{raw}`: {e}"));
    }
    Quantity::from_str(raw).map(SizeSpec::Base).map_err(|e| {
        format!("`{raw}` is not a size ({e}): write \"10%\", \"0.01\" or \"500 {quote_currency}\"")
    })
}

pub(super) fn size(value: &Value, quote_currency: &str) -> Result<SizeSpec, String> {
    match value {
        Value::Number(_) => quantity(value).map(SizeSpec::Base),
        _ => parse_size(text(value)?, quote_currency),
    }
}

/// `"2%"` from the entry price, or an absolute price, each within its bounds.
pub fn parse_exit_level(raw: &str) -> Result<ExitLevel, String> {
    let raw = raw.trim();
    if let Some(pct) = raw.strip_suffix('%') {
        let pct =
            parse_decimal(pct.trim()).map_err(|e| format!("`{raw}` is not a percentage: {e}"))?;
        return ExitLevel::percent(pct).map_err(|e| format!("`{raw}`: {e}"));
    }
    Price::from_str(raw)
        .map(ExitLevel::Price)
        .map_err(|e| format!("`{raw}` is not a level ({e}): write \"2%\" or a price"))
}

pub(super) fn exit_level(value: &Value) -> Result<ExitLevel, String> {
    match value {
        Value::Number(_) => price(value).map(ExitLevel::Price),
        _ => parse_exit_level(text(value)?),
    }
}

/// Unix seconds or milliseconds (number or numeric text), or RFC 3339 text as TradingView's `{{time}}` gives.
pub(super) fn timestamp(value: &Value) -> Result<Timestamp, String> {
    if let Ok(n) = decimal(value) {
        let n = n
            .trunc()
            .to_i64()
            .ok_or_else(|| "timestamp out of range".to_string())?;
        // Anything past the year 33658 in seconds is milliseconds.
        let millis = if n.unsigned_abs() < 1_000_000_000_000 {
            n * 1000
        } else {
            n
        };
        return Ok(Timestamp(millis));
    }
    let raw = text(value)?;
    let at = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
        format!("`{raw}` is not a timestamp: use Unix seconds, milliseconds or RFC 3339 (2024-01-01T12:00:00Z)")
    })?;
    Ok(Timestamp((at.unix_timestamp_nanos() / 1_000_000) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_actors::amount::{MAX_QUANTITY, MAX_QUOTE};
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn sizes() {
        assert_eq!(
            parse_size("10%", "USDT"),
            Ok(SizeSpec::EquityPercent(d("10")))
        );
        assert_eq!(
            parse_size("500 USDT", "USDT"),
            Ok(SizeSpec::Quote(d("500")))
        );
        assert_eq!(
            parse_size("500 usdt", "USDT"),
            Ok(SizeSpec::Quote(d("500")))
        );
        assert_eq!(
            parse_size("0.01", "USDT"),
            Ok(SizeSpec::Base(Quantity::from_str("0.01").unwrap()))
        );
        for bad in ["0%", "101%", "500 EUR", "-1", "abc", "", "-5 USDT"] {
            assert!(parse_size(bad, "USDT").is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn exit_levels() {
        assert_eq!(parse_exit_level("2%"), Ok(ExitLevel::Percent(d("2"))));
        assert_eq!(
            parse_exit_level("44000.5"),
            Ok(ExitLevel::Price(Price::from_str("44000.5").unwrap()))
        );
        assert!(parse_exit_level("100%").is_err());
        assert!(parse_exit_level("0").is_err());
    }

    #[test]
    fn numbers_keep_their_digits() {
        // 0.1 + 0.2 style: a float would not survive, serde_json's arbitrary precision does.
        let v: Value = serde_json::from_str("45000.123456789012345").unwrap();
        assert_eq!(decimal(&v), Ok(d("45000.123456789012345")));
        assert_eq!(decimal(&json!("45000.5")), Ok(d("45000.5")));
        assert!(decimal(&json!(true)).is_err());
    }

    #[test]
    fn numbers_are_taken_exactly_or_refused() {
        // rust_decimal's own parser reads `4_5000` as 45000 and rounds a 29th digit away.
        for bad in [
            json!("4_5000"),
            json!("45_000.5"),
            json!("1e-30"),
            json!("1e40"),
            json!("0.10000000000000000000000000000001"),
            json!("1".repeat(65)),
            json!(format!("0.{}1", "0".repeat(70))),
        ] {
            assert!(decimal(&bad).is_err(), "{bad} accepted");
            assert!(price(&bad).is_err(), "{bad} accepted as a price");
        }
        let v: Value = serde_json::from_str("4.5e4").unwrap();
        assert_eq!(price(&v), Ok(Price::from_str("45000").unwrap()));
        assert_eq!(decimal(&json!("1.5E-5")), Ok(d("0.000015")));
        assert!(price(&json!("4_5000")).unwrap_err().contains("4_5000"));
    }

    #[test]
    fn amounts_outside_the_bounds_are_refused() {
        let v = |text: &str| -> Value { serde_json::from_str(text).unwrap() };
        for bad in [
            "1e-13",
            "0.000000009",
            "10000000001",
            "1e12",
            "45000.0000000000001",
        ] {
            assert!(price(&v(bad)).is_err(), "price {bad} accepted");
        }
        assert!(price(&v("1e-8")).is_ok());
        assert!(price(&v("1e10")).is_ok());
        assert!(quantity(&v("1e12")).is_ok());
        assert!(quantity(&v("1000000000000.5")).is_err());
        assert!(quantity(&v("0.0000000000001")).is_err());

        for bad in [
            "1_0%",
            "100.0000000000001%",
            "0.0000000000001%",
            "1e20 USDT",
            "1000000000000001 USDT",
            "1_000 USDT",
            "0.0000000000001 USDT",
            "1e13",
            "1_000",
        ] {
            assert!(parse_size(bad, "USDT").is_err(), "size {bad} accepted");
        }
        assert_eq!(
            parse_size("1e15 USDT", "USDT"),
            Ok(SizeSpec::Quote(d("1000000000000000")))
        );
        assert_eq!(
            parse_size("100%", "USDT"),
            Ok(SizeSpec::EquityPercent(d("100")))
        );
        for bad in ["4_4000", "2_0%", "99.9999999999999%", "1e-30", "1e-9"] {
            assert!(parse_exit_level(bad).is_err(), "level {bad} accepted");
        }
        assert!(parse_exit_level("99.999999999999%").is_ok());
    }

    proptest::proptest! {
        /// Whatever the text, the parsers answer, and what they accept is within the bounds.
        #[test]
        fn any_text_is_parsed_or_refused_within_the_bounds(text in "\\PC{0,40}|[0-9eE.+_% -]{0,30}( USDT)?") {
            if let Ok(size) = parse_size(&text, "USDT") {
                let ok = match size {
                    SizeSpec::EquityPercent(p) => p > Decimal::ZERO && p <= Decimal::ONE_HUNDRED,
                    SizeSpec::Base(q) => q.get() <= MAX_QUANTITY,
                    SizeSpec::Quote(a) => a > Decimal::ZERO && a <= MAX_QUOTE,
                };
                proptest::prop_assert!(ok, "{text:?} -> {size:?}");
            }
            if let Ok(ExitLevel::Percent(p)) = parse_exit_level(&text) {
                proptest::prop_assert!(p > Decimal::ZERO && p < Decimal::ONE_HUNDRED);
            }
            let _ = price(&json!(text));
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            timestamp(&json!(1_700_000_000)),
            Ok(Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            timestamp(&json!(1_700_000_000_123i64)),
            Ok(Timestamp(1_700_000_000_123))
        );
        assert_eq!(
            timestamp(&json!("1700000000")),
            Ok(Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            timestamp(&json!("2023-11-14T22:13:20Z")),
            Ok(Timestamp(1_700_000_000_000))
        );
        assert!(timestamp(&json!("yesterday")).is_err());
        // Found by fuzzing: i64::MIN overflowed `abs`.
        assert_eq!(timestamp(&json!(i64::MIN)), Ok(Timestamp(i64::MIN)));
        assert!(timestamp(&json!("-9223372036854775808.9")).is_ok());
    }
}
