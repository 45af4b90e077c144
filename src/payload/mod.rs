//! Webhook payloads: every accepted format (plain signals, TradingView alerts, Sentinel actions, strategy targets,
//! ticks) is parsed here, and only here, into one typed `Signal`.

mod fields;
mod normalize;
mod symbols;

use serde_json::{Map, Value};
use thiserror::Error;

pub use fields::{parse_exit_level, parse_size};
pub use normalize::{normalize, signal_id, Context};
pub use symbols::SymbolMap;

/// A payload as it arrived: a JSON object, not yet checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPayload(Map<String, Value>);

/// A payload that is not JSON, or not an object: answered 400.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Malformed(pub String);

/// A field that is missing or holds a value Sentinel cannot use: answered 422, naming the field.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Fields that hold secrets: taken out before a payload is kept or logged.
const SECRET_FIELDS: [&str; 2] = ["passphrase", "secret"];

impl RawPayload {
    /// Parses a body: JSON text (a trailing newline, as TradingView sends, is fine) holding one object.
    pub fn parse(body: &[u8]) -> Result<RawPayload, Malformed> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(RawPayload(map)),
            Ok(_) => Err(Malformed("the body must be a JSON object".into())),
            Err(e) => Err(Malformed(format!("the body is not valid JSON: {e}"))),
        }
    }

    /// The passphrase field, if there is one as text.
    pub fn passphrase(&self) -> Option<&str> {
        self.0.get("passphrase").and_then(Value::as_str)
    }

    /// The sender's own id for this delivery (`signal_id` or `id`), as text.
    pub fn sender_id(&self) -> Option<String> {
        match self.first(&["signal_id", "id"])?.1 {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Removes every secret-bearing field, so what is left can be stored and logged.
    pub fn strip_secrets(&mut self) {
        for field in SECRET_FIELDS {
            self.0.remove(field);
        }
    }

    /// The payload as JSON text (after `strip_secrets`, safe to store).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// The first of `keys` that is present, with the name it was found under.
    fn first(&self, keys: &[&'static str]) -> Option<(&'static str, &Value)> {
        keys.iter().find_map(|k| self.get(k).map(|v| (*k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(RawPayload::parse(b"{\"a\":1}\n").is_ok());
        assert!(RawPayload::parse(b"[1,2]").is_err());
        assert!(RawPayload::parse(b"{\"a\":").is_err());
        assert!(RawPayload::parse(b"").is_err());
    }

    #[test]
    fn secrets_are_stripped() {
        let mut raw =
            RawPayload::parse(br#"{"passphrase":"p","secret":"s","symbol":"BTCUSDT"}"#).unwrap();
        assert_eq!(raw.passphrase(), Some("p"));
        raw.strip_secrets();
        assert_eq!(raw.to_json(), r#"{"symbol":"BTCUSDT"}"#);
    }
}
