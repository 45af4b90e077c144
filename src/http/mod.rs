//! The HTTP edge: the routes of the two listeners (webhooks; the operator API), shared state, and JSON errors for
//! everything that does not match.

mod api;
pub mod commands;
pub mod dashboard;
mod error;
mod metrics;
mod operator;
mod webhook;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::Addr;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse};
use sentinel_actors::ingress::{Admission, IngressActor};
use sentinel_actors::latency::Latencies;
use sentinel_actors::ledger_actor::ViewRx;
use sentinel_actors::risk_actor::RiskActor;

use crate::config::Config;
use crate::journal::{Journal, JournalReader};
use crate::payload::SymbolMap;
use crate::protect::counters::RefusalCounters;
use crate::protect::dedupe::Deduper;
use crate::protect::limits::RateLimits;

pub use error::ApiError;
pub use operator::{Access, AdminGuard};

/// What every request handler can reach; shared by all HTTP workers.
pub struct AppState {
    /// The configuration, as last (re)loaded: a reload (SIGHUP) publishes a new one, so sources' secrets change
    /// without a restart. Read it with `config()`.
    pub configs: tokio::sync::watch::Receiver<Arc<Config>>,
    pub symbols: SymbolMap,
    /// Where webhooks enter the actor graph.
    pub ingress: Addr<IngressActor>,
    pub risk: Addr<RiskActor>,
    /// The ledger's published view: the portfolio as the log has it.
    pub view: ViewRx,
    /// The bound on unfinished signals, for the backlog the API shows.
    pub admission: Admission,
    /// The venue: its name and how its connection stands.
    pub venue: Arc<dyn sentinel_actors::venue::ExecutionVenue>,
    pub journal: Arc<Journal>,
    pub reader: Arc<JournalReader>,
    pub limits: Arc<RateLimits>,
    pub deduper: Arc<Deduper>,
    pub refusals: Arc<RefusalCounters>,
    /// Checks the read and admin tokens and limits guessing them.
    pub admin: AdminGuard,
    /// Set once the actors started and the unfinished signals were handed back: `/readyz` is 503 until then.
    pub recovered: AtomicBool,
    /// Ack, signal-to-order and signal-to-fill latency.
    pub latencies: Arc<Latencies>,
    /// The Prometheus series `GET /metrics` serves.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Closed at the first SIGTERM: webhooks are answered 503 with `Retry-After` while the signals in flight finish.
    pub draining: Drain,
    /// What the notifier delivered, dropped and retried: `GET /api/notifications`.
    pub notifications: Arc<crate::notify::Notifications>,
    /// The dashboard's equity curve, cookie sessions and open event streams.
    pub dashboard: dashboard::Dashboard,
}

/// The webhook listener's door. The first SIGTERM closes it; the drain then waits until no webhook is inside, so
/// a webhook that passed the door before it closed is answered (and its signal admitted) before the drain counts
/// what is still unfinished.
#[derive(Debug, Default)]
pub struct Drain {
    closed: AtomicBool,
    inside: AtomicUsize,
}

/// A webhook being answered; leaving drops it.
pub struct Inside<'a>(&'a Drain);

impl Drain {
    /// In, unless the door is closed. Counted before the door is looked at (both sequentially consistent), so the
    /// drain either sees this webhook inside or this webhook sees the door closed.
    pub fn enter(&self) -> Option<Inside<'_>> {
        self.inside.fetch_add(1, Ordering::SeqCst);
        let inside = Inside(self);
        (!self.closed.load(Ordering::SeqCst)).then_some(inside)
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Webhooks being answered now.
    pub fn inside(&self) -> usize {
        self.inside.load(Ordering::SeqCst)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AppState {
    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.configs.borrow().clone()
    }
}

/// The webhook listener (`server.listen`): `/webhook/*` and the probes; nothing of the operator API.
pub fn webhook_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/webhook/{source}", "/webhook/{source}/{token}"])
            .route(web::post().to(webhook::receive))
            .default_service(web::to(method_not_allowed)),
    )
    .service(get("/healthz", api::healthz))
    .service(get("/readyz", api::readyz))
    .default_service(web::to(not_found));
}

/// The API listener (`api.listen`): `/api/*` behind the tokens, the probes, and the operator's other read-outs.
pub fn api_routes(cfg: &mut web::ServiceConfig) {
    // Bad query strings (`?limit=lots`) get the same JSON errors as everything else.
    let query =
        web::QueryConfig::default().error_handler(|e, _| ApiError::malformed(e.to_string()).into());
    cfg.app_data(query)
        .service(get("/healthz", api::healthz))
        .service(get("/readyz", api::readyz))
        // Prometheus scrapes with the read token (`authorization: { credentials_file: ... }`), like any read.
        .service(
            web::scope("/metrics")
                .wrap(from_fn(operator::check_read_token))
                .wrap(from_fn(operator::check_host))
                .service(get("", metrics::metrics)),
        )
        .service(
            // Only under a host name it answers to: a page rebound to this address gets nothing. Reads need the
            // read token (checked after the host, so a rebound page learns nothing about the tokens).
            web::scope("/api")
                .wrap(from_fn(operator::check_read_token))
                .wrap(from_fn(operator::check_host))
                .service(get("/positions", api::positions))
                .service(get("/account", api::account))
                .service(get("/signals", api::signals))
                .service(get("/orders", api::orders))
                .service(get("/open-orders", api::open_orders))
                .service(get("/security", api::security))
                .service(get("/latency", api::latency))
                .service(get("/notifications", crate::notify::list))
                .service(get("/equity", dashboard::equity))
                .service(get("/events", dashboard::events))
                .service(
                    web::resource("/session")
                        .route(web::post().to(dashboard::create_session))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/flatten")
                        .route(web::post().to(commands::flatten))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/trading-state")
                        .route(web::get().to(api::trading_state))
                        .route(web::post().to(api::set_trading_state))
                        .default_service(web::to(method_not_allowed)),
                )
                .default_service(web::to(not_found)),
        )
        // The dashboard's page and assets hold no data: public, like the probes.
        .service(get("/", dashboard::index))
        .service(get("/assets/{name}", dashboard::assets))
        .default_service(web::to(not_found));
}

fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed())
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("no such endpoint"))
}
