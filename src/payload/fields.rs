//! Field values as senders write them: numbers as JSON numbers or strings, sizes, exit levels and timestamps.

use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use sentinel_actors::signal::{ExitLevel, SizeSpec};
use sentinel_actors::types::{Price, Quantity, Timestamp};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A decimal from a JSON number or a numeric string, exactly as written (serde_json keeps the digits).
pub(super) fn decimal(value: &Value) -> Result<Decimal, String> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(format!("expected a number, found {}", kind(other))),
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| format!("`{text}` is not a number"))
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

pub(super) fn price(value: &Value) -> Result<Price, String> {
    Price::new(decimal(value)?).map_err(|e| e.to_string())
}

pub(super) fn quantity(value: &Value) -> Result<Quantity, String> {
    Quantity::new(decimal(value)?).map_err(|e| e.to_string())
}

/// `"10%"` (of equity, as margin), `"0.01"` (base units) or `"500 USDT"` (quote notional).
pub fn parse_size(raw: &str, quote_currency: &str) -> Result<SizeSpec, String> {
    let raw = raw.trim();
    if let Some(pct) = raw.strip_suffix('%') {
        let pct =
            Decimal::from_str(pct.trim()).map_err(|_| format!("`{raw}` is not a percentage"))?;
        if pct <= Decimal::ZERO || pct > Decimal::ONE_HUNDRED {
            return Err(format!(
                "`{raw}`: a percent of equity must be above 0% and at most 100%"
            ));
        }
        return Ok(SizeSpec::EquityPercent(pct));
    }
    if let Some((amount, unit)) = raw.split_once(char::is_whitespace) {
        let unit = unit.trim();
        if !unit.eq_ignore_ascii_case(quote_currency) {
            return Err(format!(
                "`{raw}`: the unit must be the quote currency {quote_currency}"
            ));
        }
        let amount =
            Decimal::from_str(amount.trim()).map_err(|_| format!("`{raw}` is not an amount"))?;
        if amount <= Decimal::ZERO {
            return Err(format!("`{raw}`: an amount must be greater than 0"));
        }
        return Ok(SizeSpec::Quote(amount));
    }
    Quantity::from_str(raw).map(SizeSpec::Base).map_err(|_| {
        format!("`{raw}` is not a size: write \"10%\", \"0.01\" or \"500 {quote_currency}\"")
    })
}

pub(super) fn size(value: &Value, quote_currency: &str) -> Result<SizeSpec, String> {
    match value {
        Value::Number(_) => quantity(value).map(SizeSpec::Base),
        _ => parse_size(text(value)?, quote_currency),
    }
}

/// `"2%"` from the entry price, or an absolute price.
pub fn parse_exit_level(raw: &str) -> Result<ExitLevel, String> {
    let raw = raw.trim();
    if let Some(pct) = raw.strip_suffix('%') {
        let pct =
            Decimal::from_str(pct.trim()).map_err(|_| format!("`{raw}` is not a percentage"))?;
        if pct <= Decimal::ZERO || pct >= Decimal::ONE_HUNDRED {
            return Err(format!(
                "`{raw}`: a percent from entry must be above 0% and below 100%"
            ));
        }
        return Ok(ExitLevel::Percent(pct));
    }
    Price::from_str(raw)
        .map(ExitLevel::Price)
        .map_err(|_| format!("`{raw}` is not a level: write \"2%\" or a price"))
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
