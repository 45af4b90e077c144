//! Webhook bodies: `RawPayload::parse`, then everything the ingress path does with a parsed payload
//! (`sender_id`, `passphrase`, `signal_id`, `normalize`, `strip_secrets`, `to_json`), plus `parse_size` and
//! `parse_exit_level` on the whole input and on every string value in the object.
//! Only "no panic" is checked: every error is an acceptable answer.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sentinel::payload::{self, Context, RawPayload, SymbolMap};
use sentinel_actors::types::{SignalId, Timestamp};

const CONFIG: &str = include_str!("../../config.toml");

fn symbols() -> &'static SymbolMap {
    static SYMBOLS: OnceLock<SymbolMap> = OnceLock::new();
    SYMBOLS.get_or_init(|| {
        let config = sentinel::Config::parse(CONFIG, std::path::PathBuf::from("."), &|_| None)
            .expect("the repository's config.toml is valid");
        SymbolMap::new(&config.symbols)
    })
}

/// Every string in a JSON value, at any depth.
fn strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = payload::parse_size(text, "USDT");
        let _ = payload::parse_exit_level(text);
    }

    let Ok(mut raw) = RawPayload::parse(data) else {
        return;
    };
    let sender = raw.sender_id();
    let _ = raw.passphrase();
    let _ = payload::signal_id("fuzz", sender.as_ref().map(|(_, id)| id.as_str()), || SignalId::new("fresh").unwrap());

    let ctx = Context {
        source: "fuzz",
        symbols: symbols(),
        signal_id: SignalId::new("fuzz").unwrap(),
        received_at: Timestamp(0),
    };
    let _ = payload::normalize(&raw, &ctx);
    raw.strip_secrets(&[b"fuzz-secret"]);
    let _ = payload::normalize(&raw, &ctx);
    let json = raw.to_json();

    // The same strings through the field parsers directly (values as senders write them).
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&json) {
        let mut found = Vec::new();
        strings(&value, &mut found);
        for s in found {
            let _ = payload::parse_size(s, "USDT");
            let _ = payload::parse_exit_level(s);
        }
    }
});
