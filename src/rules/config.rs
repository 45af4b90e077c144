//! `[[rules]]` as written, and its checks: every problem with its key path, like the rest of the configuration.

use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Map, Value};

use sentinel_actors::types::Symbol;

use crate::config::raw::DecimalText;
use crate::config::SymbolConfig;

use super::{Action, Condition, Rule};

/// One `[[rules]]` table as written.
#[derive(Debug, Default, Deserialize)]
pub struct RawRule {
    pub name: Option<String>,
    pub on: Option<String>,
    pub source: Option<String>,
    #[serde(default)]
    pub symbols: Vec<String>,
    pub when: Option<String>,
    pub rearm_when: Option<String>,
    pub cooldown_secs: Option<i64>,
    pub max_age_secs: Option<i64>,
    pub then: Option<RawAction>,
}

/// `then = { action = "...", ... }`: the action and its fields.
#[derive(Debug, Default, Deserialize)]
pub struct RawAction {
    pub action: Option<String>,
    /// The symbol to act on when the event names none (or another one).
    pub symbol: Option<String>,
    // Signal fields, as a webhook sends them.
    pub position_size: Option<toml::Value>,
    pub leverage: Option<toml::Value>,
    pub stop_loss: Option<toml::Value>,
    pub take_profit: Option<toml::Value>,
    pub market_position: Option<String>,
    pub market_position_size: Option<toml::Value>,
    // `funding_target`.
    pub field: Option<String>,
    pub base_size: Option<DecimalText>,
    pub per: Option<DecimalText>,
    pub max_size: Option<DecimalText>,
    // `add_margin`.
    pub amount: Option<DecimalText>,
}

const SIGNAL_ACTIONS: [&str; 10] = [
    "open_long",
    "open_short",
    "close",
    "close_long",
    "close_short",
    "reduce",
    "reverse",
    "target",
    "pause",
    "resume",
];

/// The longest rule name: its signals' ids (`rule:<name>:<offset>:<symbol>`) must stay within 64 characters.
const MAX_NAME: usize = 20;

/// Checks every `[[rules]]` table against the configured symbols and source names (`venues` are the names venue
/// events come under: funding rates, marks, positions, margin ratios). `Err` lists each problem as (key path, message).
pub fn check_config(
    raw: Vec<RawRule>,
    configured: &[SymbolConfig],
    sources: &[&str],
    venues: &[&str],
) -> Result<Vec<Rule>, Vec<(String, String)>> {
    let symbols: Vec<Symbol> = configured.iter().map(|s| s.symbol().clone()).collect();
    let symbols = symbols.as_slice();
    let mut problems = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let mut problem = |key: &str, message: String| {
            problems.push((format!("rules[{i}].{key}"), message));
        };
        let name = match raw.name {
            Some(n) if valid_name(&n) => n,
            Some(n) => {
                problem(
                    "name",
                    format!("`{n}`: use 1-{MAX_NAME} letters, digits, `_` or `-`"),
                );
                continue;
            }
            None => {
                problem("name", "is required".into());
                continue;
            }
        };
        if rules.iter().any(|r| r.name == name) {
            problem("name", format!("`{name}` names another rule too"));
        }
        let on = match raw.on {
            Some(on) if !on.trim().is_empty() => on.trim().to_string(),
            _ => {
                problem(
                    "on",
                    "is required: the event type the rule listens to".into(),
                );
                String::new()
            }
        };
        if let Some(source) = &raw.source {
            if !sources.contains(&source.as_str()) && !venues.contains(&source.as_str()) {
                problem(
                    "source",
                    format!(
                        "`{source}` is neither a [[sources]] name nor a venue publishing events here ({})",
                        venues.join(", ")
                    ),
                );
            }
        }
        let mut rule_symbols = Vec::new();
        for (j, s) in raw.symbols.iter().enumerate() {
            match symbols
                .iter()
                .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            {
                Some(symbol) => rule_symbols.push(symbol.clone()),
                None => problem(
                    &format!("symbols[{j}]"),
                    format!("`{s}` is not a configured symbol"),
                ),
            }
        }
        let mut condition = |key: &str, text: Option<String>, required: bool| match text {
            Some(text) => Condition::parse(&text).map_err(|e| problem(key, e)).ok(),
            None if required => {
                problem(
                    key,
                    "is required: the condition, e.g. `funding_rate > 0.0005`".into(),
                );
                None
            }
            None => None,
        };
        let when = condition("when", raw.when, true);
        let rearm_when = condition("rearm_when", raw.rearm_when, false);
        let seconds = |key: &str,
                       value: Option<i64>,
                       default: u64,
                       max: u64,
                       problems: &mut Vec<(String, String)>| {
            match value.map(u64::try_from) {
                None => default,
                Some(Ok(v)) if v <= max => v,
                Some(_) => {
                    problems.push((
                        format!("rules[{i}].{key}"),
                        format!("must be between 0 and {max}"),
                    ));
                    default
                }
            }
        };
        let cooldown = seconds(
            "cooldown_secs",
            raw.cooldown_secs,
            60,
            7 * 86_400,
            &mut problems,
        );
        // At most an hour: a restart replays every event a rule may still act on.
        let max_age = seconds("max_age_secs", raw.max_age_secs, 60, 3_600, &mut problems);
        // The symbol to act on, if `then` names one (checked with the action).
        let then_symbol = raw
            .then
            .as_ref()
            .and_then(|t| t.symbol.as_deref())
            .and_then(|s| {
                symbols
                    .iter()
                    .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            })
            .cloned();
        let action = match raw.then {
            Some(then) => action(i, then, configured, &mut problems),
            None => {
                problems.push((
                    format!("rules[{i}].then"),
                    "is required: `then = { action = \"close\" }`".into(),
                ));
                None
            }
        };
        // Account-wide actions act on trust: a rule that takes them names whom it trusts, so a source that may
        // only send signals cannot halt, flatten or move margin by sending an event.
        if let Some(action) = &action {
            let account_wide = !action.needs_symbol() || matches!(action, Action::AddMargin { .. });
            if account_wide && raw.source.is_none() {
                problems.push((
                    format!("rules[{i}].source"),
                    format!(
                        "is required for `{}`: name the source (or the venue) whose events may do it",
                        action.name()
                    ),
                ));
            }
        }
        if let (Some(when), Some(action)) = (when, action) {
            rules.push(Rule {
                name,
                on,
                source: raw.source,
                symbols: rule_symbols,
                symbol: then_symbol,
                when,
                rearm_when,
                cooldown: Duration::from_secs(cooldown),
                max_age: Duration::from_secs(max_age.max(1)),
                action,
            });
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn action(
    i: usize,
    then: RawAction,
    configured: &[SymbolConfig],
    problems: &mut Vec<(String, String)>,
) -> Option<super::Action> {
    let symbols: Vec<Symbol> = configured.iter().map(|s| s.symbol().clone()).collect();
    let path = |key: &str| format!("rules[{i}].then.{key}");
    let mut problem = |key: &str, message: String| problems.push((path(key), message));
    if let Some(s) = &then.symbol {
        if !symbols
            .iter()
            .any(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
        {
            problem("symbol", format!("`{s}` is not a configured symbol"));
        }
    }
    let Some(name) = then.action.clone() else {
        problem("action", "is required".into());
        return None;
    };
    let decimal = |key: &str,
                   value: Option<&DecimalText>,
                   problem: &mut dyn FnMut(&str, String)|
     -> Option<Decimal> {
        let Some(value) = value else {
            problem(key, "is required".into());
            return None;
        };
        let text = match value.text() {
            Ok(text) => text,
            Err(message) => {
                problem(key, message);
                return None;
            }
        };
        match sentinel_actors::amount::parse_decimal(text.trim()) {
            Ok(d) if d > Decimal::ZERO => Some(d),
            Ok(_) => {
                problem(key, "must be greater than 0".into());
                None
            }
            Err(e) => {
                problem(key, format!("`{text}`: {e}"));
                None
            }
        }
    };
    let signal_fields = [
        ("position_size", &then.position_size),
        ("leverage", &then.leverage),
        ("stop_loss", &then.stop_loss),
        ("take_profit", &then.take_profit),
        ("market_position_size", &then.market_position_size),
    ];
    let other_fields = [
        ("field", then.field.is_some()),
        ("base_size", then.base_size.is_some()),
        ("per", then.per.is_some()),
        ("max_size", then.max_size.is_some()),
        ("amount", then.amount.is_some()),
        ("market_position", then.market_position.is_some()),
    ];
    let refuse_others = |allowed: &[&str], problem: &mut dyn FnMut(&str, String)| {
        for (key, set) in signal_fields
            .iter()
            .map(|(k, v)| (*k, v.is_some()))
            .chain(other_fields)
        {
            if set && !allowed.contains(&key) {
                problem(key, format!("does not apply to `{name}`"));
            }
        }
    };
    match name.as_str() {
        n if SIGNAL_ACTIONS.contains(&n) => {
            let allowed: &[&str] = match n {
                "open_long" | "open_short" | "reverse" => {
                    &["position_size", "leverage", "stop_loss", "take_profit"]
                }
                "close" | "close_long" | "close_short" | "reduce" => &["position_size"],
                "target" => &["market_position", "market_position_size"],
                _ => &[],
            };
            refuse_others(allowed, &mut problem);
            if n == "reduce" && then.position_size.is_none() {
                problem(
                    "position_size",
                    "is required: how much of the position to close (`\"50%\"`)".into(),
                );
            }
            if n == "target" && then.market_position.is_none() {
                problem("market_position", "is required: long, short or flat".into());
            }
            let mut payload = Map::new();
            for (key, value) in signal_fields {
                if let Some(v) = value {
                    match serde_json::to_value(v) {
                        Ok(v) => {
                            payload.insert(key.to_string(), v);
                        }
                        Err(e) => problem(key, e.to_string()),
                    }
                }
            }
            if let Some(p) = &then.market_position {
                payload.insert("market_position".into(), Value::String(p.clone()));
            }
            // The payload is checked as a webhook's would be, on the first symbol.
            if let Some(symbol) = symbols.first() {
                let symbol = then.symbol.as_deref().unwrap_or(symbol.as_str());
                let mut body = payload.clone();
                if n != "target" {
                    let action = if n == "reduce" { "close" } else { n };
                    body.insert("action".into(), Value::String(action.into()));
                }
                body.insert("symbol".into(), Value::String(symbol.into()));
                if let Err(e) = super::run::check_payload(&Value::Object(body), configured) {
                    problem(e.0, e.1);
                }
            }
            Some(Action::Signal { name, payload })
        }
        "funding_target" => {
            refuse_others(&["field", "base_size", "per", "max_size"], &mut problem);
            let base_size = decimal("base_size", then.base_size.as_ref(), &mut problem);
            let per = decimal("per", then.per.as_ref(), &mut problem);
            let max_size = decimal("max_size", then.max_size.as_ref(), &mut problem);
            Some(Action::FundingTarget {
                field: then.field.unwrap_or_else(|| "funding_rate".into()),
                base_size: base_size?,
                per: per?,
                max_size: max_size?,
            })
        }
        "pause_all" | "resume_all" | "flatten" => {
            refuse_others(&[], &mut problem);
            Some(match name.as_str() {
                "pause_all" => Action::PauseAll,
                "resume_all" => Action::ResumeAll,
                _ => Action::Flatten,
            })
        }
        "add_margin" => {
            refuse_others(&["amount"], &mut problem);
            Some(Action::AddMargin {
                amount: decimal("amount", then.amount.as_ref(), &mut problem)?,
            })
        }
        other => {
            problem(
                "action",
                format!(
                    "`{other}` is not an action: use one of {}, funding_target, pause_all, resume_all, flatten, add_margin",
                    SIGNAL_ACTIONS.join(", ")
                ),
            );
            None
        }
    }
}
