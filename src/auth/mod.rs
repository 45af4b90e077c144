//! Webhook authentication: each source kind's check, run on the raw request before anything else looks at it.

mod hmac_sig;

use actix_web::http::header::HeaderMap;
use thiserror::Error;

use crate::config::SourceAuth;
use crate::payload::RawPayload;

pub use hmac_sig::{sign_hex, SIGNATURE_HEADER};

/// Why a webhook was not authenticated. Answered as a bare 401; the log line and counters say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("signature header missing")]
    MissingSignature,
    #[error("signature header malformed")]
    MalformedSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("passphrase missing")]
    MissingPassphrase,
    #[error("passphrase does not match")]
    BadPassphrase,
}

impl AuthError {
    /// A stable label for logs and counters.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::MissingSignature => "missing_signature",
            AuthError::MalformedSignature => "malformed_signature",
            AuthError::BadSignature => "bad_signature",
            AuthError::MissingPassphrase => "missing_passphrase",
            AuthError::BadPassphrase => "bad_passphrase",
        }
    }
}

/// Checks what can be checked on the raw body, before it is parsed (signatures).
pub fn verify_raw(auth: &SourceAuth, headers: &HeaderMap, body: &[u8]) -> Result<(), AuthError> {
    match auth {
        SourceAuth::Hmac { secret } => hmac_sig::verify(secret, headers, body),
        SourceAuth::TradingView { .. } => Ok(()),
    }
}

/// Checks what needs the parsed body (TradingView's passphrase), then strips every secret field from it.
pub fn verify_payload(auth: &SourceAuth, payload: &mut RawPayload) -> Result<(), AuthError> {
    let result = match auth {
        SourceAuth::TradingView { passphrase } => match payload.passphrase() {
            None => Err(AuthError::MissingPassphrase),
            Some(given) if passphrase.matches(given.as_bytes()) => Ok(()),
            Some(_) => Err(AuthError::BadPassphrase),
        },
        SourceAuth::Hmac { .. } => Ok(()),
    };
    payload.strip_secrets();
    result
}
