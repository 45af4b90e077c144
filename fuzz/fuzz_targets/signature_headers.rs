//! Signature headers: `auth::parse_signature` (`sha256=<hex>`), `auth::parse_signatures` (Standard Webhooks
//! `v1,<base64> ...`), and the full `HmacScheme::verify` / `StandardWebhooks::verify` on a `HeaderMap` built from
//! the input. Only "no panic" is checked.
//!
//! Input layout: byte 0 is a flag byte, the rest is split on `\n` into
//! `x-webhook-signature`, `x-webhook-timestamp`, `webhook-id`, `webhook-timestamp`, `webhook-signature`,
//! `now` (decimal Unix seconds; unparsable: 1700000000), then the body (which may hold more `\n`).
//! Flag bits 0..=4: the matching header is present. Bit 5: the HMAC signature header is replaced by a correct one
//! for the fuzzed timestamp and body; bit 6: a correct `v1,` signature is appended to `webhook-signature`; so the
//! accepting paths are reached too. Header values `HeaderValue::from_bytes` refuses are left out.
#![no_main]

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sentinel::auth::{self, HmacScheme, StandardWebhooks};
use sentinel::secret::Secret;

const STANDARD_KEY: &[u8] = b"0123456789abcdef";
const HMAC_SECRET: &str = "k";
const NAMES: [&str; 5] = [
    "x-webhook-signature",
    "x-webhook-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

fn insert(headers: &mut HeaderMap, name: &'static str, value: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

fuzz_target!(|data: &[u8]| {
    // The parsers alone, on the whole input.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = auth::parse_signature(text);
        let _ = auth::parse_signatures(text);
    }

    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(NAMES.len() + 2, |&b| b == b'\n');
    let values: Vec<&[u8]> = (0..NAMES.len()).map(|_| parts.next().unwrap_or(b"")).collect();
    let now = parts
        .next()
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.trim().parse::<i64>().ok())
        .unwrap_or(1_700_000_000);
    let body = parts.next().unwrap_or(b"");

    for value in &values {
        if let Ok(text) = std::str::from_utf8(value) {
            let _ = auth::parse_signature(text);
            let _ = auth::parse_signatures(text);
        }
    }

    let mut headers = HeaderMap::new();
    for (i, (name, value)) in NAMES.iter().zip(&values).enumerate() {
        if flags & (1 << i) != 0 {
            insert(&mut headers, name, value);
        }
    }

    if flags & (1 << 5) != 0 {
        // What a sender holding the secret would send: HMAC over `<timestamp>.<body>` (as verify trims it).
        let ts = std::str::from_utf8(values[1]).unwrap_or("").trim();
        let mut signed = Vec::with_capacity(ts.len() + 1 + body.len());
        signed.extend_from_slice(ts.as_bytes());
        signed.push(b'.');
        signed.extend_from_slice(body);
        let sig = format!("sha256={}", auth::sign_hex(HMAC_SECRET.as_bytes(), &signed));
        insert(&mut headers, NAMES[0], sig.as_bytes());
    }
    if flags & (1 << 6) != 0 {
        let id = std::str::from_utf8(values[2]).unwrap_or("");
        if let Ok(ts) = std::str::from_utf8(values[3]).unwrap_or("").parse::<i64>() {
            let mut sig = values[4].to_vec();
            sig.push(b' ');
            sig.extend_from_slice(auth::sign_standard(STANDARD_KEY, id, ts, body).as_bytes());
            insert(&mut headers, NAMES[4], &sig);
        }
    }

    let standard = StandardWebhooks {
        keys: vec![Secret::new(STANDARD_KEY.to_vec())],
        tolerance_secs: 300,
    };
    let _ = standard.verify(&headers, body, now);

    let hmac = HmacScheme {
        secrets: vec![Secret::new(HMAC_SECRET)],
        signature_header: NAMES[0].into(),
        timestamp_header: Some(NAMES[1].into()),
        tolerance_secs: 300,
    };
    let _ = hmac.verify(&headers, body, now);

    // The same scheme without a timestamp header (GitHub's style).
    let untimed = HmacScheme {
        timestamp_header: None,
        ..hmac
    };
    let _ = untimed.verify(&headers, body, now);
});
