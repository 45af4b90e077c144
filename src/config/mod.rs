//! The validated configuration: `load` turns `config.toml` into a `Config` or into every problem, each with its path.

mod checker;
pub mod env;
pub(crate) mod raw;
mod validate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::adapters::paper::PaperCosts;
use rust_decimal::Decimal;
use sentinel_actors::limits::Limits;
use sentinel_actors::portfolio::MarginSpec;
use sentinel_actors::risk::{SymbolRules, TradingState};
use sentinel_actors::strategy::SymbolSettings;
use sentinel_actors::types::Symbol;

use crate::auth::SourceAuth;
use crate::protect::network::{Allowlist, TrustedProxies};
use crate::secret::Secret;

pub use validate::Problem;

/// Everything the daemon runs on, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub sources: Vec<SourceConfig>,
    pub exchange: ExchangeConfig,
    pub risk: RiskConfig,
    pub symbols: Vec<SymbolConfig>,
    pub journal: JournalConfig,
    pub api: ApiConfig,
    /// `[telegram]`: the chat bot that takes operator commands; `None`: no bot.
    pub telegram: Option<crate::chat::TelegramConfig>,
    /// `[[notifications]]`: channels told about fills, exits, denials, ... (see `crate::notify`).
    pub notifications: Vec<crate::notify::NotificationConfig>,
    /// `[[rules]]`: actions taken on events (see `crate::rules`).
    pub rules: Vec<crate::rules::Rule>,
    /// Things that work but deserve a loud word at start-up (demo secrets, ...).
    pub warnings: Vec<String>,
    /// Keys the environment overrode (`server.listen from SENTINEL__SERVER__LISTEN`), for `check-config` and the log.
    pub overridden: Vec<String>,
    /// The folder of the config file: relative paths in it resolve against this.
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub workers: usize,
    /// Peers whose forwarding header is believed, and which header that is.
    pub trusted_proxies: TrustedProxies,
    pub body_limit: usize,
    /// A client must send its request head within this (slowloris).
    pub header_timeout: Duration,
    /// A client must send its whole body within this.
    pub body_timeout: Duration,
    pub per_address: RateLimit,
    /// Refused requests (of any kind) per client: past this, the client gets 429 before anything is checked.
    pub refusals_per_address: RateLimit,
    /// Failed authentications by clients not vouched for, all together: past this, such clients get 429 before
    /// verification (a rotation of addresses cannot guess secrets at the full request rate).
    pub failed_auth: RateLimit,
    /// Open connections at most; `None`: derived from the file-descriptor limit at start.
    pub max_connections: Option<usize>,
    /// How long an idle keep-alive connection is kept open; zero: no keep-alive.
    pub keep_alive: Duration,
    /// How long a sender's delivery id is remembered for idempotency.
    pub delivery_id_retention: Duration,
    /// Signals accepted and not yet finished, at most: past this, webhooks are answered 503 with `Retry-After`
    /// before anything is recorded.
    pub max_pending_signals: usize,
    /// At SIGTERM, how long the signals in flight may take to finish before the daemon stops anyway (what was
    /// acknowledged is in the journal either way, and finishes after the next start).
    pub shutdown_deadline: Duration,
    pub tls: Option<TlsConfig>,
    /// Host names the API answers to besides `localhost` and IP addresses (lower case, no port); any other `Host`
    /// is refused, so a web page whose name was rebound to this machine cannot read or drive the API.
    pub api_hosts: Vec<String>,
}

/// The public read token the paper exchange falls back to when the read token's variable is unset, like the demo
/// webhook secrets: anyone who reads the docs knows it.
pub const DEMO_READ_TOKEN: &str = "sentinel-demo-read-token";

/// The operator API: its own listener, apart from the webhooks', and the bearer tokens it takes.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Lets a client read `/api/*`; the admin token reads too. `None`: reads are off (403).
    pub read_token: Option<Secret>,
    /// Lets a client change things (`POST /api/trading-state`, `POST /api/flatten`); `None`: writes are off (403).
    pub admin_token: Option<Secret>,
    /// The variables the tokens come from, for the answers that say how to turn access on.
    pub read_token_env: String,
    pub admin_token_env: String,
}

/// Where the journal lives and how long it keeps finished history.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// A file (resolved against the config's folder), or `None` for `:memory:` (nothing survives a restart).
    pub path: Option<PathBuf>,
    pub retention: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CAs whose client certificates are accepted (mutual TLS); `None`: clients present none.
    pub client_ca: Option<PathBuf>,
}

/// Requests per minute, in bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The `{source}` in `POST /webhook/{source}`.
    pub name: String,
    pub auth: SourceAuth,
    /// Client addresses allowed to use this source; empty: any.
    pub allow_ips: Allowlist,
    /// New signals from this source; `None`: not limited (admission control bounds them).
    pub rate_limit: Option<RateLimit>,
    /// How long an identical body from this source counts as a duplicate (for senders without delivery ids).
    pub duplicate_window: Duration,
    /// The common name the client certificate must carry (`TradingView Webhooks`); `None`: no certificate needed.
    pub client_cert_subject: Option<String>,
    /// Browser origins whose pages may post to this source (`*`: any). Senders that are not browsers send no
    /// `Origin`; empty: a request that carries one is refused, so no web page can post a webhook.
    pub allow_origins: Vec<String>,
    /// The source takes operator commands (`{"command":"halt"}`) and no signals: a kill switch for a sender that
    /// signs its requests, such as a monitoring system or a phone shortcut.
    pub commands: bool,
}

#[derive(Debug, Clone)]
pub enum ExchangeConfig {
    Paper {
        starting_balance: Decimal,
        costs: PaperCosts,
        /// How long each order takes the simulated venue, as a real one's round trip would.
        latency: Duration,
        latency_by_symbol: HashMap<Symbol, Duration>,
        /// Live prices and exchange rules to paper-trade on (a dry run); `None`: prices come from signals.
        market_data: Option<MarketData>,
    },
    /// Binance USD-M futures, one account.
    BinanceFutures(BinanceConfig),
}

/// Where a venue's public market data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketData {
    pub rest_url: String,
    pub ws_url: String,
}

/// Margin per position, as Binance names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarginType {
    Crossed,
    Isolated,
}

impl MarginType {
    pub fn as_str(self) -> &'static str {
        match self {
            MarginType::Crossed => "CROSSED",
            MarginType::Isolated => "ISOLATED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BinanceConfig {
    pub endpoints: MarketData,
    pub api_key: Secret,
    pub api_secret: Secret,
    /// How long after its `timestamp` Binance still takes a signed request.
    pub recv_window: Duration,
    /// The most one REST call may take before its outcome counts as unknown.
    pub request_timeout: Duration,
    /// Set on every traded symbol before its first order; `None`: leave the account's setting.
    pub margin_type: Option<MarginType>,
    /// How often REST is polled for triggered stops and mark prices while a stream is down.
    pub poll_interval: Duration,
    /// How often at most a symbol's mark price goes onto the event log as a `mark_price` event (for rules);
    /// `None`: never. Funding rates go on whenever they change.
    pub mark_price_events: Option<Duration>,
}

impl ExchangeConfig {
    /// The venues whose events (funding rates, marks, positions, margin ratios) reach the rules: the venue, and
    /// for paper on live prices, the market it follows.
    pub fn event_sources(&self) -> &'static [&'static str] {
        use crate::adapters::{BINANCE_FUTURES, PAPER};
        match self {
            ExchangeConfig::Paper {
                market_data: None, ..
            } => &[PAPER],
            ExchangeConfig::Paper { .. } => &[PAPER, BINANCE_FUTURES],
            ExchangeConfig::BinanceFutures(_) => &[BINANCE_FUTURES],
        }
    }

    pub fn is_paper(&self) -> bool {
        matches!(self, ExchangeConfig::Paper { .. })
    }

    /// What the account starts with before any fill: the paper balance, or nothing for a real account, whose
    /// wallet is read from the venue at start.
    pub fn starting_balance(&self) -> Decimal {
        match self {
            ExchangeConfig::Paper {
                starting_balance, ..
            } => *starting_balance,
            ExchangeConfig::BinanceFutures(_) => Decimal::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RiskConfig {
    pub trading_state: TradingState,
    /// The account limits, each off unless configured.
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct SymbolConfig {
    pub settings: SymbolSettings,
    pub rules: SymbolRules,
    /// Other names senders use for it (`XBTUSDT`), matched like the symbol itself.
    pub aliases: Vec<String>,
    pub quote_currency: String,
    /// Cross or isolated, and the maintenance margin rate: the liquidation price and paper's liquidations.
    pub margin: MarginSpec,
    /// The price step: paper fill prices are rounded to it, against the taker; `None`: not rounded.
    pub tick_size: Option<Decimal>,
}

impl SymbolConfig {
    pub fn symbol(&self) -> &Symbol {
        &self.settings.symbol
    }
}

/// Reading the file failed, or the configuration has problems.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} has {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl Config {
    /// Reads and checks the file at `path`, with the process environment's `SENTINEL__SECTION__KEY` overrides
    /// applied, taking secrets from the environment (or the files it names: see `env::secret_lookup`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let overrides = env::overrides(std::env::vars());
        let lookup = |name: &str| env::secret_lookup(name, &|n| std::env::var(n).ok());
        Config::parse_with(&text, base_dir, &lookup, &overrides).map_err(|problems| {
            ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            }
        })
    }

    /// `parse`, with `overrides` (from `SENTINEL__SECTION__KEY` variables) applied to the file first.
    pub fn parse_with(
        text: &str,
        base_dir: PathBuf,
        lookup: &dyn Fn(&str) -> Option<String>,
        overrides: &[env::Override],
    ) -> Result<Config, Vec<Problem>> {
        if overrides.is_empty() {
            return Config::parse(text, base_dir, lookup);
        }
        let mut file: toml::Table = toml::from_str(text).map_err(|e| vec![Problem::syntax(e)])?;
        let applied = env::apply(&mut file, overrides).map_err(|why| vec![Problem::syntax(why)])?;
        let mut unknown = Vec::new();
        let raw: raw::RawConfig = serde_ignored::deserialize(toml::Value::Table(file), |path| {
            unknown.push(key_path(&path))
        })
        .map_err(|e| vec![Problem::syntax(e)])?;
        let mut config = validate::validate(raw, unknown, base_dir, lookup)?;
        config.overridden = applied
            .into_iter()
            .zip(overrides)
            .map(|(at, o)| format!("{at} from {}", o.variable))
            .collect();
        Ok(config)
    }

    /// Checks configuration text; `env` looks up environment variables (tests pass their own).
    pub fn parse(
        text: &str,
        base_dir: PathBuf,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<Problem>> {
        let mut unknown = Vec::new();
        let deserializer = toml::Deserializer::parse(text).map_err(|e| vec![Problem::syntax(e)])?;
        let raw: raw::RawConfig =
            serde_ignored::deserialize(deserializer, |path| unknown.push(key_path(&path)))
                .map_err(|e| vec![Problem::syntax(e)])?;
        validate::validate(raw, unknown, base_dir, env)
    }

    /// Resolves a path from the config file against the config file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// A symbol's margin terms (the defaults for a symbol not configured: the ledger may hold an adopted one).
    pub fn margin_of(&self, symbol: &sentinel_actors::types::Symbol) -> MarginSpec {
        self.symbols
            .iter()
            .find(|s| s.symbol() == symbol)
            .map(|s| s.margin.clone())
            .unwrap_or_default()
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// `sources[1].secret_env`, the way problems name keys.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => match key_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}
