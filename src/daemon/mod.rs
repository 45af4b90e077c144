//! Wiring: takes the journal (one daemon per journal), folds it, starts the actors and the two HTTP servers (webhooks,
//! operator API), and runs until `shutdown`.

mod core;
mod housekeeping;
mod server;

use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::web;
use anyhow::Context as _;
use sentinel_actors::latency::Latencies;
use sentinel_actors::ledger_actor::view_after;
use sentinel_actors::log::{Clock, EventLog, SystemClock};
use sentinel_actors::messages::Checkpoint;
use sentinel_actors::types::Timestamp;
use tracing::{info, warn};

use crate::adapters;
use crate::config::Config;
use crate::http::{AdminGuard, AppState};
use crate::journal::{self, Journal};
use crate::metrics::Metrics;
use crate::payload::SymbolMap;
use crate::protect::counters::RefusalCounters;
use crate::protect::dedupe::{Deduper, Windows};
use crate::protect::limits::RateLimits;

pub use self::core::fold;

/// Batches the journal's queue holds before appends wait (or, for webhooks, are answered 503).
const JOURNAL_QUEUE: usize = 4096;
/// Recent events the journal keeps in memory for the consumers following the head (the ledger reads in batches of
/// 1024 and keeps up); older ones are read from SQLite. Bounds the memory of a burst of large payloads.
const JOURNAL_RING: usize = 4096;

/// The daemon's two listeners, bound by the caller (tests bind `127.0.0.1:0`). Both must be non-blocking.
pub struct Listeners {
    /// `server.listen`: `POST /webhook/{source}`, `/healthz`, `/readyz`.
    pub webhooks: TcpListener,
    /// `api.listen`: `/api/*` behind the read and admin tokens, `/healthz`, `/readyz`.
    pub api: TcpListener,
}

/// Runs the daemon on `listeners` until `shutdown` completes. Must be called inside an actix `System`.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (_keep, reloads) = tokio::sync::mpsc::channel(1);
    run_with_reloads(config, listeners, shutdown, reloads).await
}

/// `run`, taking each configuration `reloads` yields (SIGHUP) and applying what can change safely: risk rules and
/// limits, symbol settings, sources' secrets. What cannot change without a restart is logged and left as it was.
/// At `shutdown`, webhooks are answered 503 while the signals in flight finish, for at most
/// `server.shutdown_deadline`; then a checkpoint, and the servers stop.
pub async fn run_with_reloads(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    mut reloads: tokio::sync::mpsc::Receiver<Config>,
) -> anyhow::Result<()> {
    for warning in &config.warnings {
        warn!("{warning}");
    }
    for overridden in &config.overridden {
        info!("configuration override: {overridden}");
    }
    let mut config = config;
    // Until the actors run, the API answers its probes itself: /readyz is 503 `recovering`.
    let starting = server::serve_starting(
        listeners
            .api
            .try_clone()
            .context("cannot share the API listener")?,
    )?;
    let starting_probes = starting.handle();
    let starting = actix_web::rt::spawn(starting);

    // Two daemons on one journal would place every order twice.
    let _lock = match &config.journal.path {
        Some(path) => Some(journal::lock(path)?),
        None => None,
    };
    let (conn, reader) = journal::open(config.journal.path.as_deref())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let journal = Journal::start_with_ring(conn, clock.clone(), JOURNAL_QUEUE, JOURNAL_RING);
    let log: Arc<dyn EventLog> = journal.clone();
    let mut ledger = fold(&*log, &config)?;
    let connected = adapters::connect(&config.exchange, &config.symbols, &ledger).await?;
    if let Some(event) = connected.reconciled {
        // The venue's account, adopted before anything trades on it.
        log.append(vec![event])
            .durable()
            .await
            .context("the reconciliation with the venue could not be recorded")?;
        core::catch_up(&*log, &mut ledger)?;
    }
    // The venue's maintenance brackets, where it has them, replace the configured flat rates.
    for symbol in &mut config.symbols {
        if let Some(brackets) = connected.brackets.get(symbol.symbol()) {
            symbol.margin.brackets = brackets.clone();
        }
    }
    let config = Arc::new(config);
    let server_config = &config.server;

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
    let since =
        Timestamp(Timestamp::now().0 - server_config.delivery_id_retention.as_millis() as i64);
    let deliveries = reader.deliveries_since(since)?;
    deduper.restore(
        deliveries
            .iter()
            .map(|(keys, id, at)| (keys.as_str(), id, *at)),
        Timestamp::now(),
    );
    info!(
        deliveries = deliveries.len(),
        remembered = deduper.len(),
        "idempotency keys restored"
    );

    // Signal outcomes and venue errors are counted from the journal's head on: the daemon's own since it started.
    let notifications = Arc::new(crate::notify::Notifications::new(&config.notifications));
    let metrics = Arc::new(
        Metrics::new(config.sources.iter().map(|s| s.name.as_str()))
            .with_notifications(notifications.clone()),
    );
    let from = journal.head().borrow().next();
    let counting = actix_web::rt::spawn(metrics.clone().follow(journal.clone(), from));
    let latencies = Arc::new(Latencies::default());
    let notifying_log = log.clone();
    let core = core::start(
        &config,
        ledger,
        log,
        clock,
        latencies.clone(),
        connected.venue,
    );
    // Notifications follow from the same head: what happens from now on, never a replay of history.
    let notifying = crate::notify::start(&notifications, notifying_log, from, core.view.clone());

    let limits = Arc::new(RateLimits::new(server_config, &config.sources));
    let refusals = Arc::new(RefusalCounters::default());
    let chores = actix_web::rt::spawn(housekeeping::housekeeping(
        limits.clone(),
        refusals.clone(),
        deduper.clone(),
        journal.clone(),
        config.journal.retention,
    ));
    let (publish_config, configs) = tokio::sync::watch::channel(config.clone());
    let state = web::Data::new(AppState {
        symbols: SymbolMap::new(&config.symbols),
        configs,
        ingress: core.ingress.clone(),
        risk: core.risk.clone(),
        view: core.view.clone(),
        admission: core.admission.clone(),
        venue: core.venue.clone(),
        journal: journal.clone(),
        reader: Arc::new(reader),
        limits,
        deduper,
        refusals,
        admin: AdminGuard::default(),
        recovered: AtomicBool::new(false),
        latencies,
        metrics,
        draining: Default::default(),
        notifications,
        dashboard: Default::default(),
    });
    crate::http::dashboard::Dashboard::spawn_sampler(state.clone());
    // `core::start` returned: the actors run and every unfinished signal is in its strategy's mailbox, ahead of any
    // new webhook.
    state.recovered.store(true, Ordering::Release);
    // What the venue reports goes onto the log as observations; the rules follow the log and act on them.
    let rules_log: Arc<dyn sentinel_actors::log::EventLog> = journal.clone();
    let observing = state
        .venue
        .observations()
        .map(|rx| actix_web::rt::spawn(crate::rules::observe_venue(rx, rules_log.clone())));
    let ruling = crate::rules::start(state.clone(), rules_log);
    starting_probes.stop(false).await;
    let _ = starting.await;
    let webhooks = server::serve(
        &config,
        state.clone(),
        listeners.webhooks,
        server::Role::Webhooks,
    )?;
    let api = server::serve(&config, state.clone(), listeners.api, server::Role::Api)?;
    let handles = [webhooks.handle(), api.handle()];
    // Operator commands from a chat: on its own task, so a slow or absent Telegram never holds anything up.
    let chat = match &config.telegram {
        Some(telegram) => Some(crate::chat::spawn(telegram.clone(), state.clone())?),
        None => None,
    };

    let (mut webhooks, mut api) = (webhooks, api);
    let mut shutdown = std::pin::pin!(shutdown);
    let served = loop {
        tokio::select! {
            result = &mut webhooks => break result,
            result = &mut api => break result,
            () = &mut shutdown => {
                drain(&state, &core, config.server.shutdown_deadline).await;
                // The servers finish the requests they hold (at most their shutdown timeout) while they are driven.
                let stop = async {
                    for handle in &handles {
                        handle.stop(true).await;
                    }
                };
                let ((), ended_webhooks, ended_api) = tokio::join!(stop, &mut webhooks, &mut api);
                break ended_webhooks.and(ended_api);
            }
            Some(new) = reloads.recv() => {
                let current = state.config();
                let new = reload(&current, new, &connected_brackets(&current));
                core.reconfigure(&new).await;
                let _ = publish_config.send(Arc::new(new));
            }
        }
    };
    // One server ending stops the other: the daemon runs with both or not at all. Dropped first: a server that is
    // not driven would never answer its stop.
    drop((webhooks, api));
    for handle in &handles {
        handle.stop(true).await;
    }
    if let Some(chat) = &chat {
        chat.abort();
    }
    served?;
    chores.abort();
    counting.abort();
    notifying.abort();
    drop(ruling);
    if let Some(observing) = &observing {
        observing.abort();
    }
    // A clean stop leaves a fresh checkpoint and nothing queued: the next start folds nothing.
    if let Err(e) = journal.flush().await {
        warn!(error = %e, "the journal could not be flushed at shutdown");
    }
    let head = *journal.head().borrow();
    let mut view = core.view.clone();
    view_after(&mut view, head).await;
    if core.ledger.send(Checkpoint).await.is_err() {
        warn!("no checkpoint at shutdown: the ledger actor is gone");
    }
    if let Err(e) = journal.flush().await {
        warn!(error = %e, "the journal could not be flushed at shutdown");
    }
    core.stop();
    Ok(())
}

/// Stops taking webhooks (503 with `Retry-After`) and waits, at most `deadline`, for the signals in flight to
/// finish. Whatever is still unfinished then was acknowledged and is in the journal: the next start finishes it.
async fn drain(state: &AppState, core: &core::Core, deadline: std::time::Duration) {
    state.draining.close();
    let in_flight = core.admission.in_use();
    info!(
        in_flight,
        deadline_ms = deadline.as_millis() as u64,
        "shutting down: no new webhooks; finishing the signals in flight"
    );
    let until = tokio::time::Instant::now() + deadline;
    // A webhook past the door is answered first (its signal admitted or refused), then the signals finish.
    while (state.draining.inside() > 0 || core.admission.in_use() > 0)
        && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    match core.admission.in_use() {
        0 => info!("every signal in flight finished"),
        left => warn!(
            left,
            "the shutdown deadline passed: the unfinished signals are in the journal and finish after the next start"
        ),
    }
}

/// The venue's brackets as the running configuration carries them, per symbol, to keep across a reload.
fn connected_brackets(
    current: &Config,
) -> std::collections::HashMap<
    sentinel_actors::types::Symbol,
    Arc<[sentinel_actors::portfolio::Bracket]>,
> {
    current
        .symbols
        .iter()
        .map(|s| (s.symbol().clone(), s.margin.brackets.clone()))
        .collect()
}

/// The reloaded configuration as it will run: what may change takes the new values (risk rules and limits, each
/// symbol's settings, sources' secrets and checks); what needs a restart (listeners, workers, TLS, the exchange,
/// the journal, the set of symbols or sources) keeps the running values, with a warning naming each.
fn reload(
    current: &Config,
    mut new: Config,
    brackets: &std::collections::HashMap<
        sentinel_actors::types::Symbol,
        Arc<[sentinel_actors::portfolio::Bracket]>,
    >,
) -> Config {
    let mut needs_restart = Vec::new();
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    if !same(&current.server, &new.server) {
        needs_restart.push("server");
        new.server = current.server.clone();
    }
    if !same(&current.api, &new.api) {
        needs_restart.push("api");
        new.api = current.api.clone();
    }
    if !same(&current.exchange, &new.exchange) {
        needs_restart.push("exchange");
        new.exchange = current.exchange.clone();
    }
    if !same(&current.journal, &new.journal) {
        needs_restart.push("journal");
        new.journal = current.journal.clone();
    }
    if !same(&current.notifications, &new.notifications) {
        needs_restart.push("notifications");
        new.notifications = current.notifications.clone();
    }
    let names = |c: &Config| c.sources.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if names(current) != names(&new) {
        needs_restart.push("sources (added, removed or reordered)");
        new.sources = current.sources.clone();
    }
    let symbols = |c: &Config| {
        c.symbols
            .iter()
            .map(|s| s.symbol().clone())
            .collect::<Vec<_>>()
    };
    if symbols(current) != symbols(&new) {
        needs_restart.push("symbols (added, removed or reordered)");
        new.symbols = current.symbols.clone();
    }
    for symbol in &mut new.symbols {
        if let Some(kept) = brackets.get(symbol.symbol()) {
            symbol.margin.brackets = kept.clone();
        }
    }
    for warning in &new.warnings {
        warn!("{warning}");
    }
    if needs_restart.is_empty() {
        info!("configuration reloaded: risk limits, symbol settings and sources' secrets are in force");
    } else {
        warn!(
            needs_restart = needs_restart.join(", "),
            "configuration reloaded, except what needs a restart (kept as it was)"
        );
    }
    new
}
