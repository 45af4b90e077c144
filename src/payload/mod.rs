//! Webhook payloads: every accepted format (plain signals, TradingView alerts, Sentinel actions, strategy targets,
//! ticks) is parsed here, and only here, into one typed `Signal`.

mod bots;
mod fields;
mod normalize;
mod orders;
mod symbols;

use serde_json::{Map, Value};
use thiserror::Error;

pub use bots::{parse as parse_body, translate};
pub use fields::{parse_exit_level, parse_size};
pub use normalize::{normalize, signal_id, Context};
pub use orders::check_levels;
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

/// Names of fields that hold secrets, compared without regard to case: taken out, at any depth, before a payload
/// is kept or logged.
const SECRET_FIELDS: [&str; 7] = [
    "passphrase",
    "secret",
    "password",
    "token",
    "api_key",
    "api_secret",
    "apikey",
];

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

    /// The sender's own id for this delivery (`signal_id` or `id`), as text, with the field it came from.
    pub fn sender_id(&self) -> Option<(&'static str, String)> {
        let (field, value) = self.first(&["signal_id", "id"])?;
        match value {
            Value::String(s) if !s.trim().is_empty() => Some((field, s.trim().to_string())),
            Value::Number(n) => Some((field, n.to_string())),
            _ => None,
        }
    }

    /// Removes every secret-bearing field at any depth, so what is left can be stored and logged: fields named
    /// like a secret, and any field whose name or text holds one of `secrets` (the source's configured secrets,
    /// wherever a sender copied them).
    pub fn strip_secrets(&mut self, secrets: &[&[u8]]) {
        strip_object(&mut self.0, secrets);
    }

    /// Whether it has `key`, not null: an `event` makes the body an event for the rules, not a signal.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The payload's fields (after `strip_secrets`, safe to store): an event's, for rules.
    pub fn into_fields(self) -> Map<String, Value> {
        self.0
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

fn is_secret_name(key: &str) -> bool {
    SECRET_FIELDS.iter().any(|f| key.eq_ignore_ascii_case(f))
}

fn holds_secret(text: &str, secrets: &[&[u8]]) -> bool {
    secrets.iter().any(|secret| {
        !secret.is_empty()
            && text
                .as_bytes()
                .windows(secret.len())
                .any(|window| window == *secret)
    })
}

fn strip_object(map: &mut Map<String, Value>, secrets: &[&[u8]]) {
    map.retain(|key, value| {
        !is_secret_name(key) && !holds_secret(key, secrets) && !strip_value(value, secrets)
    });
}

/// Strips inside `value`; `true` if `value` itself is secret text and must go.
fn strip_value(value: &mut Value, secrets: &[&[u8]]) -> bool {
    match value {
        Value::String(text) => holds_secret(text, secrets),
        Value::Object(map) => {
            strip_object(map, secrets);
            false
        }
        Value::Array(items) => {
            items.retain_mut(|item| !strip_value(item, secrets));
            false
        }
        _ => false,
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
        raw.strip_secrets(&[]);
        assert_eq!(raw.to_json(), r#"{"symbol":"BTCUSDT"}"#);
    }

    #[test]
    fn secrets_are_stripped_at_any_depth_and_in_any_case() {
        let mut raw = RawPayload::parse(
            br#"{"Passphrase":"p","meta":{"PASSWORD":"x","deep":[{"Secret":"s"},"keep"]},
                "note":"my key is hunter2-long!","hunter2-long":1,"list":["a","hunter2-long"],
                "symbol":"BTCUSDT","comment":"fine"}"#,
        )
        .unwrap();
        raw.strip_secrets(&[b"hunter2-long", b""]);
        assert_eq!(
            raw.to_json(),
            r#"{"comment":"fine","list":["a"],"meta":{"deep":[{},"keep"]},"symbol":"BTCUSDT"}"#
        );
    }
}
