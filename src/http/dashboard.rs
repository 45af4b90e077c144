//! The operator dashboard on the API listener: the page and its assets (embedded in the binary), the equity curve the
//! page draws, cookie sessions for the live stream, and `GET /api/events`, the stream itself.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use rust_decimal::Decimal;
use sentinel_actors::ledger_actor::ViewRx;
use sentinel_actors::types::Timestamp;
use serde_json::{json, Value};

use super::error::ApiError;
use super::{api, Access, AppState};

/// The name of the cookie that holds a dashboard session's id.
pub const SESSION_COOKIE: &str = "sentinel_session";
/// Sessions kept at once: a handful of operators' tabs. Past this the oldest is forgotten.
const MAX_SESSIONS: usize = 64;
/// How long a session lasts: a working day; the page asks for a new one when its stream is refused.
const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// Open event streams at once; each holds a connection, so past this a new one is answered 503.
const MAX_STREAMS: usize = 16;
/// The shortest gap between two events of one stream: at most ~10 a second however fast the ledger moves.
const MIN_EVENT_GAP: Duration = Duration::from_millis(100);
/// A comment line this often when nothing changes, so a stream whose client went away is noticed and closed.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Equity samples kept for the curve: one per change of equity, the oldest dropped first.
const MAX_EQUITY_SAMPLES: usize = 1000;

/// Only this origin's scripts, styles and requests; no inline script, no framing, no form posts elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../assets/dashboard/app.js");
const STYLE_CSS: &str = include_str!("../../assets/dashboard/style.css");
const ICON_SVG: &str = include_str!("../../assets/dashboard/icon.svg");

/// What the dashboard keeps between requests: the equity curve, the cookie sessions and the open streams.
#[derive(Default)]
pub struct Dashboard {
    equity: Mutex<EquityRing>,
    sessions: Mutex<Sessions>,
    streams: Arc<AtomicUsize>,
}

impl Dashboard {
    /// Follows the ledger's view and records equity each time it changes, until the view's sender goes away.
    pub fn spawn_sampler(state: web::Data<AppState>) {
        let mut view = state.view.clone();
        actix_web::rt::spawn(async move {
            loop {
                let equity = view.borrow_and_update().portfolio.equity();
                state
                    .dashboard
                    .equity
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(Timestamp::now().0, equity);
                if view.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Whether the request carries the cookie of a live session.
    pub fn has_session(&self, req: &HttpRequest) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        req.headers()
            .get_all(header::COOKIE)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == SESSION_COOKIE && sessions.is_live(value, now))
    }
}

/// (Unix milliseconds, equity) samples, oldest first, at most `MAX_EQUITY_SAMPLES`.
#[derive(Default)]
struct EquityRing {
    samples: std::collections::VecDeque<(i64, Decimal)>,
}

impl EquityRing {
    /// Keeps `equity` if it differs from the last sample: a curve of changes, not of ticks.
    fn record(&mut self, at_ms: i64, equity: Decimal) {
        if self.samples.back().is_some_and(|(_, last)| *last == equity) {
            return;
        }
        if self.samples.len() == MAX_EQUITY_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((at_ms, equity));
    }
}

/// Random session ids and when each expires; bounded, so no client can grow it.
#[derive(Default)]
struct Sessions {
    expires: HashMap<String, Instant>,
}

impl Sessions {
    fn insert(&mut self, id: String, now: Instant) {
        self.expires.retain(|_, until| *until > now);
        if self.expires.len() >= MAX_SESSIONS {
            let oldest = self
                .expires
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.expires.remove(&oldest);
            }
        }
        self.expires.insert(id, now + SESSION_TTL);
    }

    fn is_live(&self, id: &str, now: Instant) -> bool {
        self.expires.get(id).is_some_and(|until| *until > now)
    }
}

/// `GET /`: the page. It holds no data, so it needs no token.
pub async fn index() -> HttpResponse {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /assets/{name}`: the page's script, style sheet and icon.
pub async fn assets(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (body, content_type) = match name.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        "icon.svg" => (ICON_SVG, "image/svg+xml"),
        _ => return Err(ApiError::not_found("no such asset")),
    };
    Ok(asset(body, content_type))
}

fn asset(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // The assets change with the binary: a restart after an upgrade must not serve yesterday's script.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `POST /api/session` with the read token in `Authorization`: sets an `HttpOnly` cookie that reads (`GET`) accept
/// in its place, for `EventSource`, which cannot send headers. Writes never accept it.
pub async fn create_session(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let config = state.config();
    state
        .admin
        .authorize(&req, &config.server, &config.api, Access::Read)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::unavailable(format!("no randomness for a session id: {e}")))?;
    let id = hex::encode(bytes);
    state
        .dashboard
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), Instant::now());
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, cookie))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "expires_in_secs": SESSION_TTL.as_secs() })))
}

/// `GET /api/equity`: the equity curve's samples, oldest first.
pub async fn equity(state: web::Data<AppState>) -> HttpResponse {
    let samples: Vec<Value> = state
        .dashboard
        .equity
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .samples
        .iter()
        .map(|(at, equity)| json!({ "at": at, "equity": equity }))
        .collect();
    HttpResponse::Ok().json(json!({ "samples": samples }))
}

/// Counts an open stream while it lives.
struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    fn take(open: &Arc<AtomicUsize>) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_STREAMS).then_some(n + 1)
        })
        .ok()
        .map(|_| Self(open.clone()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /api/events`: a `text/event-stream` of `snapshot` events (account, positions, open orders, as their own
/// endpoints answer them), one at once and one after each change of the ledger's view, at most ~10 a second. 503
/// past `MAX_STREAMS` open streams. A stream ends when its client goes away or the daemon stops.
pub async fn events(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let slot = StreamSlot::take(&state.dashboard.streams).ok_or_else(|| {
        ApiError::unavailable(format!(
            "{MAX_STREAMS} event streams are open already: close a tab or poll the API"
        ))
    })?;
    struct Stream {
        state: web::Data<AppState>,
        view: ViewRx,
        first: bool,
        _slot: StreamSlot,
    }
    let start = Stream {
        view: state.view.clone(),
        state,
        first: true,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        if s.first {
            s.first = false;
        } else {
            match actix_web::rt::time::timeout(KEEPALIVE, s.view.changed()).await {
                Err(_) => return Some((Ok(web::Bytes::from_static(b": keepalive\n\n")), s)),
                Ok(Err(_)) => return None,
                Ok(Ok(())) => actix_web::rt::time::sleep(MIN_EVENT_GAP).await,
            }
        }
        s.view.borrow_and_update();
        let event = snapshot(&s.state).await;
        Some((Ok::<_, Infallible>(web::Bytes::from(event)), s))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Proxies (nginx) would otherwise hold the events back.
        .insert_header(("x-accel-buffering", HeaderValue::from_static("no")))
        .streaming(stream))
}

/// One `snapshot` event: what the account, positions and open-orders endpoints answer now.
async fn snapshot(state: &web::Data<AppState>) -> String {
    let account = api::account_json(state)
        .await
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let data = json!({
        "account": account,
        "positions": api::positions_json(state),
        "open_orders": api::open_orders_json(state),
    });
    format!("event: snapshot\ndata: {data}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_equity_ring_keeps_changes_and_is_bounded() {
        let mut ring = EquityRing::default();
        ring.record(1, Decimal::from(100));
        ring.record(2, Decimal::from(100));
        assert_eq!(ring.samples.len(), 1, "an unchanged equity is not a sample");
        for i in 0..(MAX_EQUITY_SAMPLES as i64 + 10) {
            ring.record(i + 3, Decimal::from(i));
        }
        assert_eq!(ring.samples.len(), MAX_EQUITY_SAMPLES);
        assert_eq!(
            ring.samples.back().unwrap().0,
            MAX_EQUITY_SAMPLES as i64 + 12
        );
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let mut sessions = Sessions::default();
        let now = Instant::now();
        for i in 0..(MAX_SESSIONS + 5) {
            sessions.insert(format!("s{i}"), now + Duration::from_millis(i as u64));
        }
        assert_eq!(sessions.expires.len(), MAX_SESSIONS);
        assert!(!sessions.is_live("s0", now), "the oldest went first");
        assert!(sessions.is_live(&format!("s{}", MAX_SESSIONS + 4), now));
        let newest = format!("s{}", MAX_SESSIONS + 4);
        assert!(!sessions.is_live(&newest, now + SESSION_TTL * 2), "expired");
        assert!(!sessions.is_live("unknown", now));
    }

    #[test]
    fn stream_slots_are_bounded_and_given_back() {
        let open = Arc::new(AtomicUsize::new(0));
        let slots: Vec<_> = (0..MAX_STREAMS)
            .map(|_| StreamSlot::take(&open).expect("a slot"))
            .collect();
        assert!(StreamSlot::take(&open).is_none());
        drop(slots);
        assert_eq!(open.load(Ordering::Acquire), 0);
    }
}
