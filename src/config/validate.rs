//! One pass over the raw configuration that collects every problem, each with its key path.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use rust_decimal::Decimal;
use sentinel_actors::paper::PaperCosts;
use sentinel_actors::risk::{SymbolRules, TradingState};
use sentinel_actors::signal::{Action, ExitLevel, SizeSpec};
use sentinel_actors::strategy::SymbolSettings;
use sentinel_actors::types::{Leverage, Symbol};

use super::raw::{DecimalText, RawConfig, RawExchange, RawSource, RawSymbol};
use super::{
    Config, ExchangeConfig, RiskConfig, ServerConfig, SourceAuth, SourceConfig, SymbolConfig,
};
use crate::payload::{parse_exit_level, parse_size};
use crate::secret::{self, Secret};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, as a key path: `symbols[2].max_leverage`.
    pub path: String,
    pub message: String,
}

impl Problem {
    pub(super) fn syntax(error: impl fmt::Display) -> Problem {
        Problem {
            path: "(file)".into(),
            message: error.to_string().trim().replace('\n', " "),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const MAX_SOURCE_NAME: usize = 64;

/// Collects problems as the raw config is walked.
struct Checker<'a> {
    problems: Vec<Problem>,
    warnings: Vec<String>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Checker<'_> {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn required<T>(&mut self, path: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.problem(path, "is required");
        }
        value
    }

    fn decimal(
        &mut self,
        path: &str,
        value: Option<&DecimalText>,
        default: &str,
        check: impl Fn(Decimal) -> Result<(), String>,
    ) -> Decimal {
        let text = match value.map(DecimalText::text) {
            None => return Decimal::from_str(default).expect("defaults parse"),
            Some(Err(message)) => {
                self.problem(path, message);
                return Decimal::ZERO;
            }
            Some(Ok(text)) => text,
        };
        match Decimal::from_str(text.trim()) {
            Ok(value) => {
                if let Err(message) = check(value) {
                    self.problem(path, message);
                }
                value
            }
            Err(_) => {
                self.problem(path, format!("`{text}` is not a number"));
                Decimal::ZERO
            }
        }
    }

    fn leverage(&mut self, path: &str, value: Option<i64>, default: u32) -> Leverage {
        let value = value.unwrap_or(i64::from(default));
        match u32::try_from(value)
            .map_err(|_| ())
            .and_then(|v| Leverage::new(v).map_err(|_| ()))
        {
            Ok(leverage) => leverage,
            Err(()) => {
                self.problem(
                    path,
                    format!("must be between 1 and {}, not {value}", Leverage::MAX),
                );
                Leverage::ONE
            }
        }
    }

    /// A secret named by an environment variable; with the paper exchange a missing one falls back to `demo`.
    fn secret(&mut self, path: &str, env_name: Option<&String>, demo: &str, paper: bool) -> Secret {
        let Some(env_name) = env_name else {
            self.problem(
                path,
                "is required: name the environment variable that holds the secret",
            );
            return Secret::new(Vec::new());
        };
        match (self.env)(env_name).filter(|v| !v.is_empty()) {
            Some(value) if paper || !secret::is_demo(value.as_bytes()) => Secret::new(value),
            Some(_) => {
                self.problem(path, format!("{env_name} holds a demo secret; set a real one before trading on a real exchange"));
                Secret::new(Vec::new())
            }
            None if paper => {
                self.warnings.push(format!(
                    "{env_name} is not set: {path} uses the PUBLIC DEMO secret `{demo}`. Anyone who reads the docs can send \
                     signals. Fine for paper trading on this machine only; set {env_name} before exposing the port."
                ));
                Secret::new(demo)
            }
            None => {
                self.problem(
                    path,
                    format!("{env_name} is not set: a real exchange needs a real secret"),
                );
                Secret::new(Vec::new())
            }
        }
    }
}

fn positive(value: Decimal) -> Result<(), String> {
    (value > Decimal::ZERO)
        .then_some(())
        .ok_or_else(|| "must be greater than 0".to_string())
}

fn fraction(value: Decimal) -> Result<(), String> {
    (value >= Decimal::ZERO && value < Decimal::ONE)
        .then_some(())
        .ok_or_else(|| "must be a fraction from 0 up to 1 (0.0004 = 0.04 %)".to_string())
}

pub(super) fn validate(
    raw: RawConfig,
    unknown: Vec<String>,
    base_dir: PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let mut c = Checker {
        problems: Vec::new(),
        warnings: Vec::new(),
        env,
    };
    for path in unknown {
        c.problem(
            path,
            "is not a known key (check the spelling against config.toml)",
        );
    }

    let listen_text = raw.server.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen = SocketAddr::from_str(&listen_text).unwrap_or_else(|_| {
        c.problem(
            "server.listen",
            format!("`{listen_text}` is not an address like 127.0.0.1:8080"),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let workers = match raw.server.workers {
        None => 2,
        Some(n @ 1..=64) => n as usize,
        Some(n) => {
            c.problem(
                "server.workers",
                format!("must be between 1 and 64, not {n}"),
            );
            1
        }
    };

    let exchange = exchange(&mut c, raw.exchange);
    let paper = exchange.is_paper();

    let mut names = HashSet::new();
    let sources = raw
        .sources
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| source(&mut c, i, s, paper, &mut names))
        .collect::<Vec<_>>();
    if sources.is_empty() {
        c.problem(
            "sources",
            "configure at least one [[sources]] table, or no webhook can be accepted",
        );
    }

    let default_notional = c.decimal(
        "risk.max_position_notional",
        raw.risk.max_position_notional.as_ref(),
        "100000",
        positive,
    );
    let trading_state = match raw.risk.trading_state.as_deref() {
        None | Some("active") => TradingState::Active,
        Some("reducing") => TradingState::Reducing,
        Some("halted") => TradingState::Halted,
        Some(other) => {
            c.problem(
                "risk.trading_state",
                format!("`{other}` is not one of active, reducing, halted"),
            );
            TradingState::Active
        }
    };

    let mut seen = HashSet::new();
    let symbols = raw
        .symbols
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| symbol(&mut c, i, s, default_notional, &mut seen))
        .collect::<Vec<_>>();
    if symbols.is_empty() {
        c.problem("symbols", "configure at least one [[symbols]] table");
    }

    if c.problems.is_empty() {
        Ok(Config {
            server: ServerConfig { listen, workers },
            sources,
            exchange,
            risk: RiskConfig { trading_state },
            symbols,
            warnings: c.warnings,
            base_dir,
        })
    } else {
        Err(c.problems)
    }
}

fn exchange(c: &mut Checker, raw: Option<RawExchange>) -> ExchangeConfig {
    let raw = raw.unwrap_or(RawExchange {
        kind: None,
        starting_balance: None,
        fee_rate: None,
        slippage: None,
    });
    match raw.kind.as_deref() {
        None | Some("paper") => {}
        Some(other) => c.problem(
            "exchange.kind",
            format!("`{other}` is not supported yet; the only exchange is `paper`"),
        ),
    }
    ExchangeConfig::Paper {
        starting_balance: c.decimal(
            "exchange.starting_balance",
            raw.starting_balance.as_ref(),
            "10000",
            positive,
        ),
        costs: PaperCosts {
            fee_rate: c.decimal(
                "exchange.fee_rate",
                raw.fee_rate.as_ref(),
                "0.0004",
                fraction,
            ),
            slippage: c.decimal(
                "exchange.slippage",
                raw.slippage.as_ref(),
                "0.0005",
                fraction,
            ),
        },
    }
}

fn source(
    c: &mut Checker,
    i: usize,
    raw: RawSource,
    paper: bool,
    names: &mut HashSet<String>,
) -> Option<SourceConfig> {
    let at = |key: &str| format!("sources[{i}].{key}");
    let name = c.required(&at("name"), raw.name)?;
    let valid_name = !name.is_empty()
        && name.len() <= MAX_SOURCE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        c.problem(at("name"), format!("`{name}` must be 1-{MAX_SOURCE_NAME} letters, digits, `-` or `_` (it is part of the URL)"));
    }
    if !names.insert(name.clone()) {
        c.problem(at("name"), format!("`{name}` is used by another source"));
    }
    let kind = c.required(&at("kind"), raw.kind)?;
    let auth = match kind.as_str() {
        "tradingview" => {
            if raw.secret_env.is_some() {
                c.problem(at("secret_env"), "tradingview sources use passphrase_env");
            }
            SourceAuth::TradingView {
                passphrase: c.secret(
                    &at("passphrase_env"),
                    raw.passphrase_env.as_ref(),
                    secret::DEMO_TRADINGVIEW_PASSPHRASE,
                    paper,
                ),
            }
        }
        "hmac" => {
            if raw.passphrase_env.is_some() {
                c.problem(at("passphrase_env"), "hmac sources use secret_env");
            }
            SourceAuth::Hmac {
                secret: c.secret(
                    &at("secret_env"),
                    raw.secret_env.as_ref(),
                    secret::DEMO_SIGNALS_SECRET,
                    paper,
                ),
            }
        }
        other => {
            c.problem(
                at("kind"),
                format!("`{other}` is not one of tradingview, hmac"),
            );
            return None;
        }
    };
    Some(SourceConfig { name, auth })
}

fn symbol(
    c: &mut Checker,
    i: usize,
    raw: RawSymbol,
    default_notional: Decimal,
    seen: &mut HashSet<String>,
) -> Option<SymbolConfig> {
    let at = |key: &str| format!("symbols[{i}].{key}");
    let name = c.required(&at("symbol"), raw.symbol)?;
    let symbol = match Symbol::new(&name) {
        Ok(symbol) => symbol,
        Err(e) => {
            c.problem(at("symbol"), e.to_string());
            return None;
        }
    };
    for alias in std::iter::once(&name).chain(&raw.aliases) {
        if !seen.insert(alias.to_ascii_uppercase()) {
            c.problem(at("symbol"), format!("`{alias}` names two symbols"));
        }
    }
    let quote_currency = raw
        .quote_currency
        .unwrap_or_else(|| "USDT".into())
        .to_ascii_uppercase();
    let default_size = match raw.default_size.as_ref().map(DecimalText::text) {
        None => SizeSpec::EquityPercent(Decimal::ONE),
        Some(Err(message)) => {
            c.problem(at("default_size"), message);
            SizeSpec::EquityPercent(Decimal::ONE)
        }
        Some(Ok(text)) => parse_size(&text, &quote_currency).unwrap_or_else(|message| {
            c.problem(at("default_size"), message);
            SizeSpec::EquityPercent(Decimal::ONE)
        }),
    };
    let max_leverage = c.leverage(&at("max_leverage"), raw.max_leverage, 20);
    let default_leverage = c.leverage(&at("default_leverage"), raw.default_leverage, 1);
    if default_leverage > max_leverage {
        c.problem(
            at("default_leverage"),
            format!("{default_leverage} is above max_leverage {max_leverage}"),
        );
    }
    let mut exit = |key: &str, value: Option<DecimalText>| -> Option<ExitLevel> {
        let text = match value?.text() {
            Ok(text) => text,
            Err(message) => {
                c.problem(at(key), message);
                return None;
            }
        };
        parse_exit_level(&text)
            .map_err(|message| c.problem(at(key), message))
            .ok()
    };
    let default_stop_loss = exit("stop_loss", raw.stop_loss);
    let default_take_profit = exit("take_profit", raw.take_profit);
    let allowed_actions = match raw.allowed_actions {
        None => Action::ALL.into_iter().collect(),
        Some(names) => names
            .iter()
            .enumerate()
            .filter_map(|(j, name)| {
                Action::parse(name).or_else(|| {
                    let all = Action::ALL.map(Action::as_str).join(", ");
                    c.problem(
                        at(&format!("allowed_actions[{j}]")),
                        format!("`{name}` is not one of {all}"),
                    );
                    None
                })
            })
            .collect::<BTreeSet<_>>(),
    };
    let max_notional = c.decimal(
        &at("max_notional"),
        raw.max_notional.as_ref(),
        &default_notional.to_string(),
        positive,
    );
    let quantity_step = c.decimal(
        &at("quantity_step"),
        raw.quantity_step.as_ref(),
        "0.001",
        positive,
    );
    Some(SymbolConfig {
        settings: SymbolSettings {
            symbol,
            default_size,
            default_leverage,
            default_stop_loss,
            default_take_profit,
            quantity_step,
        },
        rules: SymbolRules {
            enabled: raw.enabled.unwrap_or(true),
            allowed_actions,
            max_leverage,
            max_notional,
        },
        aliases: raw.aliases.iter().map(|a| a.to_ascii_uppercase()).collect(),
        quote_currency,
    })
}
