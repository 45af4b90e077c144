//! `POST /webhook/{source}[/{token}]`: the ingress pipeline, cheapest and least revealing checks first.
//!
//! 1. the client's refusal budget and request rate (429; an IPv4 address or an IPv6 /64) -> source (404) ->
//!    client address allowlist (403) -> client certificate (403) -> failed-authentication throttle for clients
//!    not vouched for (429) -> content type (415). Until it authenticates, a request that fails in any way counts
//!    against its client's refusal budget (`protect::failures`).
//! 2. body, bounded in size (413) and time (408)
//! 3. URL token, signature and signed timestamp on the raw body (401)
//! 4. JSON (400) -> passphrase in the body, then every secret field stripped (401)
//! 5. normalise into a `Signal` (422), or for a command source into an operator command (422) -> idempotency (200
//!    `duplicate`)
//! 6. per-source rate limit (429), counted only for new authenticated signals, so neither strangers nor a
//!    sender's retries use it up -> router -> 202; a command is carried out as the API's would be (200, 202)
//!
//! A sender learns nothing about a payload's content (400/422 detail) before it has authenticated, except for
//! TradingView passphrase sources, whose secret sits inside the JSON and must be parsed to be checked.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::http::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, ORIGIN};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use sentinel_actors::event::{Delivery, Event, ObservedDelivery};
use sentinel_actors::latency::Span;
use sentinel_actors::log::{EventLog, LogError};
use sentinel_actors::messages::{Admit, AdmitError};
use sentinel_actors::types::{SignalId, Timestamp};
use serde_json::json;
use tracing::{debug, info, warn};

use super::commands::{carries_command, run_command, CommandRequest};
use super::error::ApiError;
use super::AppState;
use crate::auth::{AuthError, Delivery as AuthDelivery, Request};
use crate::config::SourceConfig;
use crate::payload::{
    check_levels, normalize, parse_body, signal_id, translate, Context, RawPayload,
};
use crate::protect::dedupe::{Claim, DeliveryKey, Refused, MAX_DELIVERY_ID_BYTES};
use crate::protect::failures::Throttled;
use crate::protect::limits::retry_after_secs;
use crate::protect::network::{client_ip, ClientKey};
use crate::tls::ClientCert;

pub async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Every answer of a configured source is counted for `/metrics`, whichever step gave it.
    let metrics = state.metrics.clone();
    let counted = metrics.webhooks_of(req.match_info().get("source").unwrap_or_default());
    let answer = answer(req, payload, state).await;
    if let Some(counted) = counted {
        counted.answered(match &answer {
            Ok(response) => response.status(),
            Err(e) => e.status_code(),
        });
    }
    answer
}

async fn answer(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let arrived = Instant::now();
    // At SIGTERM: nothing new is taken while the signals in flight finish; the sender retries after the restart.
    let Some(_inside) = state.draining.enter() else {
        return Err(ApiError::shutting_down());
    };
    // The configuration in force for this request, whole: a reload in the middle does not mix two.
    let config = state.config();
    let server = &config.server;
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let client = client_ip(peer, req.headers(), &server.trusted_proxies);
    let source_name = req.match_info().get("source").unwrap_or_default();
    let path_token = req.match_info().get("token");
    let source = config
        .source(source_name)
        .filter(|s| path_token.is_none() || s.auth.takes_path_token());
    let too_many = |source: &str, throttled: Throttled| {
        refused(&state, source, client, throttled.throttle.reason());
        ApiError::too_many_requests(retry_after_secs(throttled.wait))
    };
    // Before anything else is looked at, so that a flood of refusals of any kind ends in cheap 429s.
    let attempt = state
        .limits
        .admit(ClientKey::of(client))
        .map_err(|t| match source {
            Some(source) => too_many(&source.name, t),
            // Counted under configured sources only: names a client makes up must not grow the counters.
            None => ApiError::too_many_requests(retry_after_secs(t.wait)),
        })?;
    let source = source.ok_or_else(|| {
        ApiError::not_found(format!("no source named `{source_name}` is configured"))
    })?;
    if !source.allow_ips.allows(client) {
        refused(&state, &source.name, client, "ip_not_allowed");
        return Err(ApiError::forbidden());
    }
    if let Some(expected) = &source.client_cert_subject {
        let presented = req
            .conn_data::<ClientCert>()
            .map(|c| c.common_name.as_str());
        if presented != Some(expected.as_str()) {
            if state.refusals.record(&source.name, "client_cert") {
                warn!(source = %source.name, %client, reason = "client_cert", presented = ?presented, "webhook refused");
            }
            return Err(ApiError::forbidden());
        }
    }
    // A full backlog sheds a known sender's webhook before its body is read, verified and parsed: that work, for
    // webhooks the ingress would refuse anyway, is what starved the signals already accepted (measured with one
    // symbol under overload). Strangers go on to authentication; the ingress sheds them after it.
    if attempt.vouched() && state.admission.in_use() >= state.admission.limit() {
        attempt.shed();
        state.refusals.record(&source.name, "overloaded");
        return Err(ApiError::overloaded(format!(
            "{} signals are waiting to be processed; retry shortly",
            state.admission.in_use()
        )));
    }
    // TradingView, exchanges and scripts send no `Origin`; a browser always does on a cross-site POST, and a
    // `text/plain` one needs no CORS preflight. So a web page cannot make its visitors' browsers post webhooks.
    if !origin_allowed(req.headers(), &source.allow_origins) {
        refused(&state, &source.name, client, "origin_not_allowed");
        return Err(ApiError::forbidden());
    }
    // Rotating addresses defeats every per-client budget, so failed authentications also spend a shared one; while
    // it is spent, clients with no reason to be trusted get 429 before their body is even read. A non-empty
    // allowlist let this client in above, which is reason enough.
    attempt
        .may_verify(!source.allow_ips.is_empty())
        .map_err(|t| too_many(&source.name, t))?;
    if !acceptable_content_type(req.headers()) {
        return Err(ApiError::unsupported_media_type());
    }
    let body = read_body(
        payload,
        req.headers(),
        server.body_limit,
        server.body_timeout,
    )
    .await?;

    let now = Timestamp::now();
    let request = Request {
        headers: req.headers(),
        body: &body,
        path_token,
        now: now.0.div_euclid(1000),
    };
    let refuse = |error: AuthError| {
        attempt.auth_failed();
        if state.refusals.record(&source.name, error.reason()) {
            warn!(source = %source.name, %client, reason = error.reason(), "webhook refused: {error}");
        }
        ApiError::unauthorized()
    };
    let delivery = source.auth.verify_request(&request).map_err(refuse)?;
    let mut raw = parse_body(&body).map_err(|e| ApiError::malformed(e.0))?;
    source.auth.verify_payload(&mut raw).map_err(refuse)?;
    attempt.authenticated();
    // A command source takes operator commands and nothing else, and no other source takes them.
    if source.commands {
        return take_command(&state, source, &raw, delivery, now).await;
    }
    if carries_command(&body) {
        return Err(ApiError::invalid_field(
            "command",
            "this source does not take operator commands",
        ));
    }
    // An event (a funding rate, a risk model's reading, a news score) for the rules, not a signal.
    // Read from the payload already parsed: no second parse on a signal's path.
    if raw.has("event") {
        return take_event(&state, source, raw, delivery, now).await;
    }
    // Another bot's alert (3Commas, OctoBot) in Sentinel's terms, or refused naming what cannot be mapped.
    translate(&mut raw, now).map_err(|e| ApiError::invalid_field(e.field, e.to_string()))?;

    let sender_id = sender_id(delivery.id, &raw)?;
    let ctx = Context {
        source: &source.name,
        symbols: &state.symbols,
        signal_id: signal_id(
            &source.name,
            sender_id.as_ref().map(|(_, id)| id.as_str()),
            || fresh_signal_id(now),
        ),
        received_at: now,
    };
    let signal =
        normalize(&raw, &ctx).map_err(|e| ApiError::invalid_field(e.field, e.to_string()))?;
    // Levels on the wrong side of the entry price: the payload's price, else the symbol's last mark.
    let levels = {
        let view = state.view.borrow();
        let portfolio = &view.portfolio;
        check_levels(
            &signal,
            portfolio.last_price(&signal.symbol),
            portfolio.position_quantity(&signal.symbol),
        )
    };
    levels.map_err(|e| ApiError::invalid_field(e.field, e.to_string()))?;

    // The body as stored: secret fields were removed by `verify_payload`.
    let stored_payload = raw.to_json();
    let keys = delivery_keys(
        source,
        sender_id.map(|(_, id)| id),
        delivery.signature,
        &stored_payload,
    );
    let claim = match claim_delivery(&state, source, keys, signal.id.clone(), now).await {
        Ok(claim) => claim,
        Err(answer) => return answer,
    };
    let key_text = claim.keys_text();

    // Admitted (or shed with 503 before anything is recorded), appended, handed to its strategy; answered once
    // the acceptance is durable.
    let signal_id = signal.id.clone();
    let admit = Admit {
        signal: signal.clone(),
        delivery: Delivery {
            keys: key_text,
            payload: stored_payload,
        },
        arrived,
    };
    let stored = match state.ingress.send(admit).await {
        Ok(Ok(receipt)) => receipt.durable().await.map_err(AdmitError::Log),
        Ok(Err(refused)) => Err(refused),
        Err(_) => Err(AdmitError::NoStrategy {
            symbol: signal.symbol.clone(),
        }),
    };
    // The sender reused an id the idempotency index had already forgotten: the log still knows it.
    let in_log = matches!(
        stored,
        Ok(_) | Err(AdmitError::Log(LogError::DuplicateSignal))
    );
    state.deduper.settle(claim, in_log);
    match stored {
        Ok(_) => {}
        Err(AdmitError::Log(LogError::DuplicateSignal)) => {
            return Ok(
                HttpResponse::Ok().json(json!({ "status": "duplicate", "signal_id": signal_id }))
            );
        }
        Err(refused @ (AdmitError::Busy { .. } | AdmitError::Log(LogError::Full))) => {
            state.refusals.record(&source.name, "overloaded");
            return Err(ApiError::overloaded(refused.to_string()));
        }
        Err(e) => {
            return Err(ApiError::unavailable(format!(
                "the signal could not be stored; retry: {e}"
            )))
        }
    }
    state.latencies.record(Span::Ack, arrived.elapsed());
    // Per webhook, so at debug: its outcome is logged when it is done.
    debug!(source = %source.name, symbol = %signal.symbol, %signal_id, action = %signal.intent.action(), "signal accepted");
    Ok(HttpResponse::Accepted().json(json!({ "status": "accepted", "signal_id": signal_id })))
}

/// A command source's command, through the same idempotency and rate limit as a signal: a replayed `halt` is
/// answered `duplicate`, not carried out twice.
async fn take_command(
    state: &AppState,
    source: &SourceConfig,
    raw: &RawPayload,
    delivery: AuthDelivery,
    now: Timestamp,
) -> Result<HttpResponse, ApiError> {
    let request = CommandRequest::parse(raw)?;
    let (id, keys) = identify(source, raw, delivery, now)?;
    let claim = match claim_delivery(state, source, keys, id, now).await {
        Ok(claim) => claim,
        Err(answer) => return answer,
    };
    let answer = run_command(state, &source.name, &request).await;
    state.deduper.settle(claim, answer.is_ok());
    answer
}

/// An event for the rules: through the same idempotency and rate limit as a signal, journaled before it is
/// acknowledged (so the rules see it after a `kill -9`), answered with where it is in the log.
async fn take_event(
    state: &AppState,
    source: &SourceConfig,
    raw: RawPayload,
    delivery: AuthDelivery,
    now: Timestamp,
) -> Result<HttpResponse, ApiError> {
    let (id, keys) = identify(source, &raw, delivery, now)?;
    let mut observation =
        crate::rules::observation(&source.name, raw.into_fields(), &state.symbols, now)
            .map_err(|(field, message)| ApiError::invalid_field(field, message))?;
    let claim = match claim_delivery(state, source, keys, id.clone(), now).await {
        Ok(claim) => claim,
        Err(answer) => return answer,
    };
    observation.delivery = Some(ObservedDelivery {
        id: id.clone(),
        keys: claim.keys_text(),
    });
    let event_type = observation.event_type.clone();
    let stored = match state
        .journal
        .try_append(vec![Event::Observed { observation }])
    {
        Ok(receipt) => receipt.durable().await,
        Err(e) => Err(e),
    };
    state.deduper.settle(claim, stored.is_ok());
    match stored {
        Ok(offset) => {
            debug!(source = %source.name, event = %event_type, %offset, "event accepted");
            Ok(HttpResponse::Accepted().json(json!({
                "status": "accepted", "event_id": id, "event": event_type, "offset": offset
            })))
        }
        Err(LogError::Full) => {
            state.refusals.record(&source.name, "overloaded");
            Err(ApiError::overloaded(
                "the journal's queue is full; retry shortly",
            ))
        }
        Err(e) => Err(ApiError::unavailable(format!(
            "the event could not be stored; retry: {e}"
        ))),
    }
}

/// A command's or an event's id (`<source>:<sender's id>`, else a fresh one) and the idempotency keys its
/// delivery claims. (A signal's id comes out of normalising it, so the signal path calls the parts itself.)
fn identify(
    source: &SourceConfig,
    raw: &RawPayload,
    delivery: AuthDelivery,
    now: Timestamp,
) -> Result<(SignalId, Vec<DeliveryKey>), ApiError> {
    let sender_id = sender_id(delivery.id, raw)?;
    let id = signal_id(
        &source.name,
        sender_id.as_ref().map(|(_, id)| id.as_str()),
        || fresh_signal_id(now),
    );
    let keys = delivery_keys(
        source,
        sender_id.map(|(_, id)| id),
        delivery.signature,
        &raw.to_json(),
    );
    Ok((id, keys))
}

/// The delivery's identity: the sender's delivery id, else the payload's id; opaque, and bounded in size since it
/// is kept for days.
fn sender_id(
    delivery_id: Option<String>,
    raw: &RawPayload,
) -> Result<Option<(&'static str, String)>, ApiError> {
    let sender_id = match delivery_id {
        Some(id) => Some(("webhook-id", id)),
        None => raw.sender_id(),
    };
    if let Some((field, id)) = &sender_id {
        if id.len() > MAX_DELIVERY_ID_BYTES {
            return Err(ApiError::invalid_field(
                field,
                format!("a delivery id is at most {MAX_DELIVERY_ID_BYTES} bytes"),
            ));
        }
    }
    Ok(sender_id)
}

/// What makes a second copy of this delivery a duplicate: the sender's id, else the signature of a signed timestamp
/// and the digest of the stored body.
fn delivery_keys(
    source: &SourceConfig,
    sender_id: Option<String>,
    signature: Option<[u8; 32]>,
    stored_payload: &str,
) -> Vec<DeliveryKey> {
    if let Some(id) = sender_id {
        return vec![DeliveryKey::Id {
            source: source.name.clone(),
            id,
        }];
    }
    let mut keys = Vec::with_capacity(2);
    // A signed timestamp's signature: the same request again is a replay for as long as it would pass.
    if let Some(signature) = signature {
        keys.push(DeliveryKey::Signature {
            source: source.name.clone(),
            signature,
        });
    }
    // Digest of the stored body, so the key reveals nothing about a passphrase.
    if !source.duplicate_window.is_zero() {
        keys.push(DeliveryKey::body(&source.name, stored_payload.as_bytes()));
    }
    keys
}

/// Claims a new delivery's keys, then spends one of its source's rate limit. `Err` holds the answer for a copy of a
/// delivery already taken, or one that cannot be told from one, or one over the limit.
async fn claim_delivery(
    state: &AppState,
    source: &SourceConfig,
    keys: Vec<DeliveryKey>,
    signal_id: SignalId,
    now: Timestamp,
) -> Result<Claim, Result<HttpResponse, ApiError>> {
    let claim = match state.deduper.claim(keys, signal_id, now) {
        Ok(claim) => claim,
        // Answered only once the first copy is on disk: a `duplicate` is as binding as a 202.
        Err(Refused::Duplicate(first)) if first.durable().await => {
            info!(source = %source.name, signal_id = %first.signal_id, "duplicate delivery");
            return Err(Ok(HttpResponse::Ok().json(
                json!({ "status": "duplicate", "signal_id": first.signal_id }),
            )));
        }
        Err(Refused::Duplicate(_)) => {
            return Err(Err(ApiError::unavailable(
                "the first copy of this delivery could not be stored; retry",
            )))
        }
        Err(Refused::Full) => {
            state.refusals.record(&source.name, "overloaded");
            return Err(Err(ApiError::overloaded(
                "too many recent deliveries are remembered to recognise a replay of this one; retry shortly",
            )));
        }
    };
    // Only new deliveries count against the source's limit; a refused one frees its key, so its retry is new.
    if let Err(wait) = state.limits.check_source(&source.name) {
        state.deduper.settle(claim, false);
        state.refusals.record(&source.name, "rate_limited_source");
        return Err(Err(ApiError::too_many_requests(retry_after_secs(wait))));
    }
    Ok(claim)
}

/// Counts a refusal, and logs it if it is the first of its source and reason in this window: a flood of refusals
/// must not become a flood of log lines, so the daemon's housekeeping logs one summary of the rest.
fn refused(state: &AppState, source: &str, client: IpAddr, reason: &'static str) {
    if state.refusals.record(source, reason) {
        warn!(%source, %client, reason, "webhook refused");
    }
}

/// No `Origin` header, or one the source lists (`*`: any).
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let origin = origin
        .to_str()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    allowed.iter().any(|a| a == "*" || *a == origin)
}

/// JSON or plain text (TradingView's two), or no content type at all.
fn acceptable_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/plain" || essence.ends_with("+json")
}

/// Reads the body, refusing more than `limit` bytes whatever `Content-Length` claims (also for chunked bodies), and
/// giving up after `timeout`. Every handler that reads a body reads it through this, so none waits on a slow client.
pub(super) async fn read_body(
    mut payload: web::Payload,
    headers: &HeaderMap,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<web::BytesMut, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let read = async {
        let mut body =
            web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit as u64) as usize);
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::malformed(format!("the body could not be read: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::payload_too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::body_timeout())?
}

/// A fresh id for a signal whose sender gave none: time-ordered and unique within the process and across restarts
/// (milliseconds since the epoch + the process id + a per-process counter).
fn fresh_signal_id(at: Timestamp) -> SignalId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = format!("sig-{:x}-{:x}-{n:x}", at.0, std::process::id());
    SignalId::new(&id).expect("generated ids are valid")
}
