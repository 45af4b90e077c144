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

/// How far back a restart looks for observations it may not have acted on (acted-on ones are skipped by their
/// `rule_fired`; stale ones by each rule's `max_age_secs`).
const REPLAY: u64 = 10_000;

/// How long an action waits for room when every signal slot is taken before it counts as failed.
const BUSY_PATIENCE: Duration = Duration::from_secs(2);

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
    let from = Offset(head.0.saturating_sub(REPLAY).max(1));
    let done = match acted_on(log.as_ref(), from, head) {
        Ok(done) => done,
        Err(e) => {
            warn!(error = %e, "rules are off: the journal could not be read");
            return;
        }
    };
    let mut engine = Engine::default();
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
            for decision in engine.decide(&config.rules, observation, observation.received_at) {
                let Some(rule) = config.rules.iter().find(|r| r.name == decision.rule) else {
                    continue;
                };
                match decision.verdict {
                    Verdict::Fire => {}
                    Verdict::Unreadable(why) => {
                        debug!(rule = %rule.name, offset = %stamped.offset, %why, "rule could not read the event");
                        continue;
                    }
                    other => {
                        debug!(rule = %rule.name, offset = %stamped.offset, verdict = ?other, "rule held");
                        continue;
                    }
                }
                // Acted on before a restart: the state is replayed, the action is not.
                if done.get(&rule.name).is_some_and(|d| stamped.offset <= *d) {
                    continue;
                }
                let age = Timestamp::now().0.saturating_sub(observation.received_at.0);
                if age > rule.max_age.as_millis() as i64 {
                    warn!(rule = %rule.name, offset = %stamped.offset, age_ms = age, "rule not acted on: the event is older than its max_age_secs");
                    continue;
                }
                fire(&state, log.as_ref(), rule, &stamped, observation).await;
            }
        }
    }
}

/// The last trigger each rule acted on, from the journal between `from` and `head`.
fn acted_on(
    log: &dyn EventLog,
    from: Offset,
    head: Offset,
) -> Result<HashMap<String, Offset>, LogError> {
    let mut done = HashMap::new();
    let mut next = from;
    while next <= head {
        let events = log.read(next, 1024)?;
        let Some(last) = events.last() else { break };
        next = last.offset.next();
        for stamped in events {
            if let Event::RuleFired { rule, trigger, .. } = stamped.event {
                let entry = done.entry(rule).or_insert(trigger);
                *entry = (*entry).max(trigger);
            }
        }
    }
    Ok(done)
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
    let symbol = rule.symbol.clone().or_else(|| observation.symbol.clone());
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
    let fired = Event::RuleFired {
        rule: rule.name.clone(),
        trigger,
        observed_at: observation.received_at,
        symbol,
        action: rule.action.name().to_string(),
        outcome,
    };
    if let Err(e) = log.append(vec![fired]).durable().await {
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
    let needs_symbol = || {
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
            let answer = commands::flatten_account(state)
                .await
                .map_err(|e| e.to_string())?;
            let signal_ids = answer["closing"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["signal_id"].as_str())
                .filter_map(|id| SignalId::new(id).ok())
                .collect();
            Ok(RuleOutcome::Signals { signal_ids })
        }
        Action::AddMargin { amount } => {
            let symbol = needs_symbol()?;
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
            let symbol = needs_symbol()?;
            let body = rule
                .action
                .payload(symbol, &observation.fields)?
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
                if started.elapsed() < BUSY_PATIENCE =>
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
