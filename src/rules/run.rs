//! The rule runner: follows the journal, decides on each observation, acts through the same paths as webhooks and
//! operator commands, and journals each action as `rule_fired`.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use sentinel_actors::event::{Delivery, Event, Observation, Offset, RuleOutcome, Stamped};
use sentinel_actors::log::{tail, EventLog, LogError};
use sentinel_actors::messages::{Admit, AdmitError};
use sentinel_actors::risk::TradingState;
use sentinel_actors::types::{SignalId, Symbol, Timestamp};
use sentinel_actors::venue::VenueError;

use super::{Action, Engine, Rule, Verdict};
use crate::http::{commands, AppState};
use crate::payload::{normalize, Context, RawPayload, SymbolMap};

/// How far back a restart replays the journal at least, to rebuild the rules' armed states (events a rule may still
/// act on, within its `max_age_secs`, are replayed however many there are).
const REPLAY: u64 = 10_000;

/// How long an action waits at most for room when every signal slot is taken before it counts as failed (less if
/// its event's `max_age_secs` ends first): a protective close must not be dropped by a burst of signals.
const BUSY_PATIENCE: Duration = Duration::from_secs(30);

/// Starts the rule runner on the current runtime, supervised: a runner that panics is started again, and rebuilds
/// its state by replaying the journal (decisions depend only on the log). It stops when the journal does, or when
/// the returned handle is aborted.
pub fn start(state: web::Data<AppState>, log: Arc<dyn EventLog>) -> Running {
    let supervisor = actix_web::rt::spawn(async move {
        loop {
            let runner = Running(actix_web::rt::spawn(follow(state.clone(), log.clone())));
            match runner.join().await {
                Err(e) if e.is_panic() => {
                    tracing::error!("the rule runner panicked; starting it again from the journal");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => return,
            }
        }
    });
    Running(supervisor)
}

/// A running task, aborted when dropped: aborting the supervisor aborts the runner it holds.
pub struct Running(tokio::task::JoinHandle<()>);

impl Running {
    async fn join(mut self) -> Result<(), tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn follow(state: web::Data<AppState>, log: Arc<dyn EventLog>) {
    let head = *log.head().borrow();
    let config = state.config();
    // What the rules did before: each rule's last trigger (not acted on again) and each rule and symbol's last
    // firing (the state starts disarmed and cooling from it, however far back it was).
    let firings = match state.reader.rule_firings() {
        Ok(firings) => firings,
        Err(e) => {
            warn!(error = %e, "rules are off: the journal could not be read");
            return;
        }
    };
    let mut engine = Engine::default();
    let mut done: HashMap<String, Offset> = HashMap::new();
    for firing in firings {
        engine.fired_before(&firing.rule, firing.symbol, firing.observed_at);
        let last = done.entry(firing.rule).or_insert(firing.trigger);
        *last = (*last).max(firing.trigger);
    }
    // The replay: every event a rule may still act on (within the longest `max_age_secs`), and at least the last
    // `REPLAY` entries, for the rules' state.
    let longest = config
        .rules
        .iter()
        .map(|r| r.max_age)
        .max()
        .unwrap_or_default();
    let since = Timestamp(
        Timestamp::now()
            .0
            .saturating_sub(longest.as_millis() as i64),
    );
    let from = match state.reader.first_observed_since(since) {
        Ok(first) => first.map_or(head.next(), Offset),
        Err(e) => {
            warn!(error = %e, "rules are off: the journal could not be read");
            return;
        }
    }
    .min(Offset(head.0.saturating_sub(REPLAY).max(1)));
    drop(config);
    let mut batches = pin!(tail(log.clone(), from, 256));
    while let Some(batch) = batches.next().await {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                warn!(error = %e, "rules stopped following the journal");
                return;
            }
        };
        let config = state.config();
        engine.retain(&config.rules);
        for stamped in batch {
            let Event::Observed { observation } = &stamped.event else {
                continue;
            };
            let acted = |rule: &Rule| done.get(&rule.name).is_some_and(|d| stamped.offset <= *d);
            let age = Timestamp::now().0.saturating_sub(observation.received_at.0);
            let too_late = |rule: &Rule| !acted(rule) && age > rule.max_age.as_millis() as i64;
            let decisions = engine.decide(
                &config.rules,
                observation,
                observation.received_at,
                &too_late,
            );
            for decision in decisions {
                let Some(rule) = config.rules.iter().find(|r| r.name == decision.rule) else {
                    continue;
                };
                match decision.verdict {
                    // Acted on before a restart: the state is replayed, the action is not.
                    Verdict::Fire if acted(rule) => {}
                    Verdict::Fire => fire(&state, log.as_ref(), rule, &stamped, observation).await,
                    Verdict::Stale => {
                        warn!(rule = %rule.name, offset = %stamped.offset, age_ms = age, "rule not acted on: the event is older than its max_age_secs")
                    }
                    Verdict::Unreadable(why) => {
                        debug!(rule = %rule.name, offset = %stamped.offset, %why, "rule could not read the event")
                    }
                    other => {
                        debug!(rule = %rule.name, offset = %stamped.offset, verdict = ?other, "rule held")
                    }
                }
            }
        }
    }
}

/// Takes the rule's action on the observation at `stamped` and journals what came of it.
async fn fire(
    state: &AppState,
    log: &dyn EventLog,
    rule: &Rule,
    stamped: &Stamped,
    observation: &Observation,
) {
    let trigger = stamped.offset;
    let symbol = rule.symbol_for(observation);
    let journal = |outcome: RuleOutcome| {
        log.append(vec![Event::RuleFired {
            rule: rule.name.clone(),
            trigger,
            observed_at: observation.received_at,
            symbol: symbol.clone(),
            action: rule.action.name().to_string(),
            outcome,
        }])
    };
    // A venue call with no idempotency key (Binance's `positionMargin`) is journaled before it is made: a replay
    // after a crash then finds the trigger acted on and does not send it again (margin added twice could be worse
    // than none). Signals need no such record: their ids make a repeat a duplicate.
    if let Action::AddMargin { amount } = &rule.action {
        if let Err(e) = journal(RuleOutcome::MarginRequested { amount: *amount })
            .durable()
            .await
        {
            warn!(rule = %rule.name, error = %e, "margin not requested: the request could not be journaled first");
            return;
        }
    }
    let outcome = match act(state, rule, trigger, observation, symbol.as_ref()).await {
        Ok(outcome) => outcome,
        Err(error) => RuleOutcome::Failed { error },
    };
    let latency_ms = Timestamp::now().0.saturating_sub(observation.received_at.0);
    match &outcome {
        RuleOutcome::Failed { error } => {
            warn!(rule = %rule.name, %trigger, action = rule.action.name(), %error, "rule fired; its action failed")
        }
        _ => {
            info!(rule = %rule.name, %trigger, symbol = ?symbol.as_ref().map(Symbol::as_str), action = rule.action.name(), latency_ms, "rule fired")
        }
    }
    if let Err(e) = journal(outcome).durable().await {
        warn!(rule = %rule.name, error = %e, "a rule's decision could not be journaled");
    }
}

async fn act(
    state: &AppState,
    rule: &Rule,
    trigger: Offset,
    observation: &Observation,
    symbol: Option<&Symbol>,
) -> Result<RuleOutcome, String> {
    let symbol_or_fail = || {
        symbol.ok_or_else(|| {
            format!(
                "the event names no symbol and the rule's `then` none: `{}` needs one",
                rule.action.name()
            )
        })
    };
    match &rule.action {
        Action::PauseAll | Action::ResumeAll => {
            let to = if rule.action == Action::PauseAll {
                TradingState::Reducing
            } else {
                TradingState::Active
            };
            commands::set_state(state, to)
                .await
                .map_err(|e| e.to_string())?;
            Ok(RuleOutcome::TradingState { state: to })
        }
        Action::Flatten => {
            let signal_ids = commands::flatten_account(state)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            Ok(RuleOutcome::Signals { signal_ids })
        }
        Action::AddMargin { amount } => {
            let symbol = symbol_or_fail()?;
            let added = state
                .venue
                .add_margin(symbol.clone(), *amount)
                .await
                .map_err(|e| match e {
                    // Not an order: the venue's reason says it all.
                    VenueError::Rejected { reason } => reason.to_string(),
                    other => other.to_string(),
                })?;
            Ok(RuleOutcome::MarginAdded { amount: added })
        }
        Action::Signal { .. } | Action::FundingTarget { .. } => {
            let symbol = symbol_or_fail()?;
            let body = rule
                .action
                .payload(symbol, (&observation.fields, observation.symbol.as_ref()))?
                .ok_or("no signal for this action")?;
            let id = SignalId::new(&super::signal_id(&rule.name, trigger, symbol))
                .map_err(|e| e.to_string())?;
            admit(state, rule, trigger, observation, &body, id).await
        }
    }
}

/// Admits the rule's signal like a webhook's: journaled with the event that triggered it, then handed to the
/// symbol's strategy. A replay's copy is refused by its id and counts as done.
async fn admit(
    state: &AppState,
    rule: &Rule,
    trigger: Offset,
    observation: &Observation,
    body: &Value,
    id: SignalId,
) -> Result<RuleOutcome, String> {
    let raw = RawPayload::parse(body.to_string().as_bytes()).map_err(|e| e.0)?;
    let source = format!("rule:{}", rule.name);
    let signal = normalize(
        &raw,
        &Context {
            source: &source,
            symbols: &state.symbols,
            signal_id: id.clone(),
            // The signal's clock starts when the event arrived: its latency is the rule's, end to end.
            received_at: observation.received_at,
        },
    )
    .map_err(|e| e.to_string())?;
    let delivery = Delivery {
        keys: String::new(),
        payload: json!({
            "rule": rule.name,
            "trigger": trigger,
            "event": {
                "type": observation.event_type,
                "source": observation.source,
                "symbol": observation.symbol,
                "fields": observation.fields,
            },
            "signal": body,
        })
        .to_string(),
    };
    let started = Instant::now();
    loop {
        let admit = Admit {
            signal: signal.clone(),
            delivery: delivery.clone(),
            arrived: Instant::now(),
        };
        let stored = match state.ingress.send(admit).await {
            Ok(Ok(receipt)) => receipt.durable().await.map_err(AdmitError::Log),
            Ok(Err(refused)) => Err(refused),
            Err(e) => return Err(format!("the ingress is unavailable: {e}")),
        };
        match stored {
            Ok(_) | Err(AdmitError::Log(LogError::DuplicateSignal)) => {
                return Ok(RuleOutcome::Signals {
                    signal_ids: vec![id],
                })
            }
            Err(AdmitError::Busy { .. } | AdmitError::Log(LogError::Full))
                if started.elapsed() < BUSY_PATIENCE.min(rule.max_age) =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Checks a rule's signal payload as a webhook's would be checked: `Err` is (field, message).
pub(super) fn check_payload(
    body: &Value,
    symbols: &[crate::config::SymbolConfig],
) -> Result<(), (&'static str, String)> {
    let raw = RawPayload::parse(body.to_string().as_bytes()).map_err(|e| ("then", e.0))?;
    let map = SymbolMap::new(symbols);
    normalize(
        &raw,
        &Context {
            source: "rule",
            symbols: &map,
            signal_id: SignalId::new("rule:check").expect("a valid id"),
            received_at: Timestamp::now(),
        },
    )
    .map(|_| ())
    .map_err(|e| (e.field, e.message))
}

/// Appends what the venue reports (funding rates, marks, positions, margin ratios) to the journal as
/// observations, in order, until the venue stops reporting.
pub async fn observe_venue(mut observations: mpsc::Receiver<Observation>, log: Arc<dyn EventLog>) {
    while let Some(observation) = observations.recv().await {
        // One at a time: while the disk is slow the venue's bounded channel fills and drops (counted there), and
        // nothing else grows.
        if let Err(e) = log
            .append(vec![Event::Observed { observation }])
            .durable()
            .await
        {
            warn!(error = %e, "a venue event could not be journaled");
        }
    }
}
