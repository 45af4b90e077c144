//! The `sentinel` command: run the daemon, check a configuration, sign a body, make a token, read the journal.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sentinel::auth::{decode_secret, sign_standard, HmacScheme, SourceAuth, StandardWebhooks};
use sentinel::config::ConfigError;
use sentinel::control::Control;
use sentinel::journal::{JournalReader, Page};
use sentinel::secret::Secret;
use sentinel::Config;

/// `println!` that stops quietly when stdout is a closed pipe (`sentinel check-config | head -1`): `println!` panics
/// there. Exit 0, since the reader had what it wanted.
macro_rules! out {
    ($($arg:tt)*) => {
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: cannot write the output: {e}");
            std::process::exit(1);
        }
    };
}

/// glibc gives each busy thread a malloc arena of its own and keeps what it frees: under sustained overload the
/// daemon's three busy threads (HTTP worker, actors, journal writer) held three arenas of 15-29 MiB each. Two arenas
/// keep memory flat at the cost of some lock sharing (measured: docs/benchmarks.md).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called first thing in main, before any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[derive(Parser)]
#[command(
    name = "sentinel",
    version,
    about = "Trading-signal webhooks in, risk-checked exchange orders out."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read the journal: recent signals, one signal's story, or everything as JSON lines.
    Journal {
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        /// The journal file (default: the configured `journal.path`).
        #[arg(long)]
        path: Option<PathBuf>,
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Run the daemon.
    Run {
        /// The configuration file.
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        /// Serve webhooks on this address instead of the configured `server.listen`.
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<SocketAddr>,
        /// Serve the operator API on this address instead of the configured `api.listen`.
        #[arg(long, value_name = "HOST:PORT")]
        api_listen: Option<SocketAddr>,
        /// Log lines as `text` (for people) or `json` (one object a line, for log collectors).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Check a configuration: print every problem with its key path (exit 1), or a summary (exit 0).
    CheckConfig {
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Halt the running daemon: no order at all until `resume` (needs api.admin_token_env's token).
    Halt {
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        /// The daemon's API base URL (default: from api.listen).
        #[arg(long)]
        url: Option<String>,
    },
    /// Resume trading on the running daemon (trading state `active`).
    Resume {
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        #[arg(long)]
        url: Option<String>,
    },
    /// Close every open position on the running daemon, and refuse new entries (trading state `reducing`).
    Flatten {
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        #[arg(long)]
        url: Option<String>,
    },
    /// Event rules: see what they would do, without trading.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Print a fresh random token (32 bytes, URL-safe base64) for the API's read or admin token, or a URL token.
    Token,
    /// Exit 0 if the daemon answers GET /healthz with 200, 1 otherwise: a container health check without curl.
    Healthcheck {
        /// The API listener's /healthz by default: plain HTTP even when the webhooks are served over TLS.
        #[arg(long, default_value = "http://127.0.0.1:9471/healthz")]
        url: String,
    },
    /// Print the headers that sign a body read from stdin, one `Name: value` per line (for curl -H).
    ///
    /// With --source, signs as that configured source expects (its scheme, header names and first secret);
    /// otherwise as --scheme with the secret in --secret-env.
    Sign {
        /// Sign for this source of the configuration.
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Scheme::Hmac)]
        scheme: Scheme,
        /// The environment variable that holds the secret (without --source).
        #[arg(long, default_value = "SENTINEL_SIGNALS_SECRET")]
        secret_env: String,
        /// hmac: the signature header (GitHub: X-Hub-Signature-256).
        #[arg(long, default_value = "X-Webhook-Signature")]
        header: String,
        /// hmac: also send and sign a Unix timestamp in this header.
        #[arg(long)]
        timestamp_header: Option<String>,
        /// standard-webhooks: the delivery id (default: a fresh one).
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// The most recent signals with their outcomes, newest last.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        count: usize,
    },
    /// One signal's whole story: the payload, the decision, risk, orders, fills and outcome.
    Show { signal_id: String },
    /// Every signal and event as JSON lines, oldest first.
    Export {
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A consistent copy of the journal into PATH, safe while the daemon runs (restore: docs/operations.md).
    Backup {
        #[arg(value_name = "PATH")]
        to: PathBuf,
        /// Overwrite PATH if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// What each rule listening to the event in FILE (a webhook's JSON body, with `event`) would do with it on a
    /// fresh start: whether it fires, and the signal or action it would take. Nothing is sent or traded.
    Test {
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        /// The event, as JSON.
        #[arg(long, value_name = "FILE")]
        event: PathBuf,
        /// The source it comes from: a `[[sources]]` name, or the venue (`binance-futures`). Default: the first
        /// source.
        #[arg(long)]
        source: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scheme {
    /// `X-Webhook-Signature: sha256=<hex>` (header name configurable), optionally with a signed timestamp.
    Hmac,
    /// Standard Webhooks v1: webhook-id, webhook-timestamp, webhook-signature; the secret is `whsec_<base64>`.
    StandardWebhooks,
}

/// Sends an operator command to the running daemon and prints its answer.
fn control(config: PathBuf, url: Option<String>, control: Control) -> anyhow::Result<()> {
    let (url, token) = sentinel::control::target(&config, url, &|name| std::env::var(name).ok())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime.block_on(sentinel::control::send(&url, &token, control))?;
    out!("{answer}");
    Ok(())
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            listen,
            api_listen,
            log_format,
        } => run(config, (listen, api_listen), log_format),
        Command::CheckConfig { config } => return check_config(config),
        Command::Halt { config, url } => control(config, url, Control::Halt),
        Command::Resume { config, url } => control(config, url, Control::Resume),
        Command::Flatten { config, url } => control(config, url, Control::Flatten),
        Command::Token => sentinel::secret::generate_token()
            .context("the operating system's random generator failed")
            .map(|token| out!("{token}")),
        Command::Healthcheck { url } => return healthcheck(&url),
        Command::Rules {
            command:
                RulesCommand::Test {
                    config,
                    event,
                    source,
                },
        } => rules_test(&config, &event, source),
        Command::Journal {
            config,
            path,
            command,
        } => journal(&config, path, command),
        Command::Sign {
            source,
            config,
            scheme,
            secret_env,
            header,
            timestamp_header,
            id,
        } => {
            let auth = match source {
                Some(name) => source_auth(&config, &name),
                None => flag_auth(scheme, &secret_env, &header, timestamp_header),
            };
            auth.and_then(|auth| sign(&auth, id))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `sentinel journal export | head -1`: the reader had enough, which is not an error.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

/// Prints the error once (many errors already end with their cause), and exits 2 for a missing config file.
fn report(e: &anyhow::Error) -> ExitCode {
    let missing = e.chain().find_map(|cause| match cause.downcast_ref() {
        Some(ConfigError::Read { path, source })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Some(path)
        }
        _ => None,
    });
    if let Some(path) = missing {
        eprintln!(
            "error: config file {} not found: pass --config PATH",
            path.display()
        );
        return ExitCode::from(2);
    }
    let mut text = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    eprintln!("error: {text}");
    ExitCode::FAILURE
}

/// GETs `url` (the daemon's /healthz): exit 0 on a 200, 1 with the reason on stderr otherwise.
fn healthcheck(url: &str) -> ExitCode {
    let check = async {
        sentinel::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let status = http
            .get(url)
            .send()
            .await
            .with_context(|| format!("{url} cannot be reached"))?
            .status();
        anyhow::ensure!(status.is_success(), "{url} answered {status}");
        Ok(())
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(check));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed log pipe (`sentinel run 2>&1 | head`, a collector that died) must not stop the daemon: the
        // subscriber's own report of a failed write would panic on the same closed stderr.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // One object a line, the event's fields (`signal_id`, `symbol`, `status`) beside `message`.
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Runs the daemon; `listen` overrides the webhook and the API addresses.
fn run(
    path: PathBuf,
    listen: (Option<SocketAddr>, Option<SocketAddr>),
    log_format: LogFormat,
) -> anyhow::Result<()> {
    init_logging(log_format);
    let config = Config::load(&path)?;
    let bind = |address: SocketAddr| -> anyhow::Result<TcpListener> {
        let listener =
            TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    };
    let listeners = sentinel::Listeners {
        webhooks: bind(listen.0.unwrap_or(config.server.listen))?,
        api: bind(listen.1.unwrap_or(config.api.listen))?,
    };
    actix_web::rt::System::new().block_on(async move {
        let (reload, reloads) = tokio::sync::mpsc::channel(1);
        actix_web::rt::spawn(reload_on_hangup(path, reload));
        sentinel::run_with_reloads(config, listeners, shutdown_signal(), reloads).await
    })
}

/// Resolves on the first Ctrl-C or SIGTERM, and from then on a second one exits at once: what was acknowledged is
/// in the journal already, and finishes after the next start.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("can install a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        actix_web::rt::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::warn!(
                "second stop signal: exiting now; unfinished signals finish after the next start"
            );
            std::process::exit(1);
        });
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// On each SIGHUP, reads the configuration file again (with the environment's overrides) and hands it to the
/// daemon; a file with problems is refused whole, and the running configuration stays.
async fn reload_on_hangup(path: PathBuf, reload: tokio::sync::mpsc::Sender<Config>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot install a SIGHUP handler: reloads need a restart");
            return;
        };
        while hangup.recv().await.is_some() {
            match Config::load(&path) {
                Ok(config) => {
                    if reload.send(config).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::error!(
                    "configuration not reloaded, the running one stays: {}",
                    format!("{e:#}").replace('\n', "; ")
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, reload);
}

fn check_config(path: PathBuf) -> ExitCode {
    match Config::load(&path) {
        Ok(config) => {
            out!("{}: ok", path.display());
            for overridden in &config.overridden {
                out!("  override {overridden}");
            }
            out!("  listen   {} (webhooks)", config.server.listen);
            out!("  api      {} (operator API)", config.api.listen);
            out!(
                "  exchange {}",
                match &config.exchange {
                    sentinel::config::ExchangeConfig::Paper {
                        market_data: None, ..
                    } => "paper",
                    sentinel::config::ExchangeConfig::Paper { .. } =>
                        "paper on live Binance prices",
                    sentinel::config::ExchangeConfig::BinanceFutures(_) => "binance-futures",
                }
            );
            match &config.journal.path {
                Some(path) => out!("  journal  {}", path.display()),
                None => out!("  journal  in memory (nothing survives a restart)"),
            }
            for s in &config.sources {
                out!(
                    "  source   {:<16} {:<12} POST /webhook/{}",
                    s.name,
                    s.auth.kind(),
                    s.name
                );
            }
            for s in &config.symbols {
                let r = &s.rules;
                out!(
                    "  symbol   {:<16} {} max leverage {}, max notional {}",
                    s.symbol(),
                    if r.enabled { "enabled," } else { "disabled," },
                    r.max_leverage,
                    r.max_notional
                );
            }
            for r in &config.rules {
                out!(
                    "  rule     {:<16} on {} when {} -> {}",
                    r.name,
                    r.on,
                    r.when,
                    r.action.name()
                );
            }
            for w in &config.warnings {
                out!("  warning  {w}");
            }
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid { path, problems }) => {
            eprintln!("{}: {} problem(s)", path.display(), problems.len());
            for p in problems {
                eprintln!("  {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => report(&e.into()),
    }
}

/// `sentinel rules test`: prints what the rules would do with the event, as JSON.
fn rules_test(
    config: &std::path::Path,
    event: &std::path::Path,
    source: Option<String>,
) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let body = std::fs::read(event)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", event.display()))?;
    let source = source
        .or_else(|| config.sources.first().map(|s| s.name.clone()))
        .unwrap_or_default();
    let report = sentinel::rules::explain(&config, &source, &body).map_err(anyhow::Error::msg)?;
    out!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The configured source's authentication.
fn source_auth(config: &std::path::Path, name: &str) -> anyhow::Result<SourceAuth> {
    let config = Config::load(config)?;
    let source = config
        .source(name)
        .with_context(|| format!("no source named `{name}` in the configuration"))?;
    Ok(source.auth.clone())
}

/// Authentication built from the command line's flags.
fn flag_auth(
    scheme: Scheme,
    secret_env: &str,
    header: &str,
    timestamp_header: Option<String>,
) -> anyhow::Result<SourceAuth> {
    let secret = std::env::var(secret_env)
        .with_context(|| format!("set {secret_env} to the source's secret"))?;
    Ok(match scheme {
        Scheme::Hmac => SourceAuth::Hmac(HmacScheme {
            secrets: vec![Secret::new(secret)],
            signature_header: header.to_ascii_lowercase(),
            timestamp_header: timestamp_header.map(|h| h.to_ascii_lowercase()),
            tolerance_secs: 300,
        }),
        Scheme::StandardWebhooks => SourceAuth::StandardWebhooks(StandardWebhooks {
            keys: vec![Secret::new(
                decode_secret(&secret).map_err(|e| anyhow::anyhow!("{secret_env} {e}"))?,
            )],
            tolerance_secs: 300,
        }),
    })
}

fn sign(auth: &SourceAuth, id: Option<String>) -> anyhow::Result<()> {
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("cannot read the body from stdin")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs() as i64;
    let headers = match auth {
        SourceAuth::Hmac(scheme) => scheme.sign(&body, now),
        SourceAuth::StandardWebhooks(scheme) => {
            let key = scheme.keys.first().context("the source has no secret")?;
            let id = id.unwrap_or_else(|| format!("msg_{now:x}{:x}", std::process::id()));
            let signature = sign_standard(key.expose(), &id, now, &body);
            vec![
                ("webhook-id".to_string(), id),
                ("webhook-timestamp".to_string(), now.to_string()),
                ("webhook-signature".to_string(), signature),
            ]
        }
        SourceAuth::TradingView { .. } => {
            anyhow::bail!("tradingview sources are not signed: put the passphrase in the body or the token in the URL")
        }
    };
    for (name, value) in headers {
        out!("{name}: {value}");
    }
    Ok(())
}

fn journal(
    config: &std::path::Path,
    path: Option<PathBuf>,
    command: JournalCommand,
) -> anyhow::Result<()> {
    match read_journal(config, path, command) {
        // `sentinel journal export | head`: the reader had enough, which is not an error.
        Err(e) if broken_pipe(&e) => Ok(()),
        other => other,
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn read_journal(
    config: &std::path::Path,
    path: Option<PathBuf>,
    command: JournalCommand,
) -> anyhow::Result<()> {
    let path = match path {
        Some(path) => path,
        None => Config::load(config)?
            .journal
            .path
            .context("the configured journal is in memory: there is nothing to read")?,
    };
    // Opened by the commands that read, so that a backup does not depend on the schema version.
    let reader = || JournalReader::open(&path);
    // Written, never printed: `println!` panics when the reader of a pipe goes away.
    let mut stdout = std::io::stdout().lock();
    match command {
        JournalCommand::Tail { count } => {
            let mut rows = reader()?.signals(Page {
                limit: Some(count),
                ..Page::default()
            })?;
            rows.reverse();
            for row in rows {
                let signal = &row["signal"];
                // A tick that fired resting orders names them: `stop_loss@94`.
                let fired: Vec<String> = row["outcome"]["fills"]
                    .as_array()
                    .map(|fills| {
                        fills
                            .iter()
                            .map(|f| {
                                format!(
                                    "{}@{}",
                                    f["reason"].as_str().unwrap_or_default(),
                                    f["price"].as_str().unwrap_or_default()
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let reason = match row["outcome"]["reason"]["code"].as_str() {
                    Some(code) => code.to_string(),
                    None => fired.join(","),
                };
                writeln!(
                    stdout,
                    "{:>6}  {}  {:<10} {:<12} {:<8} {} {}",
                    row["seq"].as_i64().unwrap_or_default(),
                    signal["id"].as_str().unwrap_or_default(),
                    signal["symbol"].as_str().unwrap_or_default(),
                    signal["intent"]["kind"].as_str().unwrap_or_default(),
                    row["status"].as_str().unwrap_or_default(),
                    reason,
                    signal["source"].as_str().unwrap_or_default(),
                )?;
            }
        }
        JournalCommand::Show { signal_id } => {
            let story = reader()?
                .story(&signal_id)?
                .with_context(|| format!("no signal {signal_id} in {}", path.display()))?;
            writeln!(stdout, "{}", serde_json::to_string_pretty(&story)?)?;
        }
        JournalCommand::Export { out } => {
            let mut sink: Box<dyn std::io::Write> = match out {
                Some(file) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&file)
                        .with_context(|| format!("cannot create {}", file.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(stdout)),
            };
            reader()?.export(|line| writeln!(sink, "{line}"))?;
            sink.flush()?;
            return Ok(());
        }
        JournalCommand::Backup { to, force } => {
            let copied = sentinel::journal::backup::backup(&path, &to, force)?;
            writeln!(
                stdout,
                "{} -> {}: {} pages, {} events, last offset {}",
                path.display(),
                to.display(),
                copied.pages,
                copied.events,
                copied.last_offset
            )?;
        }
    }
    stdout.flush()?;
    Ok(())
}
