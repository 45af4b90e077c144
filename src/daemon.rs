//! Wiring: recovers state from the journal, starts the actors and the HTTP server, and runs until `shutdown`.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Arbiter, Supervisor};
use actix_web::http::KeepAlive;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use sentinel_actors::exchange::ExchangeActor;
use sentinel_actors::gateway::Gateway;
use sentinel_actors::messages::TakeSnapshot;
use sentinel_actors::paper::PaperGateway;
use sentinel_actors::portfolio::Portfolio;
use sentinel_actors::recorder::Recorder;
use sentinel_actors::risk::RiskEngine;
use sentinel_actors::risk_actor::RiskActor;
use sentinel_actors::router::Router;
use sentinel_actors::strategy::StrategyBook;
use sentinel_actors::types::Timestamp;
use tracing::{info, warn};

use crate::config::{Config, ExchangeConfig};
use crate::http::{routes, AppState};
use crate::journal::{self, Journal, Recovered};
use crate::payload::SymbolMap;
use crate::protect::counters::RefusalCounters;
use crate::protect::dedupe::{Deduper, DeliveryKey};
use crate::protect::limits::RateLimits;
use crate::tls;

/// Runs the daemon on `listener` until `shutdown` completes. Must be called inside an actix `System`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let started = Instant::now();
    let config = Arc::new(config);
    let server_config = &config.server;

    let (conn, reader) = journal::open(config.journal.path.as_deref())?;
    let now = Timestamp::now();
    let recovered = journal::recover(
        &conn,
        Timestamp(now.0 - server_config.delivery_id_retention.as_millis() as i64),
    )?;
    let journal = Journal::start(conn);
    let recorder: Arc<dyn Recorder> = journal.clone();

    let ExchangeConfig::Paper {
        starting_balance,
        costs,
    } = config.exchange.clone();
    let (portfolio, gateway) = restore_exchange(
        &recovered,
        Portfolio::new(starting_balance),
        PaperGateway::new(costs),
    )?;
    let portfolio = portfolio.shared();

    let deduper = Arc::new(Deduper::new(
        server_config.delivery_id_retention,
        config
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.duplicate_window))
            .collect(),
    ));
    for (key, signal_id, at) in &recovered.deliveries {
        if let Some(key) = DeliveryKey::from_text(key) {
            deduper.restore(key, signal_id.clone(), *at);
        }
    }

    // The exchange actor may block on its gateway and on durable fill records, so it gets a thread of its own.
    let exchange_arbiter = Arbiter::new();
    let exchange = {
        let (portfolio, recorder) = (portfolio.clone(), recorder.clone());
        Supervisor::start_in_arbiter(&exchange_arbiter.handle(), move |_| {
            ExchangeActor::new(gateway, portfolio, recorder)
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
        // A kill switch set before the restart stays on.
        let state = recovered.trading_state.unwrap_or(config.risk.trading_state);
        let engine = RiskEngine::new(rules, state);
        let (portfolio, exchange, recorder) = (
            portfolio.clone(),
            exchange.clone().recipient(),
            recorder.clone(),
        );
        Supervisor::start_in_arbiter(&core_arbiter.handle(), move |_| {
            RiskActor::new(engine, portfolio, exchange, recorder)
        })
    };
    let books = config
        .symbols
        .iter()
        .map(|s| {
            let paused = recovered.paused.get(s.symbol()).copied().unwrap_or(false);
            StrategyBook::new(s.settings.clone()).with_paused(paused)
        })
        .collect();
    let router = Router::start(
        &core_arbiter.handle(),
        books,
        portfolio.clone(),
        risk.clone().recipient(),
        exchange.clone().recipient(),
        exchange.clone().recipient(),
        recorder,
    );
    // Acknowledged but unfinished signals first, in journal order, before any new webhook is taken.
    let pending = recovered.pending.len();
    for (signal, decided) in recovered.pending {
        if let Err(e) = router.dispatch_decided(signal, decided) {
            warn!(error = %e, "a recovered signal could not be queued");
        }
    }
    journal.set_router(router.clone());
    info!(
        pending,
        fills_replayed = recovered.fills.len(),
        deliveries = recovered.deliveries.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "state recovered from the journal"
    );

    let limits = Arc::new(RateLimits::new(server_config, &config.sources));
    let housekeeping = actix_web::rt::spawn(housekeeping(
        limits.clone(),
        deduper.clone(),
        journal.clone(),
        config.journal.retention,
    ));
    let state = web::Data::new(AppState {
        symbols: SymbolMap::new(&config.symbols),
        config: config.clone(),
        router,
        risk,
        portfolio,
        journal: journal.clone(),
        reader: Arc::new(reader),
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
            let client_ca = tls.client_ca.as_ref().map(|ca| config.resolve(ca));
            let rustls = tls::server_config(
                &config.resolve(&tls.cert),
                &config.resolve(&tls.key),
                client_ca.as_deref(),
            )?;
            server
                .on_connect(tls::record_client_cert)
                .listen_rustls_0_23(listener, rustls)
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
    // A clean stop leaves a fresh snapshot and nothing queued: the next start replays nothing.
    if exchange.send(TakeSnapshot).await.is_err() {
        warn!("no snapshot at shutdown: the exchange actor is gone");
    }
    if let Err(e) = journal.flush().await {
        warn!(error = %e, "the journal could not be flushed at shutdown");
    }
    exchange_arbiter.stop();
    core_arbiter.stop();
    Ok(())
}

/// The portfolio and gateway as the journal left them: the last snapshot, then the fills after it.
fn restore_exchange(
    recovered: &Recovered,
    fresh_portfolio: Portfolio,
    mut gateway: PaperGateway,
) -> anyhow::Result<(Portfolio, Box<dyn Gateway>)> {
    let mut portfolio = recovered.portfolio.clone().unwrap_or(fresh_portfolio);
    if let Some(state) = &recovered.gateway {
        gateway
            .restore_snapshot(state.clone())
            .map_err(anyhow::Error::msg)
            .context("the journal's snapshot does not fit the paper exchange")?;
    }
    for (order, fill) in &recovered.fills {
        portfolio.apply_fill(fill);
        portfolio.mark(&fill.symbol, fill.price);
        gateway.restore_fill(order.as_ref(), fill, true);
    }
    for (order, fill) in &recovered.pending_fills {
        gateway.restore_fill(order.as_ref(), fill, false);
    }
    Ok((portfolio, Box::new(gateway)))
}

/// Forgets expired idempotency keys and recovered rate-limit state, and prunes old journal rows.
async fn housekeeping(
    limits: Arc<RateLimits>,
    deduper: Arc<Deduper>,
    journal: Arc<Journal>,
    retention: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        limits.prune();
        let now = Timestamp::now();
        deduper.prune(now);
        ticks += 1;
        if ticks % 360 == 1 {
            journal.prune(Timestamp(now.0 - retention.as_millis() as i64));
        }
    }
}
