//! Wiring: recovers state from the journal, starts the actors and the HTTP server, and runs until `shutdown`.

use std::any::Any;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Arbiter, Supervisor};
use actix_web::dev::{Extensions, Service as _};
use actix_web::http::{ConnectionType, KeepAlive};
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
use crate::http::{routes, AdminGuard, AppState};
use crate::journal::{self, Journal, Recovered};
use crate::payload::SymbolMap;
use crate::protect::connections::{connection_cap, raise_fd_limit, BodyHold, ConnectionGauge};
use crate::protect::counters::RefusalCounters;
use crate::protect::dedupe::{Deduper, DeliveryKey, Windows};
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
            .map(|s| {
                let windows = Windows {
                    body: s.duplicate_window,
                    replay: s.auth.replay_window().unwrap_or_default(),
                };
                (s.name.clone(), windows)
            })
            .collect(),
    ));
    for (keys, signal_id, at) in &recovered.deliveries {
        for key in DeliveryKey::split(keys) {
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
    let refusals = Arc::new(RefusalCounters::default());
    let housekeeping = actix_web::rt::spawn(housekeeping(
        limits.clone(),
        refusals.clone(),
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
        refusals,
        admin: AdminGuard::default(),
    });
    let address = listener.local_addr().context("listener has no address")?;
    let max_connections = max_connections(server_config.max_connections);
    let gauge = Arc::new(ConnectionGauge::new(max_connections));
    // Every connection is counted while it is open, and its client certificate recorded, if it presented one.
    let on_connect = {
        let gauge = gauge.clone();
        move |connection: &dyn Any, data: &mut Extensions| {
            data.insert(gauge.opened());
            tls::record_client_cert(connection, data);
        }
    };
    // actix caps connections per worker.
    let per_worker = (max_connections / server_config.workers).max(1);
    let keep_alive = match server_config.keep_alive {
        idle if idle.is_zero() => KeepAlive::Disabled,
        idle => KeepAlive::Timeout(idle),
    };
    let server = HttpServer::new(move || {
        let gauge = gauge.clone();
        App::new()
            .app_data(state.clone())
            // The top of the connection cap is headroom for new clients: once it is in use, answers close their
            // connection instead of keeping it idle. An unread body closes it too, rather than being drained.
            .wrap_fn(move |mut req, service| {
                let body = BodyHold::take(&mut req);
                let response = service.call(req);
                let gauge = gauge.clone();
                async move {
                    let mut response = response.await?;
                    if !gauge.may_keep_alive() {
                        response
                            .response_mut()
                            .head_mut()
                            .set_connection_type(ConnectionType::Close);
                    }
                    Ok(body.until_sent(response))
                }
            })
            .configure(routes)
    })
    .workers(server_config.workers)
    .disable_signals()
    // Past the cap, new connections wait in the kernel's backlog, costing the daemon no descriptor.
    .max_connections(per_worker)
    // TLS handshakes in progress per worker: they cost CPU before a client has shown anything.
    .max_connection_rate(per_worker.min(256))
    // A client must send its request head within this, or it is cut off (slowloris).
    .client_request_timeout(server_config.header_timeout)
    .client_disconnect_timeout(Duration::from_secs(1))
    // An idle connection holds a descriptor and a slot under the cap.
    .keep_alive(keep_alive)
    .on_connect(on_connect);
    let server = match &server_config.tls {
        Some(tls) => {
            let client_ca = tls.client_ca.as_ref().map(|ca| config.resolve(ca));
            let rustls = tls::server_config(
                &config.resolve(&tls.cert),
                &config.resolve(&tls.key),
                client_ca.as_deref(),
            )?;
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
    info!(%address, scheme, sources = config.sources.len(), symbols = config.symbols.len(), max_connections, keep_alive_secs = server_config.keep_alive.as_secs(), "sentinel is listening");

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

/// The connection cap: `configured` or derived from the open file limit, which is first raised to the hard limit.
fn max_connections(configured: Option<usize>) -> usize {
    let fd_limit = match raise_fd_limit() {
        Ok(limit) => {
            info!(
                before = limit.before,
                now = limit.now,
                hard = limit.hard,
                "open file limit"
            );
            limit.now
        }
        Err(e) => {
            warn!(error = %e, "cannot read or raise the open file limit: connections are capped by server.max_connections alone");
            u64::MAX
        }
    };
    connection_cap(configured, fd_limit).unwrap_or_else(|cap| {
        warn!(
            configured = ?configured,
            cap,
            fd_limit,
            "server.max_connections lowered to leave descriptors for the daemon itself; raise `ulimit -Hn`"
        );
        cap
    })
}

/// How often housekeeping runs; also the window over which refusals are summed up in the log.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(10);

/// Forgets expired idempotency keys and recovered rate-limit state, logs the refusals that were not logged one by
/// one, and prunes old journal rows.
async fn housekeeping(
    limits: Arc<RateLimits>,
    refusals: Arc<RefusalCounters>,
    deduper: Arc<Deduper>,
    journal: Arc<Journal>,
    retention: Duration,
) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        for unlogged in refusals.take_unlogged() {
            warn!(
                source = %unlogged.source,
                reason = unlogged.reason,
                count = unlogged.count,
                window_secs = HOUSEKEEPING_EVERY.as_secs(),
                "webhooks refused in the last window (only the first was logged)"
            );
        }
        limits.prune();
        let now = Timestamp::now();
        deduper.prune(now);
        ticks += 1;
        if ticks % 360 == 1 {
            journal.prune(Timestamp(now.0 - retention.as_millis() as i64));
        }
    }
}
