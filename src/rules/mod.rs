//! Event rules: `[[rules]]` tables that act on what sources and venues report (funding rates, margin ratios, a risk
//! model's reading, a news score, a price alert) through the same strategy, risk and journal path as signals.
//!
//! An event is journaled (`observed`) before it is acknowledged; the rule runner follows the journal, evaluates each
//! rule's condition on it (`expr`), and acts once per crossing: a rule that fired is disarmed until its `rearm_when`
//! holds (hysteresis; by default, until its condition stops holding), and does not fire again within its cooldown.
//! Each action taken is journaled as `rule_fired` with the observation that triggered it.

mod config;
pub mod expr;
mod run;

use std::collections::HashMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use sentinel_actors::event::{Observation, Offset};
use sentinel_actors::types::{Symbol, Timestamp};

pub use config::{check_config, RawRule};
pub use expr::Condition;
pub use run::{observe_venue, start};

/// One `[[rules]]` table, checked.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// The event type it listens to (`funding_rate`, `risk`, ...).
    pub on: String,
    /// Only events from this source (a `[[sources]]` name, or the venue's name); `None`: any.
    pub source: Option<String>,
    /// Only events about these symbols; empty: any (and events with no symbol).
    pub symbols: Vec<Symbol>,
    /// The symbol to act on (`then.symbol`); `None`: the event's.
    pub symbol: Option<Symbol>,
    pub when: Condition,
    /// Hysteresis: once fired, the rule fires again only after this held; `None`: after `when` stopped holding.
    pub rearm_when: Option<Condition>,
    /// At least this long between two firings for one symbol.
    pub cooldown: Duration,
    /// An event older than this when the rule sees it (after a restart, say) is not acted on.
    pub max_age: Duration,
    pub action: Action,
}

impl Rule {
    /// The symbol the rule acts on for `observation`: its `then.symbol`, else the event's.
    pub fn symbol_for(&self, observation: &Observation) -> Option<Symbol> {
        self.symbol.clone().or_else(|| observation.symbol.clone())
    }
}

/// What a rule does when it fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A signal, as a webhook would send it: `open_long`, `open_short`, `close`, `close_long`, `close_short`,
    /// `reduce` (a close with a `position_size`), `reverse`, `target`, `pause`, `resume`. `payload` holds the
    /// signal's fields besides the symbol.
    Signal {
        name: String,
        payload: Map<String, Value>,
    },
    /// A target position against the funding rate: short when longs pay (the rate is positive), long when shorts
    /// pay, `base_size` for each `per` of the rate's size, at most `max_size`; flat at a zero rate.
    FundingTarget {
        field: String,
        base_size: Decimal,
        per: Decimal,
        max_size: Decimal,
    },
    /// No new entries anywhere (trading state `reducing`); stops, targets and closes still run.
    PauseAll,
    /// Trading state `active` again.
    ResumeAll,
    /// Trading state `reducing` and every open position closed.
    Flatten,
    /// Isolated margin added to the symbol's position on the venue (`POST /fapi/v1/positionMargin` on Binance).
    AddMargin { amount: Decimal },
}

impl Action {
    pub fn name(&self) -> &str {
        match self {
            Action::Signal { name, .. } => name,
            Action::FundingTarget { .. } => "funding_target",
            Action::PauseAll => "pause_all",
            Action::ResumeAll => "resume_all",
            Action::Flatten => "flatten",
            Action::AddMargin { .. } => "add_margin",
        }
    }

    /// Whether it acts on one symbol (the event's, or the rule's `then.symbol`).
    pub fn needs_symbol(&self) -> bool {
        !matches!(self, Action::PauseAll | Action::ResumeAll | Action::Flatten)
    }

    /// The webhook payload of a signal action on `symbol` for `event` (its fields, and the symbol it resolved
    /// to, if it named one); `Err` says why there is none (a funding target whose field is missing, ...).
    pub fn payload(
        &self,
        symbol: &Symbol,
        event: (&Map<String, Value>, Option<&Symbol>),
    ) -> Result<Option<Value>, String> {
        let (fields, event_symbol) = event;
        match self {
            Action::Signal { name, payload } => {
                let mut body = payload.clone();
                // A target is a `market_position`, not an action.
                match name.as_str() {
                    "target" => {}
                    "reduce" => {
                        body.insert("action".into(), json!("close"));
                    }
                    other => {
                        body.insert("action".into(), json!(other));
                    }
                }
                body.insert("symbol".into(), json!(symbol.as_str()));
                // The price of an event about this symbol (a price alert's) is the signal's: it sizes the order and
                // marks the symbol. An event about another symbol, or none, prices nothing.
                if let Some(price) = fields
                    .get("price")
                    .filter(|p| p.is_number() || p.is_string())
                {
                    if event_symbol == Some(symbol) {
                        body.entry("price").or_insert_with(|| price.clone());
                    }
                }
                Ok(Some(Value::Object(body)))
            }
            Action::FundingTarget {
                field,
                base_size,
                per,
                max_size,
            } => {
                let rate = fields
                    .get(field)
                    .and_then(|v| match v {
                        Value::Number(n) => Some(n.to_string()),
                        Value::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .and_then(|t| sentinel_actors::amount::parse_decimal(t.trim()).ok())
                    .ok_or_else(|| format!("the event has no number `{field}`"))?;
                let size = rate
                    .abs()
                    .checked_div(*per)
                    .and_then(|steps| steps.checked_mul(*base_size))
                    .ok_or("the funding target overflowed")?
                    .min(*max_size);
                let side = if rate > Decimal::ZERO {
                    "short"
                } else {
                    "long"
                };
                Ok(Some(if size.is_zero() {
                    json!({"symbol": symbol.as_str(), "market_position": "flat"})
                } else {
                    json!({"symbol": symbol.as_str(), "market_position": side,
                           "market_position_size": size.normalize().to_string()})
                }))
            }
            _ => Ok(None),
        }
    }
}

/// Where a rule stands for one symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Standing {
    armed: bool,
    last_fired: Option<Timestamp>,
}

impl Default for Standing {
    fn default() -> Self {
        Standing {
            armed: true,
            last_fired: None,
        }
    }
}

/// What a rule made of one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub rule: String,
    pub symbol: Option<Symbol>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Act now.
    Fire,
    /// The condition holds, but the rule fired already and has not re-armed (hysteresis).
    Disarmed,
    /// The condition holds, but the rule fired less than its cooldown ago.
    Cooling { until: Timestamp },
    /// The condition does not hold (`re-armed`: and the rule re-armed on this event).
    Quiet { rearmed: bool },
    /// The rule would fire, but the event is older than its `max_age_secs` (reached after a restart): nothing is
    /// done, and the rule stays armed for the next event.
    Stale,
    /// The condition could not be evaluated on this event (a missing field, text where a number belongs).
    Unreadable(String),
}

/// The rules' state: armed or not, and when each last fired, per rule and symbol. Owned by the rule runner; a
/// decision depends only on it, the event and the event's time, so replaying the journal gives the same answers.
#[derive(Debug, Default)]
pub struct Engine {
    /// Per rule name, then per symbol: looked up without allocating, as every event does it for every rule.
    standing: HashMap<String, HashMap<Option<Symbol>, Standing>>,
}

impl Engine {
    /// What each rule listening to `observation` decides, as of `at` (the event's arrival); firing updates the
    /// state, so call it once per event. `too_late(rule)` says the rule may not act on this event any more (it is
    /// older than the rule's `max_age_secs` and was not acted on): a firing is then `Stale` and changes nothing, so
    /// a rule is not left disarmed by an action it never took.
    pub fn decide(
        &mut self,
        rules: &[Rule],
        observation: &Observation,
        at: Timestamp,
        too_late: &dyn Fn(&Rule) -> bool,
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        if !rules.iter().any(|r| listens(r, observation)) {
            return decisions;
        }
        let fields = expr::Fields::new(&observation.fields);
        for rule in rules.iter().filter(|r| listens(r, observation)) {
            let by_symbol = match self.standing.get_mut(&rule.name) {
                Some(by_symbol) => by_symbol,
                None => self.standing.entry(rule.name.clone()).or_default(),
            };
            let standing = match by_symbol.get_mut(&observation.symbol) {
                Some(standing) => standing,
                None => by_symbol.entry(observation.symbol.clone()).or_default(),
            };
            let verdict = judge(rule, standing, &fields, at, || too_late(rule));
            decisions.push(Decision {
                rule: rule.name.clone(),
                symbol: observation.symbol.clone(),
                verdict,
            });
        }
        decisions
    }

    /// Starts a rule's state for `symbol` from its last firing, found in the journal: disarmed, cooling from
    /// `at`. The replay that follows re-arms it if the journal says it should.
    pub fn fired_before(&mut self, rule: &str, symbol: Option<Symbol>, at: Timestamp) {
        let standing = self
            .standing
            .entry(rule.to_string())
            .or_default()
            .entry(symbol)
            .or_default();
        standing.armed = false;
        standing.last_fired = Some(standing.last_fired.map_or(at, |last| last.max(at)));
    }

    /// Forgets the state of rules no longer configured (after a reload).
    pub fn retain(&mut self, rules: &[Rule]) {
        self.standing
            .retain(|name, _| rules.iter().any(|r| &r.name == name));
    }
}

fn listens(rule: &Rule, observation: &Observation) -> bool {
    rule.on == observation.event_type
        && rule
            .source
            .as_ref()
            .is_none_or(|s| *s == observation.source)
        && (rule.symbols.is_empty()
            || observation
                .symbol
                .as_ref()
                .is_some_and(|s| rule.symbols.contains(s)))
}

fn judge(
    rule: &Rule,
    standing: &mut Standing,
    fields: &expr::Fields<'_>,
    at: Timestamp,
    too_late: impl FnOnce() -> bool,
) -> Verdict {
    let holds = match rule.when.holds(fields) {
        Ok(holds) => holds,
        Err(e) => return Verdict::Unreadable(e.to_string()),
    };
    let mut rearmed = false;
    if !standing.armed {
        let rearm = match &rule.rearm_when {
            Some(rearm) => rearm.holds(fields).unwrap_or(false),
            None => !holds,
        };
        if rearm {
            standing.armed = true;
            rearmed = true;
        }
    }
    if !holds {
        return Verdict::Quiet { rearmed };
    }
    if !standing.armed {
        return Verdict::Disarmed;
    }
    if let Some(last) = standing.last_fired {
        let until = Timestamp(last.0.saturating_add(rule.cooldown.as_millis() as i64));
        if at < until {
            return Verdict::Cooling { until };
        }
    }
    if too_late() {
        return Verdict::Stale;
    }
    standing.armed = false;
    standing.last_fired = Some(at);
    Verdict::Fire
}

/// The observation a webhook body makes: its `event` names the type, `symbol` (or `ticker`) the symbol, and every
/// other field (secrets already removed) is there for conditions.
pub fn observation(
    source: &str,
    mut fields: Map<String, Value>,
    symbols: &crate::payload::SymbolMap,
    received_at: Timestamp,
) -> Result<Observation, (&'static str, String)> {
    let event_type = match fields.remove("event") {
        Some(Value::String(t)) if valid_type(t.trim()) => t.trim().to_string(),
        _ => {
            return Err((
                "event",
                "must be the event's type: 1-64 letters, digits, `_`, `-` or `.`".into(),
            ))
        }
    };
    let symbol = match fields.get("symbol").or_else(|| fields.get("ticker")) {
        None | Some(Value::Null) => None,
        Some(Value::String(ticker)) => Some(
            symbols
                .resolve(ticker)
                .map(|(symbol, _)| symbol.clone())
                .ok_or(("symbol", format!("`{ticker}` is not a configured symbol")))?,
        ),
        Some(_) => return Err(("symbol", "must be text".into())),
    };
    Ok(Observation {
        source: source.to_string(),
        event_type,
        symbol,
        received_at,
        fields,
        delivery: None,
    })
}

fn valid_type(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The id of the signal a rule's firing on the event at `trigger` makes for `symbol`: the same on a replay, so the
/// journal refuses a second one.
pub fn signal_id(rule: &str, trigger: Offset, symbol: &Symbol) -> String {
    format!("rule:{rule}:{trigger}:{symbol}")
}

/// `sentinel rules test`: what each rule would make of the event in `body` (a webhook's JSON, with `event`) from
/// `source`, on a fresh start (every rule armed, none cooling), and the signal it would send: nothing is traded.
pub fn explain(config: &crate::Config, source: &str, body: &[u8]) -> Result<Value, String> {
    let venues = config.exchange.event_sources();
    if !config.sources.iter().any(|s| s.name == source) && !venues.contains(&source) {
        return Err(format!(
            "`{source}` is neither a configured source nor a venue publishing events here ({})",
            venues.join(", ")
        ));
    }
    let raw = crate::payload::RawPayload::parse(body).map_err(|e| e.0)?;
    let symbols = crate::payload::SymbolMap::new(&config.symbols);
    let now = Timestamp::now();
    let observation = observation(source, raw.into_fields(), &symbols, now)
        .map_err(|(field, message)| format!("{field}: {message}"))?;
    let mut engine = Engine::default();
    let decisions = engine.decide(&config.rules, &observation, now, &|_| false);
    let listening: Vec<Value> = decisions
        .into_iter()
        .filter_map(|d| {
            let rule = config.rules.iter().find(|r| r.name == d.rule)?;
            let symbol = rule.symbol_for(&observation);
            let mut report = json!({
                "rule": rule.name,
                "when": rule.when.to_string(),
                "reads": rule.when.fields(),
                "action": rule.action.name(),
            });
            let verdict = match &d.verdict {
                Verdict::Fire => "fires",
                Verdict::Quiet { .. } => "quiet",
                Verdict::Unreadable(_) => "unreadable",
                Verdict::Disarmed | Verdict::Cooling { .. } | Verdict::Stale => "held",
            };
            report["verdict"] = json!(verdict);
            if let Verdict::Unreadable(why) = &d.verdict {
                report["why"] = json!(why);
            }
            if d.verdict == Verdict::Fire {
                report["symbol"] = json!(symbol);
                match (&symbol, rule.action.needs_symbol()) {
                    (None, true) => {
                        report["error"] =
                            json!("the event names no symbol and the rule's `then` none")
                    }
                    (Some(symbol), _) => match rule
                        .action
                        .payload(symbol, (&observation.fields, observation.symbol.as_ref()))
                    {
                        Ok(Some(signal)) => report["signal"] = signal,
                        Ok(None) => {}
                        Err(e) => report["error"] = json!(e),
                    },
                    (None, false) => {}
                }
            }
            Some(report)
        })
        .collect();
    Ok(json!({
        "event": {
            "type": observation.event_type,
            "source": observation.source,
            "symbol": observation.symbol,
        },
        "rules": listening,
    }))
}

#[cfg(test)]
mod tests;
