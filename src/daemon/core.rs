//! The actor graph: the ledger folded from the log, then the ledger, exchange, risk, strategy and ingress actors, and
//! the unfinished signals handed back to their strategies. A restart is this same start: consumers resume from the
//! log.

use std::sync::Arc;
use std::time::Instant;

use actix::{Addr, Arbiter, Supervisor};
use anyhow::Context as _;
use sentinel_actors::exchange::ExchangeActor;
use sentinel_actors::ingress::{Admission, IngressActor};
use sentinel_actors::latency::Latencies;
use sentinel_actors::ledger::Ledger;
use sentinel_actors::ledger_actor::{LedgerActor, ViewRx};
use sentinel_actors::log::{Clock, EventLog, Receipt};
use sentinel_actors::messages::{Reconfigure, Recovered, SignalReceived};
use sentinel_actors::risk::RiskEngine;
use sentinel_actors::risk_actor::RiskActor;
use sentinel_actors::router::Strategies;
use sentinel_actors::strategy::{Downstream, StrategyBook};
use sentinel_actors::venue::ExecutionVenue;
use tracing::{info, warn};

use crate::config::Config;

/// Events between two checkpoints: bounds what a restart folds (50,000 events fold in well under a second), while a
/// checkpoint, the whole ledger as JSON with up to `max_pending_signals` unfinished signals in it, stays rare under
/// load (at 10,000, one was written every half second at full throughput).
const CHECKPOINT_EVERY: u64 = 50_000;
/// Events read per batch while folding at start-up.
const FOLD_BATCH: usize = 4096;

/// The running actors, and what the HTTP edge reads of them.
pub struct Core {
    pub ingress: Addr<IngressActor>,
    pub risk: Addr<RiskActor>,
    pub ledger: Addr<LedgerActor>,
    pub view: ViewRx,
    pub admission: Admission,
    /// The venue, for the API's account view.
    pub venue: Arc<dyn ExecutionVenue>,
    /// The strategy actors, for a configuration reload.
    pub strategies: Strategies,
    arbiter: Arbiter,
}

impl Core {
    /// Hands a reloaded configuration's risk rules, account limits and symbol settings to the actors, waiting for
    /// room in their bounded mailboxes. Symbols that were added or removed need a restart; they are the caller's to
    /// report.
    pub async fn reconfigure(&self, config: &Config) {
        let rules = config
            .symbols
            .iter()
            .map(|s| (s.symbol().clone(), s.rules.clone()))
            .collect();
        let reconfigured = self.risk.send(Reconfigure {
            rules,
            limits: config.risk.limits.clone(),
        });
        if reconfigured.await.is_err() {
            warn!("the risk actor did not take the reload");
        }
        for symbol in &config.symbols {
            if !self.strategies.update(symbol.settings.clone()).await {
                warn!(symbol = %symbol.symbol(), "the symbol's strategy did not take the reload");
            }
        }
    }
}

impl Core {
    pub fn stop(self) {
        self.arbiter.stop();
    }
}

/// Folds the log from its last checkpoint to its head.
pub fn fold(log: &dyn EventLog, config: &Config) -> anyhow::Result<Ledger> {
    let mut ledger = match log.last_checkpoint()? {
        Some((_, state)) => {
            Ledger::from_checkpoint(state).context("the journal's checkpoint is unreadable")?
        }
        None => Ledger::new(config.exchange.starting_balance()),
    };
    catch_up(log, &mut ledger)?;
    Ok(ledger)
}

/// Folds what the log holds past `ledger.upto`.
pub fn catch_up(log: &dyn EventLog, ledger: &mut Ledger) -> anyhow::Result<()> {
    loop {
        let events = log.read(ledger.upto.next(), FOLD_BATCH)?;
        if events.is_empty() {
            return Ok(());
        }
        for stamped in &events {
            ledger.apply(stamped);
        }
    }
}

/// Starts the actors on `ledger`, the log folded up to its head. Must be called inside an actix `System`.
pub fn start(
    config: &Config,
    ledger: Ledger,
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    latencies: Arc<Latencies>,
    venue: Arc<dyn ExecutionVenue>,
) -> Core {
    let started = Instant::now();
    let venue_name = venue.name();
    let venue_handle = venue.clone();
    // One thread for the actors, off the HTTP workers; the venue's calls and the log's writes are asynchronous, so
    // nothing here blocks it.
    let arbiter = Arbiter::new();
    let on = arbiter.handle();

    let (ledger_actor, view) = LedgerActor::new(ledger.clone(), log.clone(), CHECKPOINT_EVERY);
    let ledger_addr = Supervisor::start_in_arbiter(&on, move |_| ledger_actor);
    let exchange = {
        let (log, clock, view) = (log.clone(), clock.clone(), view.clone());
        Supervisor::start_in_arbiter(&on, move |_| {
            ExchangeActor::new(venue, log, clock).with_view(view)
        })
    };
    let risk = {
        let rules = config
            .symbols
            .iter()
            .map(|s| (s.symbol().clone(), s.rules.clone()))
            .collect();
        // A kill switch set before the restart stays on.
        let state = ledger.trading_state.unwrap_or(config.risk.trading_state);
        let engine = RiskEngine::new(rules, state);
        let (view, exchange, log) = (view.clone(), exchange.clone().recipient(), log.clone());
        let (limits, clock, marks) = (
            config.risk.limits.clone(),
            clock.clone(),
            venue_handle.marks(),
        );
        Supervisor::start_in_arbiter(&on, move |_| {
            RiskActor::new(engine, view, exchange, log).with_limits(limits, clock, marks)
        })
    };
    {
        let follow = sentinel_actors::resting::follow(
            view.clone(),
            config.risk.trading_state,
            exchange.clone().recipient(),
            clock.clone(),
        );
        on.spawn(follow);
    }
    let admission = Admission::new(config.server.max_pending_signals);
    let books = config
        .symbols
        .iter()
        .map(|s| {
            let paused = ledger.paused.get(s.symbol()).copied().unwrap_or(false);
            StrategyBook::new(s.settings.clone()).with_paused(paused)
        })
        .collect();
    let downstream = Downstream {
        risk: risk.clone().recipient(),
        prices: exchange.clone().recipient(),
        fills: exchange.clone().recipient(),
        exits: exchange.clone().recipient(),
        log: log.clone(),
        latencies: latencies.clone(),
        marks: venue_handle.marks(),
    };
    // A strategy's mailbox holds every signal the ingress may admit, and some room for the recovered ones.
    let mailbox = config.server.max_pending_signals + 16;
    let strategies = Strategies::start(&on, books, view.clone(), downstream, mailbox);

    // Acknowledged but unfinished signals first, in log order, before any new webhook is taken.
    let mut recovered = 0usize;
    for pending in ledger.pending() {
        let msg = SignalReceived {
            signal: pending.signal.clone(),
            accepted: Receipt::durable_at(pending.offset),
            admission: admission.try_take(),
            recovered: Some(Recovered {
                decided: pending.decided.clone(),
                fills: pending.fills.clone(),
            }),
            arrived: None,
        };
        if strategies.recover(msg) {
            recovered += 1;
        } else {
            warn!(signal_id = %pending.signal.id, symbol = %pending.signal.symbol,
                  "an unfinished signal's symbol is no longer configured; it stays unfinished");
        }
    }
    let ingress = {
        let (log, admission, strategies) = (log, admission.clone(), strategies.clone());
        Supervisor::start_in_arbiter(&on, move |_| IngressActor::new(log, strategies, admission))
    };
    info!(
        upto = %ledger.upto,
        recovered,
        venue = venue_name,
        took_ms = started.elapsed().as_millis() as u64,
        "actors started from the log"
    );
    Core {
        ingress,
        risk,
        ledger: ledger_addr,
        view,
        admission,
        venue: venue_handle,
        strategies,
        arbiter,
    }
}
