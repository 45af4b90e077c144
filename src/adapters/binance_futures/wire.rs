//! Reading Binance's answers: numbers come as strings ("50000.10") or bare numbers, ids as numbers or strings, and
//! fields are added over time; these readers take what is there and name what is missing.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

/// A decimal field, from a string or a number (read from its text, never through a float).
pub fn dec(value: &Value, key: &str) -> Option<Decimal> {
    match value.get(key)? {
        Value::String(text) => Decimal::from_str(text).ok(),
        Value::Number(number) => Decimal::from_str(&number.to_string())
            .or_else(|_| Decimal::from_scientific(&number.to_string()))
            .ok(),
        _ => None,
    }
}

pub fn int(value: &Value, key: &str) -> Option<i64> {
    match value.get(key)? {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

pub fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key)?.as_str()
}

pub fn flag(value: &Value, key: &str) -> bool {
    match value.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A decimal as Binance takes it in a parameter: plain digits, no exponent, no trailing zeros.
pub fn param(value: Decimal) -> String {
    value.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_numbers_from_text_or_json_numbers_exactly() {
        let v = json!({"a": "50000.10", "b": 0.1, "c": "x", "i": "77", "j": 78, "f": "true"});
        assert_eq!(dec(&v, "a"), Some(Decimal::from_str("50000.10").unwrap()));
        assert_eq!(dec(&v, "b"), Some(Decimal::from_str("0.1").unwrap()));
        assert_eq!(dec(&v, "c"), None);
        assert_eq!(int(&v, "i"), Some(77));
        assert_eq!(int(&v, "j"), Some(78));
        assert!(flag(&v, "f"));
        assert_eq!(param(Decimal::from_str("0.0100").unwrap()), "0.01");
    }
}
