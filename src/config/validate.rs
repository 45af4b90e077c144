//! One pass over the raw configuration that collects every problem, each with its key path.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use sentinel_actors::amount;
use sentinel_actors::limits::{Bound, Limits, SymbolLimits};
use sentinel_actors::portfolio::{MarginMode, MarginSpec};
use sentinel_actors::risk::{SymbolRules, TradingState};
use sentinel_actors::signal::{Action, ExitLevel, SizeSpec};
use sentinel_actors::strategy::SymbolSettings;
use sentinel_actors::types::{Leverage, Symbol};

use super::raw::{
    DecimalText, RawApi, RawConfig, RawExchange, RawJournal, RawRisk, RawServer, RawSource,
    RawSymbol,
};
use super::{
    ApiConfig, BinanceConfig, Config, ExchangeConfig, JournalConfig, MarginType, MarketData,
    RiskConfig, ServerConfig, SourceConfig, SymbolConfig, TlsConfig, DEMO_READ_TOKEN,
};
use crate::auth::{decode_secret, HmacScheme, SourceAuth, StandardWebhooks};
use crate::payload::{parse_exit_level, parse_size};
use crate::protect::network::{Allowlist, ForwardedHeader, TrustedProxies};
use crate::secret::{self, Secret};

pub use super::checker::Problem;
use super::checker::{fraction, positive, Checker};
use crate::adapters::paper::PaperCosts;

const DEFAULT_LISTEN: &str = "127.0.0.1:9470";
const DEFAULT_API_LISTEN: &str = "127.0.0.1:9471";
const DEFAULT_READ_TOKEN_ENV: &str = "SENTINEL_READ_TOKEN";
const DEFAULT_ADMIN_TOKEN_ENV: &str = "SENTINEL_ADMIN_TOKEN";
const MAX_SOURCE_NAME: usize = 64;

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

    let mut raw_server = raw.server;
    let old_admin_token_env = raw_server.admin_token_env.take();
    let server = server(&mut c, raw_server);

    let exchange = exchange(&mut c, raw.exchange);
    let paper = exchange.is_paper();
    let api = api(&mut c, raw.api, old_admin_token_env, paper);

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

    let mut limits = limits(&mut c, &raw.risk);

    let journal = journal(&mut c, raw.journal, &base_dir, exchange.is_paper());
    let mutual_tls = server
        .tls
        .as_ref()
        .is_some_and(|tls| tls.client_ca.is_some());
    for (i, source) in sources.iter().enumerate() {
        if source.client_cert_subject.is_some() && !mutual_tls {
            c.problem(
                format!("sources[{i}].client_cert_subject"),
                "needs server.tls with client_ca: client certificates only exist over HTTPS",
            );
        }
    }
    if journal.retention < server.delivery_id_retention {
        c.problem(
            "journal.retention_days",
            "must cover server.delivery_id_retention_secs, or a restart forgets delivery ids that are still guarded",
        );
    }
    let mut seen = HashSet::new();
    let symbols = raw
        .symbols
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| {
            symbol(
                &mut c,
                i,
                s,
                default_notional,
                &mut seen,
                &mut limits.per_symbol,
            )
        })
        .collect::<Vec<_>>();
    if symbols.is_empty() {
        c.problem("symbols", "configure at least one [[symbols]] table");
    }

    let telegram = raw.telegram.and_then(|t| {
        crate::chat::check_config(t, c.env)
            .map_err(|problems| {
                for (path, message) in problems {
                    c.problem(path, message);
                }
            })
            .ok()
    });

    let notifications = raw
        .notifications
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| notification(&mut c, i, n))
        .collect::<Vec<_>>();

    let source_names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    let rules =
        crate::rules::check_config(raw.rules, &symbols, &source_names, exchange.event_sources())
            .unwrap_or_else(|problems| {
                for (path, message) in problems {
                    c.problem(path, message);
                }
                Vec::new()
            });

    if c.problems.is_empty() {
        Ok(Config {
            server,
            sources,
            exchange,
            risk: RiskConfig {
                trading_state,
                limits,
            },
            symbols,
            journal,
            api,
            telegram,
            notifications,
            rules,
            warnings: c.warnings,
            overridden: Vec::new(),
            base_dir,
        })
    } else {
        Err(c.problems)
    }
}

/// The `[risk]` account limits: each is off unless set.
fn limits(c: &mut Checker, raw: &RawRisk) -> Limits {
    let count = |c: &mut Checker, key: &str, value: Option<i64>| {
        value.map(|v| c.whole(&format!("risk.{key}"), Some(v), 1, 1..=1_000_000) as u32)
    };
    // The log keeps the last minute's orders up to this many, so a limit can count no more.
    let per_minute = |c: &mut Checker, key: &str, value: Option<i64>| {
        let most = sentinel_actors::limits::ORDERS_KEPT as u64;
        value.map(|v| c.whole(&format!("risk.{key}"), Some(v), 1, 1..=most) as u32)
    };
    let secs = |c: &mut Checker, key: &str, value: Option<i64>| {
        millis_of_secs(c, &format!("risk.{key}"), value)
    };
    Limits {
        max_daily_loss: bound(c, "risk.max_daily_loss", raw.max_daily_loss.as_ref(), true),
        max_drawdown: bound(c, "risk.max_drawdown", raw.max_drawdown.as_ref(), true),
        max_open_positions: count(c, "max_open_positions", raw.max_open_positions),
        max_gross_exposure: raw.max_gross_exposure.as_ref().map(|v| {
            c.decimal("risk.max_gross_exposure", Some(v), "0", |d| {
                positive(d)?;
                (d <= amount::MAX_ACCOUNT_TOTAL)
                    .then_some(())
                    .ok_or_else(|| format!("must be at most {}", amount::MAX_ACCOUNT_TOTAL))
            })
        }),
        max_orders_per_minute: per_minute(c, "max_orders_per_minute", raw.max_orders_per_minute),
        max_orders_per_minute_per_symbol: per_minute(
            c,
            "max_orders_per_minute_per_symbol",
            raw.max_orders_per_minute_per_symbol,
        ),
        entry_cooldown_ms: secs(c, "entry_cooldown_secs", raw.entry_cooldown_secs),
        max_price_deviation: price_deviation(
            c,
            "risk.max_price_deviation",
            raw.max_price_deviation.as_ref(),
        ),
        max_signal_age_ms: secs(c, "max_signal_age_secs", raw.max_signal_age_secs),
        // Filled in from `[[symbols]]`.
        per_symbol: BTreeMap::new(),
    }
}

/// A duration given in whole seconds (1 s to a year), in milliseconds.
fn millis_of_secs(c: &mut Checker, path: &str, value: Option<i64>) -> Option<i64> {
    value.map(|v| c.whole(path, Some(v), 1, 1..=31_536_000) as i64 * 1000)
}

/// A price band around the last mark, as a percentage (`"5%"`).
fn price_deviation(c: &mut Checker, path: &str, value: Option<&DecimalText>) -> Option<Decimal> {
    bound(c, path, value, false).and_then(|b| match b {
        Bound::Percent(pct) => Some(pct),
        Bound::Absolute(_) => {
            c.problem(
                path,
                "write a percentage such as \"5%\": the deviation is measured from the last mark",
            );
            None
        }
    })
}

/// An amount ("500") or, with `%`, a percentage ("5%") above 0 and at most 100.
fn bound(
    c: &mut Checker,
    path: &str,
    value: Option<&DecimalText>,
    absolute: bool,
) -> Option<Bound> {
    let text = match value?.text() {
        Ok(text) => text,
        Err(message) => {
            c.problem(path, message);
            return None;
        }
    };
    let (digits, percent) = match text.trim().strip_suffix('%') {
        Some(digits) => (digits.trim(), true),
        None => (text.trim(), false),
    };
    let value = match amount::parse_decimal(digits) {
        Ok(value) => value,
        Err(e) => {
            c.problem(path, format!("`{text}`: {e}"));
            return None;
        }
    };
    if percent {
        if value <= Decimal::ZERO || value > Decimal::ONE_HUNDRED {
            c.problem(
                path,
                format!("`{text}`: a percentage must be above 0% and at most 100%"),
            );
            return None;
        }
        return Some(Bound::Percent(value));
    }
    if value <= Decimal::ZERO || value > amount::MAX_ACCOUNT_TOTAL {
        let message = if absolute {
            format!(
                "`{text}`: must be above 0 and at most {}",
                amount::MAX_ACCOUNT_TOTAL
            )
        } else {
            format!("`{text}`: write a percentage such as \"5%\"")
        };
        c.problem(path, message);
        return None;
    }
    Some(Bound::Absolute(value))
}

fn exchange(c: &mut Checker, raw: Option<RawExchange>) -> ExchangeConfig {
    let raw = raw.unwrap_or_default();
    match raw.kind.as_deref() {
        None | Some("paper") => paper_exchange(c, raw),
        Some("binance-futures") => {
            for (key, set) in [
                ("starting_balance", raw.starting_balance.is_some()),
                ("fee_rate", raw.fee_rate.is_some()),
                ("slippage", raw.slippage.is_some()),
                ("latency_ms", raw.latency_ms.is_some()),
                ("latency_ms_by_symbol", !raw.latency_ms_by_symbol.is_empty()),
                ("market_data", raw.market_data.is_some()),
            ] {
                if set {
                    c.problem(
                        format!("exchange.{key}"),
                        "only applies to the paper exchange",
                    );
                }
            }
            ExchangeConfig::BinanceFutures(binance(c, &raw))
        }
        Some(other) => {
            c.problem(
                "exchange.kind",
                format!("`{other}` is not supported; use `paper` or `binance-futures`"),
            );
            paper_exchange(c, raw)
        }
    }
}

/// Binance's testnet: where a configuration that names no URL trades, so nothing real happens by omission.
const BINANCE_TESTNET_REST: &str = "https://testnet.binancefuture.com";
const BINANCE_TESTNET_WS: &str = "wss://fstream.binancefuture.com";

fn binance(c: &mut Checker, raw: &RawExchange) -> BinanceConfig {
    let key = |c: &mut Checker, path: &str, name: &Option<String>, default: &str| {
        let name = name.clone().unwrap_or_else(|| default.to_string());
        match (c.env)(&name).filter(|v| !v.trim().is_empty()) {
            Some(value) if secret::is_demo(value.as_bytes()) => {
                c.problem(
                    path,
                    format!("{name} holds a demo secret; a real exchange needs a real one"),
                );
                Secret::new(Vec::new())
            }
            Some(value) => Secret::new(value.trim()),
            None => {
                c.problem(
                    path,
                    format!("{name} is not set: a real exchange needs its API key and secret"),
                );
                Secret::new(Vec::new())
            }
        }
    };
    let api_key = key(
        c,
        "exchange.api_key_env",
        &raw.api_key_env,
        "SENTINEL_BINANCE_API_KEY",
    );
    let api_secret = key(
        c,
        "exchange.api_secret_env",
        &raw.api_secret_env,
        "SENTINEL_BINANCE_API_SECRET",
    );
    let margin_type = match raw.margin_type.as_deref() {
        None => None,
        Some(text) => match text.to_ascii_uppercase().as_str() {
            "CROSSED" | "CROSS" => Some(MarginType::Crossed),
            "ISOLATED" => Some(MarginType::Isolated),
            _ => {
                c.problem(
                    "exchange.margin_type",
                    format!("`{text}` is not one of CROSSED, ISOLATED"),
                );
                None
            }
        },
    };
    BinanceConfig {
        endpoints: endpoints(c, raw),
        api_key,
        api_secret,
        // Binance takes at most 60 s.
        recv_window: Duration::from_millis(c.whole(
            "exchange.recv_window_ms",
            raw.recv_window_ms,
            5_000,
            1..=60_000,
        )),
        request_timeout: Duration::from_millis(c.whole(
            "exchange.request_timeout_ms",
            raw.request_timeout_ms,
            5_000,
            100..=60_000,
        )),
        margin_type,
        poll_interval: Duration::from_millis(c.whole(
            "exchange.poll_interval_ms",
            raw.poll_interval_ms,
            1_000,
            50..=60_000,
        )),
        mark_price_events: match c.whole(
            "exchange.mark_price_events_secs",
            raw.mark_price_events_secs,
            0,
            0..=86_400,
        ) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
    }
}

/// The REST and WebSocket base URLs: TLS, except to this machine (a local test server).
fn endpoints(c: &mut Checker, raw: &RawExchange) -> MarketData {
    let url =
        |c: &mut Checker, path: &str, value: &Option<String>, default: &str, schemes: [&str; 2]| {
            let text = value.clone().unwrap_or_else(|| default.to_string());
            let text = text.trim_end_matches('/').to_string();
            let (scheme, rest) = text.split_once("://").unwrap_or(("", &text));
            let host = rest.split(['/', ':']).next().unwrap_or("");
            let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
            if scheme == schemes[0] || (scheme == schemes[1] && loopback) {
                if rest.contains(['?', '#', '@']) || host.is_empty() {
                    c.problem(
                        path,
                        format!(
                            "`{text}` must be a base URL: scheme, host, optional port and path"
                        ),
                    );
                }
            } else {
                c.problem(
                    path,
                    format!(
                        "`{text}` must start with {}:// ({}:// only to this machine)",
                        schemes[0], schemes[1]
                    ),
                );
            }
            text
        };
    MarketData {
        rest_url: url(
            c,
            "exchange.rest_url",
            &raw.rest_url,
            BINANCE_TESTNET_REST,
            ["https", "http"],
        ),
        ws_url: url(
            c,
            "exchange.ws_url",
            &raw.ws_url,
            BINANCE_TESTNET_WS,
            ["wss", "ws"],
        ),
    }
}

fn paper_exchange(c: &mut Checker, raw: RawExchange) -> ExchangeConfig {
    let latency =
        Duration::from_millis(c.whole("exchange.latency_ms", raw.latency_ms, 0, 0..=60_000));
    let mut latency_by_symbol = HashMap::new();
    for (name, ms) in &raw.latency_ms_by_symbol {
        let path = format!("exchange.latency_ms_by_symbol.{name}");
        let ms = c.whole(&path, Some(*ms), 0, 0..=60_000);
        match Symbol::new(name) {
            Ok(symbol) => {
                latency_by_symbol.insert(symbol, Duration::from_millis(ms));
            }
            Err(e) => c.problem(path, e.to_string()),
        }
    }
    for (key, set) in [
        ("api_key_env", raw.api_key_env.is_some()),
        ("api_secret_env", raw.api_secret_env.is_some()),
        ("recv_window_ms", raw.recv_window_ms.is_some()),
        ("request_timeout_ms", raw.request_timeout_ms.is_some()),
        ("margin_type", raw.margin_type.is_some()),
        ("poll_interval_ms", raw.poll_interval_ms.is_some()),
        (
            "mark_price_events_secs",
            raw.mark_price_events_secs.is_some(),
        ),
    ] {
        if set {
            c.problem(format!("exchange.{key}"), "only applies to a real exchange");
        }
    }
    let market_data = match raw.market_data.as_deref() {
        None | Some("signals") => {
            if raw.rest_url.is_some() || raw.ws_url.is_some() {
                c.problem(
                    "exchange.rest_url",
                    "paper trading reads no exchange unless market_data = \"binance-futures\"",
                );
            }
            None
        }
        Some("binance-futures") => Some(endpoints(c, &raw)),
        Some(other) => {
            c.problem(
                "exchange.market_data",
                format!("`{other}` is not one of signals, binance-futures"),
            );
            None
        }
    };
    ExchangeConfig::Paper {
        starting_balance: c.decimal(
            "exchange.starting_balance",
            raw.starting_balance.as_ref(),
            "10000",
            |v| {
                positive(v)?;
                if v > amount::MAX_QUOTE {
                    return Err(format!("must be at most {}", amount::MAX_QUOTE));
                }
                Ok(())
            },
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
        latency,
        latency_by_symbol,
        market_data,
    }
}

fn server(c: &mut Checker, raw: RawServer) -> ServerConfig {
    let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen = SocketAddr::from_str(&listen_text).unwrap_or_else(|_| {
        c.problem(
            "server.listen",
            format!("`{listen_text}` is not an address like 127.0.0.1:9470"),
        );
        SocketAddr::from(([127, 0, 0, 1], 9470))
    });
    let addresses = Allowlist::parse(&raw.trusted_proxies).unwrap_or_else(|message| {
        c.problem("server.trusted_proxies", message);
        Allowlist::default()
    });
    let header = match raw
        .forwarded_header
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("x-forwarded-for") => ForwardedHeader::XForwardedFor,
        Some("forwarded") => ForwardedHeader::Forwarded,
        Some(other) => {
            c.problem(
                "server.forwarded_header",
                format!("`{other}` is not x-forwarded-for or forwarded"),
            );
            ForwardedHeader::XForwardedFor
        }
    };
    let trusted_proxies = TrustedProxies { addresses, header };
    let tls = raw.tls.and_then(|tls| {
        let cert = c.required("server.tls.cert", tls.cert);
        let key = c.required("server.tls.key", tls.key);
        Some(TlsConfig {
            cert: PathBuf::from(cert?),
            key: PathBuf::from(key?),
            client_ca: tls.client_ca.map(PathBuf::from),
        })
    });
    ServerConfig {
        listen,
        workers: c.whole("server.workers", raw.workers, 2, 1..=64) as usize,
        trusted_proxies,
        body_limit: c.whole(
            "server.body_limit_bytes",
            raw.body_limit_bytes,
            64 * 1024,
            1024..=16 * 1024 * 1024,
        ) as usize,
        header_timeout: Duration::from_millis(c.whole(
            "server.header_timeout_ms",
            raw.header_timeout_ms,
            5_000,
            // actix measures it against a clock that ticks every 500 ms, so less would cut off honest clients.
            1_000..=120_000,
        )),
        body_timeout: Duration::from_millis(c.whole(
            "server.body_timeout_ms",
            raw.body_timeout_ms,
            10_000,
            100..=120_000,
        )),
        per_address: c.rate(
            (
                "server.rate_limit_per_address_per_minute",
                "server.rate_limit_per_address_burst",
            ),
            (
                raw.rate_limit_per_address_per_minute,
                raw.rate_limit_per_address_burst,
            ),
            // Room for a candle-close burst from one sender's address before it has authenticated once; after
            // that, admission control bounds it (see limits.rs).
            (1200, 300),
        ),
        // Well above what an honest but misconfigured sender produces before someone looks, well below a flood.
        refusals_per_address: c.rate(
            (
                "server.refusals_per_address_per_minute",
                "server.refusals_per_address_burst",
            ),
            (
                raw.refusals_per_address_per_minute,
                raw.refusals_per_address_burst,
            ),
            (30, 20),
        ),
        failed_auth: c.rate(
            ("server.failed_auth_per_minute", "server.failed_auth_burst"),
            (raw.failed_auth_per_minute, raw.failed_auth_burst),
            (60, 30),
        ),
        max_connections: raw.max_connections.map(|_| {
            c.whole(
                "server.max_connections",
                raw.max_connections,
                0,
                16..=1_000_000,
            ) as usize
        }),
        // TradingView gives up after 3 s and opens a new connection per alert, so a short idle time costs nothing.
        keep_alive: Duration::from_secs(c.whole(
            "server.keep_alive_secs",
            raw.keep_alive_secs,
            5,
            0..=300,
        )),
        delivery_id_retention: Duration::from_secs(c.whole(
            "server.delivery_id_retention_secs",
            raw.delivery_id_retention_secs,
            7 * 24 * 3600,
            60..=365 * 24 * 3600,
        )),
        max_pending_signals: c.whole(
            "server.max_pending_signals",
            raw.max_pending_signals,
            1024,
            1..=1_000_000,
        ) as usize,
        shutdown_deadline: Duration::from_secs(c.whole(
            "server.shutdown_deadline_secs",
            raw.shutdown_deadline_secs,
            10,
            0..=600,
        )),
        tls,
        api_hosts: raw
            .api_hosts
            .iter()
            .enumerate()
            .filter_map(|(i, host)| {
                let host = host.trim().to_ascii_lowercase();
                let valid = !host.is_empty()
                    && host.len() <= 253
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
                if !valid {
                    c.problem(
                        format!("server.api_hosts[{i}]"),
                        format!("`{host}` is not a host name: write it without scheme or port, like `sentinel.example.com`"),
                    );
                }
                valid.then_some(host)
            })
            .collect(),
    }
}

/// `[api]`: the operator API's listener and tokens. `server.admin_token_env` is still read as the admin token's
/// variable, with a warning.
fn api(
    c: &mut Checker,
    raw: RawApi,
    old_admin_token_env: Option<String>,
    paper: bool,
) -> ApiConfig {
    let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_API_LISTEN.into());
    let listen = SocketAddr::from_str(&listen_text).unwrap_or_else(|_| {
        c.problem(
            "api.listen",
            format!("`{listen_text}` is not an address like 127.0.0.1:9471"),
        );
        SocketAddr::from(([127, 0, 0, 1], 9471))
    });
    let (admin_path, admin_name) = match (raw.admin_token_env, old_admin_token_env) {
        (Some(name), None) => ("api.admin_token_env", Some(name)),
        (None, Some(name)) => {
            c.warnings.push(format!(
                "server.admin_token_env is deprecated: write `admin_token_env = \"{name}\"` under [api]"
            ));
            ("server.admin_token_env", Some(name))
        }
        (Some(name), Some(_)) => {
            c.warnings.push(
                "server.admin_token_env is deprecated and ignored: api.admin_token_env is set"
                    .into(),
            );
            ("api.admin_token_env", Some(name))
        }
        (None, None) => ("api.admin_token_env", None),
    };
    let admin_token_env = admin_name
        .clone()
        .unwrap_or_else(|| DEFAULT_ADMIN_TOKEN_ENV.into());
    let admin_token = match api_token(c, admin_path, &admin_token_env, paper) {
        Some(token) => Some(token),
        // Named in the file: the operator meant writes to be on.
        None if admin_name.is_some() && is_unset(c, &admin_token_env) => {
            c.problem(admin_path, format!("{admin_token_env} is not set"));
            None
        }
        None => None,
    };
    let read_named = raw.read_token_env.is_some();
    let read_token_env = raw
        .read_token_env
        .unwrap_or_else(|| DEFAULT_READ_TOKEN_ENV.into());
    let read_token = match api_token(c, "api.read_token_env", &read_token_env, paper) {
        Some(token) => Some(token),
        None if !is_unset(c, &read_token_env) => None,
        None if paper => {
            c.warnings.push(format!(
                "{read_token_env} is not set: the API takes the PUBLIC DEMO read token `{DEMO_READ_TOKEN}`. Anyone \
                 who reads the docs can read positions and orders. Fine for paper trading on this machine only; set \
                 {read_token_env} before exposing the API port."
            ));
            Some(Secret::new(DEMO_READ_TOKEN))
        }
        None if read_named => {
            c.problem("api.read_token_env", format!("{read_token_env} is not set"));
            None
        }
        None => {
            c.warnings.push(format!(
                "{read_token_env} is not set: the API answers no reads until it is"
            ));
            None
        }
    };
    ApiConfig {
        listen,
        read_token,
        admin_token,
        read_token_env,
        admin_token_env,
    }
}

fn is_unset(c: &Checker, name: &str) -> bool {
    (c.env)(name).filter(|v| !v.is_empty()).is_none()
}

/// The token in the variable `name`, checked for strength; `None` when it is unset or empty.
fn api_token(c: &mut Checker, path: &str, name: &str, paper: bool) -> Option<Secret> {
    let token = (c.env)(name).filter(|v| !v.is_empty())?;
    if !paper && token == DEMO_READ_TOKEN {
        c.problem(
            path,
            format!("{name} holds the demo read token; set a real one before trading on a real exchange"),
        );
        return None;
    }
    match secret::check_token_strength(&token) {
        Ok(()) => Some(Secret::new(token)),
        Err(message) => {
            c.problem(path, format!("{name} {message}"));
            None
        }
    }
}

fn journal(
    c: &mut Checker,
    raw: RawJournal,
    base_dir: &std::path::Path,
    paper: bool,
) -> JournalConfig {
    let path = raw.path.unwrap_or_else(|| "sentinel.db".into());
    let path = if path == ":memory:" {
        if !paper {
            c.problem("journal.path", "`:memory:` loses acknowledged signals on a restart; only the paper exchange allows it");
        } else {
            c.warnings
                .push("journal.path is :memory: -- nothing survives a restart".into());
        }
        None
    } else {
        let path = PathBuf::from(path);
        Some(if path.is_absolute() {
            path
        } else {
            base_dir.join(path)
        })
    };
    JournalConfig {
        path,
        retention: Duration::from_secs(
            24 * 3600 * c.whole("journal.retention_days", raw.retention_days, 90, 1..=36_500),
        ),
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
    // Rules tell the venue's events from webhooks by these names: a webhook must not pass for the exchange.
    if crate::adapters::VENUE_NAMES.contains(&name.as_str()) {
        c.problem(
            at("name"),
            format!("`{name}` is a venue's name, kept for its events: choose another"),
        );
    }
    if !names.insert(name.clone()) {
        c.problem(at("name"), format!("`{name}` is used by another source"));
    }
    let kind = c.required(&at("kind"), raw.kind)?;
    let commands = raw.commands.unwrap_or(false);
    // Whoever can send a command can stop trading or close every position: never on a secret from the docs.
    let demo_signals_secret = (!commands).then_some(secret::DEMO_SIGNALS_SECRET);
    let tolerance = c.whole(
        &at("timestamp_tolerance_secs"),
        raw.timestamp_tolerance_secs,
        300,
        1..=86_400,
    ) as i64;
    let refuse = |c: &mut Checker, key: &str, present: bool| {
        if present {
            c.problem(at(key), format!("does not apply to {kind} sources"));
        }
    };
    let header = |c: &mut Checker, key: &str, value: Option<String>| -> Option<String> {
        let value = value?.to_ascii_lowercase();
        if actix_web::http::header::HeaderName::from_bytes(value.as_bytes()).is_err() {
            c.problem(at(key), format!("`{value}` is not a header name"));
        }
        Some(value)
    };
    let auth = match kind.as_str() {
        "tradingview" => {
            refuse(c, "secret_env", raw.secret_env.is_some());
            refuse(c, "signature_header", raw.signature_header.is_some());
            refuse(c, "timestamp_header", raw.timestamp_header.is_some());
            if raw.passphrase_env.is_none() && raw.token_env.is_none() {
                c.problem(
                    at("passphrase_env"),
                    "a tradingview source needs passphrase_env, token_env or both",
                );
            }
            let passphrases = match &raw.passphrase_env {
                Some(names) => c.secrets(
                    &at("passphrase_env"),
                    names,
                    Some(secret::DEMO_TRADINGVIEW_PASSPHRASE),
                    paper,
                ),
                None => Vec::new(),
            };
            let tokens = match &raw.token_env {
                Some(names) => c.secrets(&at("token_env"), names, None, paper),
                None => Vec::new(),
            };
            for token in &tokens {
                let t = token.expose();
                if t.len() < 16
                    || !t
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                {
                    c.problem(
                        at("token_env"),
                        "a URL token must be at least 16 letters, digits, `-` or `_`",
                    );
                }
            }
            SourceAuth::TradingView {
                passphrases,
                tokens,
            }
        }
        "hmac" => {
            refuse(c, "passphrase_env", raw.passphrase_env.is_some());
            refuse(c, "token_env", raw.token_env.is_some());
            let names = c.required(&at("secret_env"), raw.secret_env.clone())?;
            let secrets = c.secrets(&at("secret_env"), &names, demo_signals_secret, paper);
            SourceAuth::Hmac(HmacScheme {
                secrets,
                signature_header: header(c, "signature_header", raw.signature_header.clone())
                    .unwrap_or_else(|| "x-webhook-signature".into()),
                timestamp_header: header(c, "timestamp_header", raw.timestamp_header.clone()),
                tolerance_secs: tolerance,
            })
        }
        "standard-webhooks" => {
            refuse(c, "passphrase_env", raw.passphrase_env.is_some());
            refuse(c, "token_env", raw.token_env.is_some());
            refuse(c, "signature_header", raw.signature_header.is_some());
            refuse(c, "timestamp_header", raw.timestamp_header.is_some());
            let names = c.required(&at("secret_env"), raw.secret_env.clone())?;
            let mut keys = Vec::new();
            for s in c.secrets(&at("secret_env"), &names, None, paper) {
                match decode_secret(&String::from_utf8_lossy(s.expose())) {
                    Ok(key) => keys.push(Secret::new(key)),
                    Err(message) => c.problem(at("secret_env"), message),
                }
            }
            SourceAuth::StandardWebhooks(StandardWebhooks {
                keys,
                tolerance_secs: tolerance,
            })
        }
        other => {
            c.problem(
                at("kind"),
                format!("`{other}` is not one of tradingview, hmac, standard-webhooks"),
            );
            return None;
        }
    };
    if commands {
        match &auth {
            // A passphrase or URL token travels in every request and is as good as new to whoever sees one; a
            // signature covers only the body it came with.
            SourceAuth::TradingView { .. } => c.problem(
                at("commands"),
                "operator commands need a signed source: use kind = \"hmac\" or \"standard-webhooks\"",
            ),
            SourceAuth::Hmac(scheme) if scheme.timestamp_header.is_none() => c.warnings.push(format!(
                "{}: without timestamp_header a signed command stays valid forever; anyone who captures one can \
                 send it again once duplicate_window_secs has passed",
                at("commands")
            )),
            _ => {}
        }
    }
    let allow_ips =
        Allowlist::parse(raw.allow_ips.as_deref().unwrap_or_default()).unwrap_or_else(|message| {
            c.problem(at("allow_ips"), message);
            Allowlist::default()
        });
    Some(SourceConfig {
        name,
        auth,
        allow_ips,
        // Off by default: an authenticated sender's volume is bounded by admission control, and a candle close can
        // bring one alert per symbol within a second.
        rate_limit: c.optional_rate(
            (&at("rate_limit_per_minute"), &at("rate_limit_burst")),
            (raw.rate_limit_per_minute, raw.rate_limit_burst),
            (600, 100),
        ),
        client_cert_subject: raw.client_cert_subject.clone(),
        allow_origins: raw
            .allow_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .collect(),
        duplicate_window: Duration::from_secs(c.whole(
            &at("duplicate_window_secs"),
            raw.duplicate_window_secs,
            60,
            0..=86_400,
        )),
        commands,
    })
}

fn symbol(
    c: &mut Checker,
    i: usize,
    raw: RawSymbol,
    default_notional: Decimal,
    seen: &mut HashSet<String>,
    limits: &mut BTreeMap<Symbol, SymbolLimits>,
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
        |v| {
            positive(v)?;
            if v > amount::MAX_QUANTITY || v.scale() > amount::MAX_SCALE {
                return Err(format!(
                    "must be at most {} with at most {} decimal places",
                    amount::MAX_QUANTITY,
                    amount::MAX_SCALE
                ));
            }
            Ok(())
        },
    );
    let margin = margin(
        c,
        &at,
        raw.margin_mode.as_deref(),
        raw.maintenance_margin_rate.as_ref(),
        max_leverage,
    );
    let tick_size = raw.tick_size.as_ref().map(|tick| {
        c.decimal(&at("tick_size"), Some(tick), "0", |v| {
            positive(v)?;
            if v > amount::MAX_PRICE || v.scale() > amount::MAX_SCALE {
                return Err(format!(
                    "must be at most {} with at most {} decimal places",
                    amount::MAX_PRICE,
                    amount::MAX_SCALE
                ));
            }
            Ok(())
        })
    });
    let own = SymbolLimits {
        entry_cooldown_ms: millis_of_secs(c, &at("entry_cooldown_secs"), raw.entry_cooldown_secs),
        max_price_deviation: price_deviation(
            c,
            &at("max_price_deviation"),
            raw.max_price_deviation.as_ref(),
        ),
    };
    if own != SymbolLimits::default() {
        limits.insert(symbol.clone(), own);
    }
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
        margin,
        tick_size,
    })
}

/// A symbol's `margin_mode` and `maintenance_margin_rate`. The rate must stay below the initial margin rate at the
/// symbol's highest leverage (1 / max_leverage), or a position opened at that leverage would be liquidated at once.
fn margin(
    c: &mut Checker,
    at: &dyn Fn(&str) -> String,
    margin_mode: Option<&str>,
    maintenance_margin_rate: Option<&DecimalText>,
    max_leverage: Leverage,
) -> MarginSpec {
    let mode = match margin_mode {
        None | Some("cross") => MarginMode::Cross,
        Some("isolated") => MarginMode::Isolated,
        Some(other) => {
            c.problem(
                at("margin_mode"),
                format!("`{other}` is not one of cross, isolated"),
            );
            MarginMode::Cross
        }
    };
    let default_rate = MarginSpec::DEFAULT_MAINTENANCE_RATE.to_string();
    let highest_rate = Decimal::ONE / max_leverage.as_decimal();
    let maintenance_rate = c.decimal(
        &at("maintenance_margin_rate"),
        maintenance_margin_rate,
        &default_rate,
        |v| {
            if v <= Decimal::ZERO || v >= highest_rate {
                return Err(format!(
                    "must be greater than 0 and below {} (1 / max_leverage {max_leverage}), or a position at the \
                     highest leverage would be liquidated as it opens",
                    highest_rate.normalize()
                ));
            }
            Ok(())
        },
    );
    MarginSpec {
        mode,
        maintenance_rate,
        brackets: std::sync::Arc::new([]),
    }
}

/// One `[[notifications]]` table: its kind's keys present, secrets from the environment, events known.
fn notification(
    c: &mut Checker,
    i: usize,
    raw: super::raw::RawNotification,
) -> Option<crate::notify::NotificationConfig> {
    use crate::notify::settings::{self as n, Channel, Topic};
    let path = |key: &str| format!("notifications[{i}].{key}");
    let before = c.problems.len();
    let name = c.required(&path("name"), raw.name.filter(|s| !s.trim().is_empty()));
    // The variable's value; a problem naming the key when it is missing or unset.
    let from_env = |c: &mut Checker, key: &str, name: Option<&String>| {
        let name = c.required(&path(key), name)?;
        let value = (c.env)(name).filter(|v| !v.is_empty());
        if value.is_none() {
            c.problem(path(key), format!("{name} is not set"));
        }
        value
    };
    let allow_private = raw.allow_private.unwrap_or(false);
    let channel = match raw.kind.as_deref() {
        Some("telegram") => {
            let token = from_env(c, "token_env", raw.token_env.as_ref());
            let chat_id = match c.required(&path("chat_id"), raw.chat_id) {
                Some(super::raw::ChatId::Number(id)) => Some(id.to_string()),
                Some(super::raw::ChatId::Text(id)) => Some(id),
                None => None,
            };
            let base = raw.api_base.as_deref().unwrap_or(n::DEFAULT_TELEGRAM_API);
            let api_base = n::parse_url(base)
                .map_err(|e| c.problem(path("api_base"), e))
                .ok();
            match (token, chat_id, api_base) {
                (Some(token), Some(chat_id), Some(api_base)) => Some(Channel::Telegram {
                    api_base,
                    token: Secret::new(token),
                    chat_id,
                }),
                _ => None,
            }
        }
        Some(kind @ ("discord" | "slack")) => {
            let url = from_env(c, "url_env", raw.url_env.as_ref());
            let url = url.filter(|u| match n::parse_url(u) {
                Ok(_) => true,
                Err(e) => {
                    let var = raw.url_env.as_deref().unwrap_or_default();
                    c.problem(path("url_env"), format!("{var} {e}"));
                    false
                }
            });
            url.map(|u| match kind {
                "discord" => Channel::Discord {
                    url: Secret::new(u),
                },
                _ => Channel::Slack {
                    url: Secret::new(u),
                },
            })
        }
        Some("webhook") => {
            let url = c
                .required(&path("url"), raw.url.as_deref())
                .and_then(|u| n::parse_url(u).map_err(|e| c.problem(path("url"), e)).ok());
            let secret = from_env(c, "secret_env", raw.secret_env.as_ref());
            let key = secret.and_then(|s| {
                let var = raw.secret_env.as_deref().unwrap_or_default();
                decode_secret(&s)
                    .map_err(|e| c.problem(path("secret_env"), format!("{var} {e}")))
                    .ok()
            });
            match (url, key) {
                (Some(url), Some(key)) => Some(Channel::Webhook {
                    url,
                    key: Secret::new(key),
                }),
                _ => None,
            }
        }
        Some(other) => {
            c.problem(
                path("kind"),
                format!("`{other}` is not one of telegram, discord, slack, webhook"),
            );
            None
        }
        None => {
            c.problem(
                path("kind"),
                "is required (telegram, discord, slack or webhook)",
            );
            None
        }
    };
    let topics = match raw.events {
        None => Topic::defaults(),
        Some(events) => events
            .iter()
            .filter_map(|e| {
                let topic = Topic::parse(e);
                if topic.is_none() {
                    c.problem(
                        path("events"),
                        format!(
                            "`{e}` is not one of fills, exits, denials, rejections, trading_state, venue_faults, \
                             daily_summary"
                        ),
                    );
                }
                topic
            })
            .collect(),
    };
    let mut count =
        |key: &str, value: Option<i64>, default: i64, range: std::ops::RangeInclusive<i64>| {
            let value = value.unwrap_or(default);
            if !range.contains(&value) {
                c.problem(
                    path(key),
                    format!(
                        "must be between {} and {}, not {value}",
                        range.start(),
                        range.end()
                    ),
                );
            }
            value.clamp(*range.start(), *range.end())
        };
    let queue = count("queue", raw.queue, n::DEFAULT_QUEUE as i64, 1..=100_000) as usize;
    let max_retries = count(
        "max_retries",
        raw.max_retries,
        i64::from(n::DEFAULT_MAX_RETRIES),
        0..=10,
    ) as u32;
    let summary_hour_utc = count("summary_hour_utc", raw.summary_hour_utc, 0, 0..=23) as u8;
    if c.problems.len() > before {
        return None;
    }
    Some(crate::notify::NotificationConfig {
        name: name?,
        channel: channel?,
        topics,
        template: raw.template,
        queue,
        max_retries,
        allow_private,
        summary_hour_utc,
    })
}
