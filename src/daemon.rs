//! Wiring: starts the actors and the HTTP server, and runs until `shutdown` resolves.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;

use actix::{Arbiter, Supervisor};
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use sentinel_actors::exchange::ExchangeActor;
use sentinel_actors::paper::PaperGateway;
use sentinel_actors::portfolio::Portfolio;
use sentinel_actors::recorder::Recorder;
use sentinel_actors::risk::RiskEngine;
use sentinel_actors::risk_actor::RiskActor;
use sentinel_actors::router::Router;
use tracing::{info, warn};

use crate::activity::Activity;
use crate::config::{Config, ExchangeConfig};
use crate::http::{routes, AppState};
use crate::payload::SymbolMap;

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

    let state = web::Data::new(AppState {
        symbols: SymbolMap::new(&config.symbols),
        config: config.clone(),
        router,
        risk,
        portfolio,
        activity,
    });
    let address = listener.local_addr().context("listener has no address")?;
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes))
        .workers(config.server.workers)
        .disable_signals()
        .listen(listener)
        .context("cannot serve on the listener")?
        .run();
    let handle = server.handle();
    info!(%address, sources = config.sources.len(), symbols = config.symbols.len(), "sentinel is listening");

    tokio::select! {
        result = server => result.context("HTTP server failed")?,
        () = shutdown => {
            info!("shutting down");
            handle.stop(true).await;
        }
    }
    exchange_arbiter.stop();
    core_arbiter.stop();
    Ok(())
}
