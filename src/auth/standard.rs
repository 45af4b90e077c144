//! The Standard Webhooks spec v1: headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (space-separated `v1,<base64 HMAC-SHA256>` entries) over `<id>.<timestamp>.<body>`, with `whsec_<base64>` secrets.

use actix_web::http::header::HeaderMap;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{fresh, header, AuthError};
use crate::secret::Secret;

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";
const SECRET_PREFIX: &str = "whsec_";
const VERSION: &str = "v1";

/// One `standard-webhooks` source's settings. Secrets hold the decoded key bytes.
#[derive(Debug, Clone)]
pub struct StandardWebhooks {
    pub keys: Vec<Secret>,
    pub tolerance_secs: i64,
}

/// Decodes a `whsec_<base64>` secret (the prefix is optional) into key bytes.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .trim()
        .strip_prefix(SECRET_PREFIX)
        .unwrap_or(secret.trim());
    BASE64
        .decode(b64)
        .map_err(|_| {
            "is not a Standard Webhooks secret: expected whsec_ followed by base64".to_string()
        })
        .and_then(|key| {
            if key.is_empty() {
                Err("is an empty Standard Webhooks secret".to_string())
            } else {
                Ok(key)
            }
        })
}

/// The base64 text of a key, as it stands after `whsec_` in the configuration.
pub(super) fn encode_secret(key: &[u8]) -> String {
    BASE64.encode(key)
}

fn signature(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The `webhook-signature` value for a delivery: `v1,<base64>`.
pub fn sign_standard(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "{VERSION},{}",
        BASE64.encode(signature(key, id, &timestamp.to_string(), body))
    )
}

/// The `v1` signatures of a `webhook-signature` header, decoded; entries of other versions are skipped.
pub fn parse_signatures(value: &str) -> Vec<Vec<u8>> {
    value
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == VERSION)
        .filter_map(|(_, sig)| BASE64.decode(sig).ok())
        .collect()
}

impl StandardWebhooks {
    /// Verifies a delivery and returns its `webhook-id`.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<String, AuthError> {
        let id = header(headers, ID)?;
        let raw_ts = header(headers, TIMESTAMP)?;
        let signatures = header(headers, SIGNATURE)?;
        // Its length is checked once it is known to be genuine (a 422 names it), like every delivery id.
        if id.is_empty() {
            return Err(AuthError::MalformedHeader);
        }
        let ts: i64 = raw_ts.parse().map_err(|_| AuthError::MalformedHeader)?;
        if !fresh(ts, now, self.tolerance_secs) {
            return Err(AuthError::StaleTimestamp);
        }
        let given = parse_signatures(signatures);
        let mut ok = false;
        for key in &self.keys {
            let expected = signature(key.expose(), id, raw_ts, body);
            for candidate in &given {
                ok |= bool::from(expected.as_slice().ct_eq(candidate));
            }
        }
        ok.then(|| id.to_string()).ok_or(AuthError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    // The test vector of the spec repository's reference libraries.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1649367553;
    const PAYLOAD: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const EXPECTED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    const DECOYS: [&str; 3] = [
        "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ=",
        "v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=",
        "v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=",
    ];

    fn scheme() -> StandardWebhooks {
        StandardWebhooks {
            keys: vec![Secret::new(decode_secret(SECRET).unwrap())],
            tolerance_secs: 300,
        }
    }

    fn headers(id: Option<&str>, ts: Option<&str>, sig: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in [(ID, id), (TIMESTAMP, ts), (SIGNATURE, sig)] {
            if let Some(v) = value {
                h.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
        }
        h
    }

    /// id, timestamp and signature headers, the clock, and the expected result.
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        i64,
        Result<(), AuthError>,
    );

    fn verify(
        id: Option<&str>,
        ts: Option<&str>,
        sig: Option<&str>,
        now: i64,
    ) -> Result<String, AuthError> {
        scheme().verify(&headers(id, ts, sig), PAYLOAD, now)
    }

    #[test]
    fn the_specs_vector_signs_and_verifies() {
        let key = decode_secret(SECRET).unwrap();
        assert_eq!(sign_standard(&key, MSG_ID, TS, PAYLOAD), EXPECTED);
        let ts = TS.to_string();
        assert_eq!(
            verify(Some(MSG_ID), Some(&ts), Some(EXPECTED), TS),
            Ok(MSG_ID.to_string())
        );
    }

    #[test]
    fn negative_cases_of_the_reference_libraries() {
        let ts = TS.to_string();
        let flipped = EXPECTED.replace("tZ1I4", "tZ1I5");
        let truncated = &EXPECTED[..EXPECTED.len() - 4];
        let with_decoys = format!("{} {} {EXPECTED} {}", DECOYS[0], DECOYS[1], DECOYS[2]);
        let only_decoys = DECOYS.join(" ");
        let wrong_version = EXPECTED.replace("v1,", "v2,");
        let cases: [Case; 13] = [
            (
                Some(MSG_ID),
                Some(&ts),
                Some(&flipped),
                TS,
                Err(AuthError::BadSignature),
            ),
            (
                Some(MSG_ID),
                Some(&ts),
                Some(truncated),
                TS,
                Err(AuthError::BadSignature),
            ),
            (
                Some(MSG_ID),
                Some(&ts),
                Some("v1,"),
                TS,
                Err(AuthError::BadSignature),
            ),
            (
                Some(MSG_ID),
                Some(&ts),
                Some(""),
                TS,
                Err(AuthError::BadSignature),
            ),
            (
                Some(MSG_ID),
                Some(&ts),
                Some(&wrong_version),
                TS,
                Err(AuthError::BadSignature),
            ),
            (
                None,
                Some(&ts),
                Some(EXPECTED),
                TS,
                Err(AuthError::MissingHeader),
            ),
            (
                Some(MSG_ID),
                None,
                Some(EXPECTED),
                TS,
                Err(AuthError::MissingHeader),
            ),
            (
                Some(MSG_ID),
                Some(&ts),
                None,
                TS,
                Err(AuthError::MissingHeader),
            ),
            (
                Some(MSG_ID),
                Some(&ts),
                Some(EXPECTED),
                TS + 301,
                Err(AuthError::StaleTimestamp),
            ),
            (
                Some(MSG_ID),
                Some(&ts),
                Some(EXPECTED),
                TS - 301,
                Err(AuthError::StaleTimestamp),
            ),
            (Some(MSG_ID), Some(&ts), Some(&with_decoys), TS, Ok(())),
            (
                Some(MSG_ID),
                Some(&ts),
                Some(&only_decoys),
                TS,
                Err(AuthError::BadSignature),
            ),
            (
                Some("msg_other"),
                Some(&ts),
                Some(EXPECTED),
                TS,
                Err(AuthError::BadSignature),
            ),
        ];
        for (id, t, sig, now, expected) in cases {
            assert_eq!(
                verify(id, t, sig, now).map(|_| ()),
                expected,
                "{id:?} {t:?} {sig:?} {now}"
            );
        }
        assert_eq!(
            verify(Some(MSG_ID), Some(&ts), Some(EXPECTED), TS + 300).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            verify(Some(MSG_ID), Some("16493675x3"), Some(EXPECTED), TS),
            Err(AuthError::MalformedHeader)
        );
    }

    #[test]
    fn secrets_must_be_base64() {
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret("whsec_").is_err());
        assert_eq!(
            decode_secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            decode_secret(SECRET)
        );
    }

    proptest! {
        #[test]
        fn sign_then_verify_and_any_flipped_bit_fails(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            id in "[a-zA-Z0-9_]{1,40}",
            ts in 1_600_000_000i64..1_900_000_000,
            bit in 0usize..2048,
        ) {
            let key = decode_secret(SECRET).unwrap();
            let s = scheme();
            let sig = sign_standard(&key, &id, ts, &body);
            let t = ts.to_string();
            prop_assert_eq!(s.verify(&headers(Some(&id), Some(&t), Some(&sig)), &body, ts), Ok(id.clone()));
            if !body.is_empty() {
                let mut b = body.clone();
                b[(bit / 8) % body.len()] ^= 1 << (bit % 8);
                prop_assert_eq!(s.verify(&headers(Some(&id), Some(&t), Some(&sig)), &b, ts), Err(AuthError::BadSignature));
            }
            let mut id_bytes = id.clone().into_bytes();
            let i = (bit / 8) % id_bytes.len();
            id_bytes[i] ^= 1 << (bit % 6); // stays printable ASCII
            if let Ok(other) = String::from_utf8(id_bytes) {
                if other != id && HeaderValue::from_str(&other).is_ok() {
                    prop_assert_eq!(s.verify(&headers(Some(&other), Some(&t), Some(&sig)), &body, ts), Err(AuthError::BadSignature));
                }
            }
            let other_ts = (ts ^ (1 << (bit % 8))).to_string();
            prop_assert_eq!(s.verify(&headers(Some(&id), Some(&other_ts), Some(&sig)), &body, ts), Err(AuthError::BadSignature));
            let mut raw = BASE64.decode(&sig[3..]).unwrap();
            raw[(bit / 8) % 32] ^= 1 << (bit % 8);
            let flipped = format!("v1,{}", BASE64.encode(raw));
            prop_assert_eq!(s.verify(&headers(Some(&id), Some(&t), Some(&flipped)), &body, ts), Err(AuthError::BadSignature));
        }
    }
}
