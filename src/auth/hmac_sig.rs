//! `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the raw body>`.

use actix_web::http::header::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AuthError;
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "x-webhook-signature";
const PREFIX: &str = "sha256=";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// The lower-case hex HMAC-SHA256 of `body` under `secret`.
pub fn sign_hex(secret: &[u8], body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

pub(super) fn verify(secret: &Secret, headers: &HeaderMap, body: &[u8]) -> Result<(), AuthError> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .ok_or(AuthError::MissingSignature)?
        .to_str()
        .map_err(|_| AuthError::MalformedSignature)?;
    let hex_sig = header
        .trim()
        .strip_prefix(PREFIX)
        .ok_or(AuthError::MalformedSignature)?;
    let given = hex::decode(hex_sig).map_err(|_| AuthError::MalformedSignature)?;
    let mut m = mac(secret.expose());
    m.update(body);
    // verify_slice compares in constant time.
    m.verify_slice(&given).map_err(|_| AuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static(SIGNATURE_HEADER),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_and_refuses() {
        let secret = Secret::new("s3cret");
        let body = br#"{"symbol":"BTCUSDT"}"#;
        let good = format!("sha256={}", sign_hex(b"s3cret", body));
        assert_eq!(verify(&secret, &headers(&good), body), Ok(()));
        assert_eq!(
            verify(&secret, &headers(&good), b"{}"),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify(&secret, &HeaderMap::new(), body),
            Err(AuthError::MissingSignature)
        );
        assert_eq!(
            verify(&secret, &headers("md5=abc"), body),
            Err(AuthError::MalformedSignature)
        );
        assert_eq!(
            verify(&secret, &headers("sha256=zz"), body),
            Err(AuthError::MalformedSignature)
        );
    }
}
