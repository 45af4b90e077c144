use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::*;
use crate::config::Config;

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn rule(when: &str, rearm: Option<&str>, cooldown_secs: u64) -> Rule {
    Rule {
        name: "r".into(),
        on: "gauge".into(),
        source: None,
        symbols: Vec::new(),
        symbol: None,
        when: Condition::parse(when).unwrap(),
        rearm_when: rearm.map(|r| Condition::parse(r).unwrap()),
        cooldown: Duration::from_secs(cooldown_secs),
        max_age: Duration::from_secs(60),
        action: Action::PauseAll,
    }
}

fn gauge(value: &str) -> Observation {
    Observation {
        source: "signals".into(),
        event_type: "gauge".into(),
        symbol: None,
        received_at: Timestamp(0),
        fields: json!({ "value": value }).as_object().unwrap().clone(),
        delivery: None,
    }
}

/// The verdicts for `values` at one second apart.
fn run(rule: &Rule, values: &[&str]) -> Vec<&'static str> {
    let mut engine = Engine::default();
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let at = Timestamp(i as i64 * 1000);
            match &engine.decide(std::slice::from_ref(rule), &gauge(v), at, &|_| false)[0].verdict {
                Verdict::Fire => "fire",
                Verdict::Disarmed => "disarmed",
                Verdict::Cooling { .. } => "cooling",
                Verdict::Quiet { .. } => "quiet",
                Verdict::Unreadable(_) => "unreadable",
                Verdict::Stale => "stale",
            }
        })
        .collect()
}

#[test]
fn a_rule_fires_once_per_crossing() {
    let edge = rule("value > 10", None, 0);
    assert_eq!(
        run(&edge, &["11", "12", "9", "11"]),
        ["fire", "disarmed", "quiet", "fire"]
    );
}

#[test]
fn hysteresis_rearms_only_past_the_rearm_level() {
    let band = rule("value > 10", Some("value < 5"), 0);
    assert_eq!(
        run(&band, &["11", "9", "11", "4", "11"]),
        ["fire", "quiet", "disarmed", "quiet", "fire"]
    );
}

#[test]
fn a_cooldown_holds_a_rearmed_rule_until_it_ends() {
    // Cooldown of 3 s, events 1 s apart.
    let cooling = rule("value > 10", None, 3);
    assert_eq!(
        run(&cooling, &["11", "9", "11", "9", "11", "9"]),
        ["fire", "quiet", "cooling", "quiet", "fire", "quiet"]
    );
}

#[test]
fn an_unreadable_event_neither_fires_nor_changes_the_state() {
    let r = rule("value > 10", None, 0);
    assert_eq!(
        run(&r, &["high", "11", "high", "11"]),
        ["unreadable", "fire", "unreadable", "disarmed"]
    );
}

#[test]
fn rules_listen_to_their_type_source_and_symbols() {
    let mut r = rule("value > 10", None, 0);
    r.source = Some("risk-model".into());
    r.symbols = vec![Symbol::new("BTCUSDT").unwrap()];
    let mut event = gauge("11");
    assert!(!listens(&r, &event), "another source");
    event.source = "risk-model".into();
    assert!(!listens(&r, &event), "no symbol");
    event.symbol = Some(Symbol::new("ETHUSDT").unwrap());
    assert!(!listens(&r, &event), "another symbol");
    event.symbol = Some(Symbol::new("BTCUSDT").unwrap());
    assert!(listens(&r, &event));
    event.event_type = "news".into();
    assert!(!listens(&r, &event), "another type");
}

fn funding(rate: &str) -> Result<Option<Value>, String> {
    let action = Action::FundingTarget {
        field: "funding_rate".into(),
        base_size: d("0.01"),
        per: d("0.0005"),
        max_size: d("0.05"),
    };
    let fields: Map<String, Value> = json!({ "funding_rate": rate }).as_object().unwrap().clone();
    action.payload(&Symbol::new("BTCUSDT").unwrap(), (&fields, None))
}

#[test]
fn the_funding_target_leans_against_the_rate_in_proportion_and_within_its_cap() {
    let target = |rate: &str| {
        let body = funding(rate).unwrap().unwrap();
        (
            body["market_position"].as_str().unwrap().to_string(),
            body["market_position_size"].as_str().map(str::to_string),
        )
    };
    // Longs pay at a positive rate: go short, 0.01 for each 0.0005.
    assert_eq!(target("0.00100000"), ("short".into(), Some("0.02".into())));
    assert_eq!(target("-0.00075"), ("long".into(), Some("0.015".into())));
    assert_eq!(
        target("0.03"),
        ("short".into(), Some("0.05".into())),
        "capped"
    );
    assert_eq!(target("0"), ("flat".into(), None));
    assert!(funding("n/a").is_err());
}

#[test]
fn an_event_needs_a_type_and_a_configured_symbol() {
    let config = parse(&sample_config("")).unwrap();
    let symbols = crate::payload::SymbolMap::new(&config.symbols);
    let fields = |v: Value| v.as_object().unwrap().clone();
    let ok = observation(
        "signals",
        fields(json!({"event": "risk", "symbol": "btcusdt", "var": 3})),
        &symbols,
        Timestamp(1),
    )
    .unwrap();
    assert_eq!(ok.event_type, "risk");
    assert_eq!(ok.symbol.unwrap().as_str(), "BTCUSDT");
    assert!(!ok.fields.contains_key("event"), "the type is not a field");
    for (body, field) in [
        (json!({"event": "a b"}), "event"),
        (json!({"event": null}), "event"),
        (json!({"event": "risk", "symbol": "XYZ"}), "symbol"),
    ] {
        assert_eq!(
            observation("s", fields(body), &symbols, Timestamp(1))
                .unwrap_err()
                .0,
            field
        );
    }
}

fn sample_config(rules: &str) -> String {
    format!(
        r#"
[[sources]]
name = "signals"
kind = "hmac"
secret_env = "NOT_SET_IN_TESTS"

[exchange]
kind = "paper"

[[symbols]]
symbol = "BTCUSDT"
{rules}
"#
    )
}

fn problems(rules: &str) -> Vec<String> {
    match parse(&sample_config(rules)) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

fn parse(text: &str) -> Result<Config, Vec<String>> {
    Config::parse(text, std::path::PathBuf::from("."), &|_| None)
        .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

#[test]
fn check_config_names_each_problem_by_its_key_path() {
    let found = problems(
        r#"
[[rules]]
name = "ok"
on = "risk"
when = "var > 5"
then = { action = "close" }

[[rules]]
name = "bad one"
on = "risk"

[[rules]]
name = "typed"
on = "risk"
source = "nowhere"
symbols = ["DOGEUSDT"]
when = "var > \"high\""
rearm_when = "var = 1"
cooldown_secs = -1
colour = "red"
then = { action = "open_long", amount = "5", leverage = 500 }

[[rules]]
name = "margin"
on = "margin_ratio"
when = "margin_ratio > 0.8"
then = { action = "add_margin" }

[[rules]]
name = "what"
on = "x"
when = "x"
then = { action = "explode" }

[[rules]]
name = "flat"
on = "x"
when = "x > 1"
then = { action = "flatten" }
"#,
    );
    for expected in [
        "rules[1].name",
        "rules[2].source",
        "rules[2].symbols[0]",
        "rules[2].when",
        "rules[2].rearm_when",
        "rules[2].cooldown_secs",
        "rules[2].colour",
        "rules[2].then.amount",
        "rules[2].then.leverage",
        "rules[3].then.amount",
        "rules[5].source",
        "rules[4].then.action",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(&format!("{expected}:"))),
            "no problem at {expected}: {found:#?}"
        );
    }
    assert!(
        !found.iter().any(|p| p.starts_with("rules[0]")),
        "{found:#?}"
    );
}

#[test]
fn a_stale_event_leaves_the_rule_armed_and_a_seeded_rule_starts_disarmed() {
    let r = rule("value > 10", None, 0);
    let rules = std::slice::from_ref(&r);
    let mut engine = Engine::default();
    let verdict = |engine: &mut Engine, v: &str, late: bool| {
        engine.decide(rules, &gauge(v), Timestamp(0), &|_| late)[0]
            .verdict
            .clone()
    };
    assert_eq!(verdict(&mut engine, "11", true), Verdict::Stale);
    assert_eq!(
        verdict(&mut engine, "11", false),
        Verdict::Fire,
        "still armed"
    );

    let mut seeded = Engine::default();
    seeded.fired_before("r", None, Timestamp(0));
    assert_eq!(verdict(&mut seeded, "11", false), Verdict::Disarmed);
    assert!(matches!(
        verdict(&mut seeded, "9", false),
        Verdict::Quiet { rearmed: true }
    ));
    assert_eq!(verdict(&mut seeded, "11", false), Verdict::Fire);
}

#[test]
fn a_webhook_source_cannot_pass_for_the_venue() {
    let text = sample_config("").replace("name = \"signals\"", "name = \"binance-futures\"");
    let found = parse(&text).unwrap_err();
    assert!(
        found.iter().any(|p| p.starts_with("sources[0].name:")),
        "{found:#?}"
    );
}
