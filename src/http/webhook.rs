//! `POST /webhook/{source}`: authenticate, parse, normalise, hand to the router, answer 202.
//!
//! The order of the steps is the security design: nothing about a payload's content is revealed (400/422 detail) to
//! a sender that has not authenticated, except for sources whose secret sits inside the JSON body (TradingView),
//! which must be parsed to be checked.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{web, HttpRequest, HttpResponse};
use sentinel_actors::types::{SignalId, Timestamp};
use serde_json::json;
use tracing::{info, warn};

use super::error::ApiError;
use super::AppState;
use crate::auth;
use crate::payload::{normalize, Context, RawPayload};

pub async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let source_name = path.into_inner();
    let source = state.config.source(&source_name).ok_or_else(|| {
        ApiError::not_found(format!("no source named `{source_name}` is configured"))
    })?;

    // 1. Signatures over the raw body.
    auth::verify_raw(&source.auth, req.headers(), &body).map_err(|e| refuse(&source_name, e))?;
    // 2. Parse; 3. secrets inside the body, which are then stripped.
    let mut raw = RawPayload::parse(&body).map_err(|e| ApiError::malformed(e.0))?;
    auth::verify_payload(&source.auth, &mut raw).map_err(|e| refuse(&source_name, e))?;
    // 4. Replay protection and abuse limits go here (next: idempotency, timestamps, rate limits).
    // 5. Normalise into a Signal.
    let received_at = Timestamp::now();
    let ctx = Context {
        source: &source_name,
        symbols: &state.symbols,
        fallback_id: next_signal_id(received_at),
        received_at,
    };
    let signal =
        normalize(&raw, &ctx).map_err(|e| ApiError::invalid_field(e.field, e.to_string()))?;
    let signal_id = signal.id.clone();
    info!(source = %source_name, symbol = %signal.symbol, %signal_id, action = %signal.intent.action(), "signal accepted");

    state.activity.accepted(&signal);
    state
        .router
        .dispatch(signal)
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(HttpResponse::Accepted().json(json!({ "status": "accepted", "signal_id": signal_id })))
}

fn refuse(source: &str, error: auth::AuthError) -> ApiError {
    warn!(%source, reason = error.reason(), "webhook refused: {error}");
    ApiError::unauthorized()
}

/// A fresh id for a signal whose payload carries none: time-ordered and unique within the process and across
/// restarts (milliseconds since the epoch + a per-process counter + the process id).
fn next_signal_id(at: Timestamp) -> SignalId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = format!("sig-{:x}-{:x}-{n:x}", at.0, std::process::id());
    SignalId::new(&id).expect("generated ids are valid")
}
