//! The configuration file exactly as written: serde types that check nothing but shape. Unknown keys are collected
//! (with `serde_ignored`, see `super::load`) and refused with their paths, together with every other problem.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    pub exchange: Option<RawExchange>,
    #[serde(default)]
    pub risk: RawRisk,
    #[serde(default)]
    pub symbols: Vec<RawSymbol>,
    #[serde(default)]
    pub journal: RawJournal,
    #[serde(default)]
    pub api: RawApi,
    /// `[telegram]`: operator commands from a Telegram chat; absent: no bot.
    pub telegram: Option<crate::chat::RawTelegram>,
    #[serde(default)]
    pub notifications: Vec<RawNotification>,
    /// `[[rules]]`: what events (funding rates, margin ratios, a risk model's readings, ...) make Sentinel do.
    #[serde(default)]
    pub rules: Vec<crate::rules::RawRule>,
}

/// `[[notifications]]`: one channel that is told about fills, exits, denials, ... (see `crate::notify`).
#[derive(Debug, Default, Deserialize)]
pub struct RawNotification {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub token_env: Option<String>,
    pub url_env: Option<String>,
    pub secret_env: Option<String>,
    pub url: Option<String>,
    pub chat_id: Option<ChatId>,
    pub api_base: Option<String>,
    pub events: Option<Vec<String>>,
    pub template: Option<String>,
    pub queue: Option<i64>,
    pub max_retries: Option<i64>,
    pub allow_private: Option<bool>,
    pub summary_hour_utc: Option<i64>,
}

/// A Telegram chat id as written: a number (`-1001234567890`) or text (`"@channelname"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ChatId {
    Number(i64),
    Text(String),
}

/// `[api]`: the operator API's own listener and its tokens.
#[derive(Debug, Default, Deserialize)]
pub struct RawApi {
    pub listen: Option<String>,
    pub read_token_env: Option<String>,
    pub admin_token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawJournal {
    pub path: Option<String>,
    pub retention_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    pub listen: Option<String>,
    pub workers: Option<i64>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub forwarded_header: Option<String>,
    pub body_limit_bytes: Option<i64>,
    pub header_timeout_ms: Option<i64>,
    pub body_timeout_ms: Option<i64>,
    pub rate_limit_per_address_per_minute: Option<i64>,
    pub rate_limit_per_address_burst: Option<i64>,
    pub refusals_per_address_per_minute: Option<i64>,
    pub refusals_per_address_burst: Option<i64>,
    pub failed_auth_per_minute: Option<i64>,
    pub failed_auth_burst: Option<i64>,
    pub max_connections: Option<i64>,
    pub keep_alive_secs: Option<i64>,
    pub delivery_id_retention_secs: Option<i64>,
    pub max_pending_signals: Option<i64>,
    pub shutdown_deadline_secs: Option<i64>,
    /// Deprecated: `api.admin_token_env`.
    pub admin_token_env: Option<String>,
    #[serde(default)]
    pub api_hosts: Vec<String>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
}

/// One environment variable name, or several (for key rotation).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EnvNames {
    One(String),
    Many(Vec<String>),
}

impl EnvNames {
    pub fn names(&self) -> Vec<String> {
        match self {
            EnvNames::One(name) => vec![name.clone()],
            EnvNames::Many(names) => names.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawSource {
    pub name: Option<String>,
    pub kind: Option<String>,
    /// tradingview: the environment variable(s) holding the passphrase expected in the body.
    pub passphrase_env: Option<EnvNames>,
    /// tradingview: the environment variable(s) holding the token expected in the URL path.
    pub token_env: Option<EnvNames>,
    /// hmac, standard-webhooks: the environment variable(s) holding the signing secret.
    pub secret_env: Option<EnvNames>,
    pub signature_header: Option<String>,
    pub timestamp_header: Option<String>,
    pub timestamp_tolerance_secs: Option<i64>,
    pub allow_ips: Option<Vec<String>>,
    pub rate_limit_per_minute: Option<i64>,
    pub rate_limit_burst: Option<i64>,
    pub duplicate_window_secs: Option<i64>,
    pub client_cert_subject: Option<String>,
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Operator commands (halt, resume, reducing, flatten) instead of signals; signed sources only.
    pub commands: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawExchange {
    pub kind: Option<String>,
    pub starting_balance: Option<DecimalText>,
    pub fee_rate: Option<DecimalText>,
    pub slippage: Option<DecimalText>,
    pub latency_ms: Option<i64>,
    #[serde(default)]
    pub latency_ms_by_symbol: std::collections::BTreeMap<String, i64>,
    pub market_data: Option<String>,
    pub rest_url: Option<String>,
    pub ws_url: Option<String>,
    pub api_key_env: Option<String>,
    pub api_secret_env: Option<String>,
    pub recv_window_ms: Option<i64>,
    pub request_timeout_ms: Option<i64>,
    pub margin_type: Option<String>,
    pub poll_interval_ms: Option<i64>,
    pub mark_price_events_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRisk {
    pub trading_state: Option<String>,
    pub max_position_notional: Option<DecimalText>,
    pub max_daily_loss: Option<DecimalText>,
    pub max_drawdown: Option<DecimalText>,
    pub max_open_positions: Option<i64>,
    pub max_gross_exposure: Option<DecimalText>,
    pub max_orders_per_minute: Option<i64>,
    pub max_orders_per_minute_per_symbol: Option<i64>,
    pub entry_cooldown_secs: Option<i64>,
    pub max_price_deviation: Option<DecimalText>,
    pub max_signal_age_secs: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct RawSymbol {
    pub symbol: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub enabled: Option<bool>,
    pub quote_currency: Option<String>,
    pub default_size: Option<DecimalText>,
    pub default_leverage: Option<i64>,
    pub max_leverage: Option<i64>,
    pub max_notional: Option<DecimalText>,
    pub quantity_step: Option<DecimalText>,
    pub stop_loss: Option<DecimalText>,
    pub take_profit: Option<DecimalText>,
    pub allowed_actions: Option<Vec<String>>,
    pub margin_mode: Option<String>,
    pub maintenance_margin_rate: Option<DecimalText>,
    pub tick_size: Option<DecimalText>,
    /// This symbol's own `risk.entry_cooldown_secs` and `risk.max_price_deviation`.
    pub entry_cooldown_secs: Option<i64>,
    pub max_price_deviation: Option<DecimalText>,
}

/// A number as written: money is read from strings ("0.0004") or whole numbers, never through a float.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DecimalText {
    Int(i64),
    Text(String),
    Float(f64),
}

impl DecimalText {
    pub fn text(&self) -> Result<String, String> {
        match self {
            DecimalText::Int(i) => Ok(i.to_string()),
            DecimalText::Text(s) => Ok(s.clone()),
            DecimalText::Float(f) => Err(format!(
                "write {f} as a string (\"{f}\"): amounts are read exactly, never as floating point"
            )),
        }
    }
}
