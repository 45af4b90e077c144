//! Wiring: starts the actors and the HTTP server, and runs until `shutdown` resolves.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::{Arbiter, Supervisor};
use actix_web::http::KeepAlive;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use sentinel_actors::exchange::ExchangeActor;
use sentinel_actors::paper::PaperGateway;
use sentinel_actors::portfolio::Portfolio;
use sentinel_actors::recorder::Recorder;
use sentinel_actors::risk::RiskEngine;
use sentinel_actors::risk_actor::RiskActor;
use sentinel_actors::router::Router;
use sentinel_actors::types::Timestamp;
use tracing::{info, warn};

use crate::activity::Activity;
use crate::config::{Config, ExchangeConfig};
use crate::http::{routes, AppState};
use crate::payload::SymbolMap;
use crate::protect::counters::RefusalCounters;
use crate::protect::dedupe::Deduper;
use crate::protect::limits::RateLimits;
use crate::tls;

/// How many recent signals and orders the API keeps in memory.
const ACTIVITY_CAPACITY: usize = 10_000;

/// Runs the daemon on `listener` until `shutdown` completes. Must be called inside an actix `System`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let config = Arc::new(config);
    let ExchangeConfig::Paper {
        starting_balance,
        costs,
    } = config.exchange.clone();
    let portfolio = Portfolio::new(starting_balance).shared();
    let activity = Arc::new(Activity::new(ACTIVITY_CAPACITY));
    let recorder: Arc<dyn Recorder> = activity.clone();

    // The exchange actor may block on its gateway, so it gets a thread of its own.
    let exchange_arbiter = Arbiter::new();
    let exchange = {
        let (portfolio, recorder) = (portfolio.clone(), recorder.clone());
        Supervisor::start_in_arbiter(&exchange_arbiter.handle(), move |_| {
            ExchangeActor::new(Box::new(PaperGateway::new(costs)), portfolio, recorder)
        })
    };
    // Risk and the strategies share one more, off the HTTP workers.
    let core_arbiter = Arbiter::new();
    let risk = {
        let rules = config
            .symbols
            .iter()
            .map(|s| (s.symbol().clone(), s.rules.clone()))
            .collect();
        let engine = RiskEngine::new(rules, config.risk.trading_state);
        let (portfolio, exchange) = (portfolio.clone(), exchange.clone().recipient());
        Supervisor::start_in_arbiter(&core_arbiter.handle(), move |_| {
            RiskActor::new(engine, portfolio, exchange)
        })
    };
    let router = Router::start(
        &core_arbiter.handle(),
        config.symbols.iter().map(|s| s.settings.clone()).collect(),
        portfolio.clone(),
        risk.clone().recipient(),
        exchange.recipient(),
        recorder,
    );

    let server_config = &config.server;
    let limits = Arc::new(RateLimits::new(server_config, &config.sources));
    let deduper = Arc::new(Deduper::new(
        server_config.delivery_id_retention,
        config
            .sources
            .iter()
            .map(|s| s.duplicate_window)
            .max()
            .unwrap_or_default(),
    ));
    let housekeeping = actix_web::rt::spawn(housekeeping(limits.clone(), deduper.clone()));

    let state = web::Data::new(AppState {
        symbols: SymbolMap::new(&config.symbols),
        config: config.clone(),
        router,
        risk,
        portfolio,
        activity,
        limits,
        deduper,
        refusals: Arc::new(RefusalCounters::default()),
    });
    let address = listener.local_addr().context("listener has no address")?;
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes))
        .workers(server_config.workers)
        .disable_signals()
        // A client must send its request head within this, or it is cut off (slowloris).
        .client_request_timeout(server_config.header_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        .keep_alive(KeepAlive::Timeout(Duration::from_secs(30)));
    let server = match &server_config.tls {
        Some(tls) => {
            let rustls = tls::server_config(&config.resolve(&tls.cert), &config.resolve(&tls.key))?;
            server.listen_rustls_0_23(listener, rustls)
        }
        None => server.listen(listener),
    }
    .context("cannot serve on the listener")?
    .run();
    let handle = server.handle();
    let scheme = if server_config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    info!(%address, scheme, sources = config.sources.len(), symbols = config.symbols.len(), "sentinel is listening");

    tokio::select! {
        result = server => result.context("HTTP server failed")?,
        () = shutdown => {
            info!("shutting down");
            handle.stop(true).await;
        }
    }
    housekeeping.abort();
    exchange_arbiter.stop();
    core_arbiter.stop();
    Ok(())
}

/// Forgets expired idempotency keys and recovered rate-limit state, so memory stays bounded.
async fn housekeeping(limits: Arc<RateLimits>, deduper: Arc<Deduper>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        limits.prune();
        deduper.prune(Timestamp::now());
    }
}
