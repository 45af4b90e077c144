//! Collecting configuration problems as the raw config is walked: each with its key path, none stopping the walk.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use rust_decimal::Decimal;
use sentinel_actors::types::Leverage;

use super::raw::{DecimalText, EnvNames};
use super::RateLimit;
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

/// Collects problems as the raw config is walked.
pub(super) struct Checker<'a> {
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<String>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Checker<'_> {
    pub(super) fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    pub(super) fn required<T>(&mut self, path: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.problem(path, "is required");
        }
        value
    }

    pub(super) fn decimal(
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
        // As strict as the numbers senders write: no `_`, nothing that cannot be held exactly.
        match sentinel_actors::amount::parse_decimal(text.trim()) {
            Ok(value) => {
                if let Err(message) = check(value) {
                    self.problem(path, message);
                }
                value
            }
            Err(e) => {
                self.problem(path, format!("`{text}`: {e}"));
                Decimal::ZERO
            }
        }
    }

    pub(super) fn leverage(&mut self, path: &str, value: Option<i64>, default: u32) -> Leverage {
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

    /// The secrets named by environment variables; with the paper exchange a missing one falls back to `demo`.
    pub(super) fn secrets(
        &mut self,
        path: &str,
        names: &EnvNames,
        demo: Option<&str>,
        paper: bool,
    ) -> Vec<Secret> {
        let names = names.names();
        if names.is_empty() {
            self.problem(path, "name at least one environment variable");
        }
        let mut secrets = Vec::new();
        for env_name in names {
            match (self.env)(&env_name).filter(|v| !v.is_empty()) {
                Some(value) if paper || !secret::is_demo(value.as_bytes()) => secrets.push(Secret::new(value)),
                Some(_) => self.problem(
                    path,
                    format!("{env_name} holds a demo secret; set a real one before trading on a real exchange"),
                ),
                None => match demo {
                    Some(demo) if paper => {
                        self.warnings.push(format!(
                            "{env_name} is not set: {path} uses the PUBLIC DEMO secret `{demo}`. Anyone who reads the docs \
                             can send signals. Fine for paper trading on this machine only; set {env_name} before \
                             exposing the port."
                        ));
                        secrets.push(Secret::new(demo));
                    }
                    Some(_) => self.problem(path, format!("{env_name} is not set: a real exchange needs a real secret")),
                    None => self.problem(path, format!("{env_name} is not set")),
                },
            }
        }
        secrets
    }

    /// A whole number within `range`, or `default` when absent.
    pub(super) fn whole(
        &mut self,
        path: &str,
        value: Option<i64>,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        let Some(value) = value else { return default };
        match u64::try_from(value) {
            Ok(v) if range.contains(&v) => v,
            _ => {
                self.problem(
                    path,
                    format!(
                        "must be between {} and {}, not {value}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }

    /// A rate limit from its `(per minute, burst)` keys.
    pub(super) fn rate(
        &mut self,
        paths: (&str, &str),
        values: (Option<i64>, Option<i64>),
        defaults: (u32, u32),
    ) -> RateLimit {
        let per_minute = self.whole(paths.0, values.0, defaults.0.into(), 1..=1_000_000);
        let burst = self.whole(paths.1, values.1, defaults.1.into(), 1..=100_000);
        RateLimit {
            per_minute: NonZeroU32::new(per_minute as u32).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(burst as u32).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// A limit that is off unless one of its keys is set (the other then takes `defaults`' value).
    pub(super) fn optional_rate(
        &mut self,
        paths: (&str, &str),
        values: (Option<i64>, Option<i64>),
        defaults: (u32, u32),
    ) -> Option<RateLimit> {
        if values.0.is_none() && values.1.is_none() {
            return None;
        }
        Some(self.rate(paths, values, defaults))
    }
}

pub(super) fn positive(value: Decimal) -> Result<(), String> {
    (value > Decimal::ZERO)
        .then_some(())
        .ok_or_else(|| "must be greater than 0".to_string())
}

pub(super) fn fraction(value: Decimal) -> Result<(), String> {
    (value >= Decimal::ZERO && value < Decimal::ONE)
        .then_some(())
        .ok_or_else(|| "must be a fraction from 0 up to 1 (0.0004 = 0.04 %)".to_string())
}
