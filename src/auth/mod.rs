//! Webhook authentication: each source kind's check, run before anything else looks at a request.
//!
//! Every secret is a list, so a key can be rotated without downtime: a request signed with any listed secret passes.

mod hmac_sig;
mod standard;

use std::time::Duration;

use actix_web::http::header::HeaderMap;
use thiserror::Error;

use crate::payload::RawPayload;
use crate::secret::Secret;

pub use hmac_sig::{parse_signature, sign_hex, HmacScheme};
pub use standard::{decode_secret, parse_signatures, sign_standard, StandardWebhooks};

/// Why a webhook was not authenticated. Answered as a bare 401; the log line and counters say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("a required header is missing")]
    MissingHeader,
    #[error("a signature or timestamp header is malformed")]
    MalformedHeader,
    #[error("no signature matches any configured secret")]
    BadSignature,
    #[error("the signed timestamp is outside the tolerance")]
    StaleTimestamp,
    #[error("the passphrase is missing")]
    MissingPassphrase,
    #[error("the passphrase does not match")]
    BadPassphrase,
    #[error("the URL token does not match")]
    BadToken,
}

impl AuthError {
    /// A stable label for logs and counters.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::MissingHeader => "missing_header",
            AuthError::MalformedHeader => "malformed_header",
            AuthError::BadSignature => "bad_signature",
            AuthError::StaleTimestamp => "stale_timestamp",
            AuthError::MissingPassphrase => "missing_passphrase",
            AuthError::BadPassphrase => "bad_passphrase",
            AuthError::BadToken => "bad_token",
        }
    }
}

/// How a source proves a webhook is its own.
#[derive(Debug, Clone)]
pub enum SourceAuth {
    /// TradingView cannot send headers: a `passphrase` field in the body and/or a token in the URL path.
    TradingView {
        passphrases: Vec<Secret>,
        tokens: Vec<Secret>,
    },
    /// HMAC-SHA256 of the raw body in a header (the seed's `X-Webhook-Signature`, GitHub's `X-Hub-Signature-256`).
    Hmac(HmacScheme),
    /// The Standard Webhooks spec v1.
    StandardWebhooks(StandardWebhooks),
}

/// A request's parts that authentication looks at.
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The `{token}` of `/webhook/{source}/{token}`, if the URL had one.
    pub path_token: Option<&'a str>,
    /// Now, in Unix seconds (passed in so tests can move the clock).
    pub now: i64,
}

/// What authentication learned about a delivery besides "it is genuine".
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The sender's id for this delivery (Standard Webhooks' `webhook-id`), for idempotency.
    pub id: Option<String>,
    /// For HMAC with a signed timestamp: the verified signature. It covers timestamp and body, so the same request
    /// sent again while its timestamp is fresh carries the same signature and is recognised as a replay, even when
    /// the payload carries no id.
    pub signature: Option<[u8; 32]>,
}

impl SourceAuth {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceAuth::TradingView { .. } => "tradingview",
            SourceAuth::Hmac(_) => "hmac",
            SourceAuth::StandardWebhooks(_) => "standard-webhooks",
        }
    }

    /// Checks what can be checked before the body is parsed: URL tokens, signatures, timestamps.
    pub fn verify_request(&self, req: &Request<'_>) -> Result<Delivery, AuthError> {
        match self {
            SourceAuth::TradingView { tokens, .. } => {
                if !tokens.is_empty() {
                    let given = req.path_token.ok_or(AuthError::BadToken)?;
                    if !any_matches(tokens, given.as_bytes()) {
                        return Err(AuthError::BadToken);
                    }
                }
                Ok(Delivery::default())
            }
            SourceAuth::Hmac(scheme) => {
                scheme
                    .verify(req.headers, req.body, req.now)
                    .map(|signature| Delivery {
                        id: None,
                        signature,
                    })
            }
            SourceAuth::StandardWebhooks(scheme) => scheme
                .verify(req.headers, req.body, req.now)
                .map(|id| Delivery {
                    id: Some(id),
                    signature: None,
                }),
        }
    }

    /// How long a signed request can be replayed and still pass: a timestamp may be up to the tolerance behind or
    /// ahead of the clock, so twice the tolerance. `None`: the scheme signs no timestamp.
    pub fn replay_window(&self) -> Option<Duration> {
        let tolerance = match self {
            SourceAuth::Hmac(HmacScheme {
                timestamp_header: Some(_),
                tolerance_secs,
                ..
            }) => *tolerance_secs,
            SourceAuth::StandardWebhooks(scheme) => scheme.tolerance_secs,
            _ => return None,
        };
        Some(Duration::from_secs(2 * tolerance.unsigned_abs()))
    }

    /// Checks what needs the parsed body (a TradingView passphrase), then strips every secret field from it.
    pub fn verify_payload(&self, payload: &mut RawPayload) -> Result<(), AuthError> {
        let result = match self {
            SourceAuth::TradingView { passphrases, .. } if !passphrases.is_empty() => {
                match payload.passphrase() {
                    None => Err(AuthError::MissingPassphrase),
                    Some(given) if any_matches(passphrases, given.as_bytes()) => Ok(()),
                    Some(_) => Err(AuthError::BadPassphrase),
                }
            }
            _ => Ok(()),
        };
        let secrets = self.secrets();
        let texts: Vec<&[u8]> = secrets.iter().map(AsRef::as_ref).collect();
        payload.strip_secrets(&texts);
        result
    }

    /// Every configured secret of this source as a sender could write it: nothing of a field holding one is kept.
    fn secrets(&self) -> Vec<std::borrow::Cow<'_, [u8]>> {
        use std::borrow::Cow;
        match self {
            SourceAuth::TradingView {
                passphrases,
                tokens,
            } => passphrases
                .iter()
                .chain(tokens)
                .map(|s| Cow::Borrowed(s.expose()))
                .collect(),
            SourceAuth::Hmac(scheme) => scheme
                .secrets
                .iter()
                .map(|s| Cow::Borrowed(s.expose()))
                .collect(),
            // Standard Webhooks keys are configured as `whsec_<base64>`: that text is what could be copied.
            SourceAuth::StandardWebhooks(scheme) => scheme
                .keys
                .iter()
                .map(|k| Cow::Owned(standard::encode_secret(k.expose()).into_bytes()))
                .collect(),
        }
    }

    /// Whether the path may carry a token for this source.
    pub fn takes_path_token(&self) -> bool {
        matches!(self, SourceAuth::TradingView { tokens, .. } if !tokens.is_empty())
    }
}

/// Compares against every secret, without stopping at the first match, each in constant time.
fn any_matches(secrets: &[Secret], candidate: &[u8]) -> bool {
    secrets
        .iter()
        .fold(false, |found, secret| secret.matches(candidate) | found)
}

/// A header's value as text: missing and non-text values are told apart.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, AuthError> {
    headers
        .get(name)
        .ok_or(AuthError::MissingHeader)?
        .to_str()
        .map_err(|_| AuthError::MalformedHeader)
}

/// Whether `ts` is within `tolerance` seconds of `now`, in either direction.
fn fresh(ts: i64, now: i64, tolerance: i64) -> bool {
    // abs_diff: a sender's timestamp can be any i64, and `now - ts` would overflow at the extremes.
    now.abs_diff(ts) <= tolerance.unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::fresh;

    #[test]
    fn freshness_holds_at_the_extremes() {
        // Found by fuzzing: these overflowed.
        assert!(!fresh(i64::MIN, 1_700_000_000, 300));
        assert!(!fresh(i64::MAX, -1, 300));
        assert!(fresh(1_700_000_300, 1_700_000_000, 300));
        assert!(!fresh(1_699_999_699, 1_700_000_000, 300));
    }
}
