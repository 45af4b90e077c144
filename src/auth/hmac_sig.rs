//! HMAC-SHA256 over the raw body in a header: `X-Webhook-Signature: sha256=<hex>` by default, GitHub's
//! `X-Hub-Signature-256` by configuration. With a timestamp header, the signed content is `<timestamp>.<body>`
//! and a timestamp outside the tolerance is refused, so a captured request cannot be replayed later.

use actix_web::http::header::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{fresh, header, AuthError};
use crate::secret::Secret;

#[cfg(test)]
const DEFAULT_SIGNATURE_HEADER: &str = "x-webhook-signature";
const PREFIX: &str = "sha256=";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// The lower-case hex HMAC-SHA256 of `body` under `secret`.
pub fn sign_hex(secret: &[u8], body: &[u8]) -> String {
    hex::encode(digest(secret, None, body))
}

fn digest(secret: &[u8], timestamp: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut m = mac(secret);
    if let Some(ts) = timestamp {
        m.update(ts.as_bytes());
        m.update(b".");
    }
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// One `hmac` source's settings.
#[derive(Debug, Clone)]
pub struct HmacScheme {
    pub secrets: Vec<Secret>,
    /// Lower-case header name carrying `sha256=<hex>`.
    pub signature_header: String,
    /// Lower-case header name carrying Unix seconds, signed with the body; `None`: no timestamp.
    pub timestamp_header: Option<String>,
    pub tolerance_secs: i64,
}

impl HmacScheme {
    /// The headers that sign `body` with the first secret at time `now` (for `sentinel sign` and tests).
    pub fn sign(&self, body: &[u8], now: i64) -> Vec<(String, String)> {
        let ts = now.to_string();
        let ts = self.timestamp_header.as_ref().map(|_| ts.as_str());
        let sig = hex::encode(digest(self.secrets[0].expose(), ts, body));
        let mut headers = vec![(self.signature_header.clone(), format!("{PREFIX}{sig}"))];
        if let (Some(name), Some(ts)) = (&self.timestamp_header, ts) {
            headers.push((name.clone(), ts.to_string()));
        }
        headers
    }

    /// Verifies a request. With a signed timestamp, returns the signature, which identifies the request for as long
    /// as its timestamp is fresh (a replay carries the same one).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Option<[u8; 32]>, AuthError> {
        let given = header(headers, &self.signature_header)?;
        let given = parse_signature(given)?;
        let timestamp = match &self.timestamp_header {
            None => None,
            Some(name) => {
                let raw = header(headers, name)?;
                let ts: i64 = raw.trim().parse().map_err(|_| AuthError::MalformedHeader)?;
                if !fresh(ts, now, self.tolerance_secs) {
                    return Err(AuthError::StaleTimestamp);
                }
                Some(raw.trim())
            }
        };
        let mut ok = false;
        for secret in &self.secrets {
            let mut m = mac(secret.expose());
            if let Some(ts) = timestamp {
                m.update(ts.as_bytes());
                m.update(b".");
            }
            m.update(body);
            // verify_slice compares in constant time; every secret is tried.
            ok |= m.verify_slice(&given).is_ok();
        }
        if !ok {
            return Err(AuthError::BadSignature);
        }
        Ok(timestamp.map(|_| given))
    }
}

/// `sha256=<64 hex digits>` -> the 32 digest bytes. Upper- and lower-case hex give the same bytes, so a replay
/// cannot pass as new by changing the case of its signature.
pub fn parse_signature(value: &str) -> Result<[u8; 32], AuthError> {
    let hex_sig = value
        .trim()
        .strip_prefix(PREFIX)
        .ok_or(AuthError::MalformedHeader)?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_sig, &mut digest).map_err(|_| AuthError::MalformedHeader)?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    fn scheme(header: &str, timestamp: Option<&str>) -> HmacScheme {
        HmacScheme {
            secrets: vec![Secret::new("It's a Secret to Everybody")],
            signature_header: header.into(),
            timestamp_header: timestamp.map(Into::into),
            tolerance_secs: 300,
        }
    }

    fn headers(pairs: &[(String, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn rfc_4231_case_2() {
        assert_eq!(
            sign_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn githubs_published_example() {
        // GitHub's "Validating webhook deliveries" test values.
        let github = scheme("x-hub-signature-256", None);
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[("x-hub-signature-256".into(), sig.into())]);
        assert_eq!(github.verify(&h, b"Hello, World!", 0), Ok(None));
        assert_eq!(github.sign(b"Hello, World!", 0)[0].1, sig);
        assert_eq!(
            github.verify(&h, b"Hello, World?", 0),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn refusals() {
        let s = scheme(DEFAULT_SIGNATURE_HEADER, None);
        let body = b"{}";
        let good = s.sign(body, 0);
        let flipped = {
            let mut v = good[0].1.clone().into_bytes();
            let last = v.len() - 1;
            v[last] = if v[last] == b'0' { b'1' } else { b'0' };
            String::from_utf8(v).unwrap()
        };
        let cases = [
            (vec![], AuthError::MissingHeader),
            (vec![(good[0].0.clone(), flipped)], AuthError::BadSignature),
            (
                vec![(
                    good[0].0.clone(),
                    good[0].1[..good[0].1.len() - 2].to_string(),
                )],
                AuthError::MalformedHeader,
            ),
            (
                vec![(good[0].0.clone(), "sha256=".into())],
                AuthError::MalformedHeader,
            ),
            (
                vec![(good[0].0.clone(), good[0].1.replace("sha256=", "sha1="))],
                AuthError::MalformedHeader,
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(
                s.verify(&headers(&pairs), body, 0),
                Err(expected),
                "{pairs:?}"
            );
        }
        assert_eq!(s.verify(&headers(&good), body, 0), Ok(None));
    }

    #[test]
    fn signed_timestamps_expire_both_ways() {
        let s = scheme(DEFAULT_SIGNATURE_HEADER, Some("x-webhook-timestamp"));
        let now = 1_700_000_000;
        let signed = s.sign(b"{}", now);
        let replay_key = Some(parse_signature(&signed[0].1).unwrap());
        assert_eq!(
            s.verify(&headers(&signed), b"{}", now + 300),
            Ok(replay_key)
        );
        assert_eq!(
            s.verify(&headers(&signed), b"{}", now - 300),
            Ok(replay_key)
        );
        // The same request with its signature in upper case is the same replay key.
        let upper = vec![
            (
                signed[0].0.clone(),
                signed[0]
                    .1
                    .to_ascii_uppercase()
                    .replace("SHA256=", "sha256="),
            ),
            signed[1].clone(),
        ];
        assert_eq!(s.verify(&headers(&upper), b"{}", now), Ok(replay_key));
        assert_eq!(
            s.verify(&headers(&signed), b"{}", now + 301),
            Err(AuthError::StaleTimestamp)
        );
        assert_eq!(
            s.verify(&headers(&signed), b"{}", now - 301),
            Err(AuthError::StaleTimestamp)
        );
        // Moving the timestamp forward breaks the signature.
        let mut moved = signed.clone();
        moved[1].1 = (now + 10).to_string();
        assert_eq!(
            s.verify(&headers(&moved), b"{}", now),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            s.verify(&headers(&signed[..1]), b"{}", now),
            Err(AuthError::MissingHeader)
        );
    }

    #[test]
    fn any_configured_secret_passes_for_rotation() {
        let old = HmacScheme {
            secrets: vec![Secret::new("old")],
            ..scheme(DEFAULT_SIGNATURE_HEADER, None)
        };
        let both = HmacScheme {
            secrets: vec![Secret::new("new"), Secret::new("old")],
            ..old.clone()
        };
        assert_eq!(both.verify(&headers(&old.sign(b"x", 0)), b"x", 0), Ok(None));
    }

    proptest! {
        #[test]
        fn sign_then_verify_and_any_flipped_bit_fails(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            ts in 1_600_000_000i64..1_900_000_000,
            bit in 0usize..2048,
        ) {
            let s = scheme(DEFAULT_SIGNATURE_HEADER, Some("x-webhook-timestamp"));
            let signed = s.sign(&body, ts);
            prop_assert!(s.verify(&headers(&signed), &body, ts).is_ok());
            if !body.is_empty() {
                let mut b = body.clone();
                b[(bit / 8) % body.len()] ^= 1 << (bit % 8);
                prop_assert_eq!(s.verify(&headers(&signed), &b, ts), Err(AuthError::BadSignature));
            }
            // A flipped bit in the signature's digest (not the prefix).
            let mut digest = parse_signature(&signed[0].1).unwrap();
            digest[(bit / 8) % 32] ^= 1 << (bit % 8);
            let sig = vec![(signed[0].0.clone(), format!("sha256={}", hex::encode(digest))), signed[1].clone()];
            prop_assert_eq!(s.verify(&headers(&sig), &body, ts), Err(AuthError::BadSignature));
            // A changed timestamp, still fresh.
            let moved = vec![signed[0].clone(), (signed[1].0.clone(), (ts ^ (1 << (bit % 8))).to_string())];
            prop_assert_eq!(s.verify(&headers(&moved), &body, ts), Err(AuthError::BadSignature));
        }
    }
}
