//! The `sentinel` command: run the daemon, check a configuration, sign a body.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sentinel::auth::{sign_hex, SIGNATURE_HEADER};
use sentinel::config::{ConfigError, SourceAuth};
use sentinel::Config;

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
    /// Run the daemon.
    Run {
        /// The configuration file.
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        /// Serve on this address instead of the configured `server.listen`.
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<SocketAddr>,
    },
    /// Check a configuration: print every problem with its key path (exit 1), or a summary (exit 0).
    CheckConfig {
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Print the signature header for a body read from stdin, for testing signed sources with curl.
    Sign {
        /// The environment variable that holds the secret.
        #[arg(long, default_value = "SENTINEL_SIGNALS_SECRET")]
        secret_env: String,
        #[arg(long, value_enum, default_value_t = Scheme::Hmac)]
        scheme: Scheme,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Scheme {
    /// `X-Webhook-Signature: sha256=<hex>`.
    Hmac,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, listen } => run(config, listen),
        Command::CheckConfig { config } => return check_config(config),
        Command::Sign { secret_env, scheme } => sign(&secret_env, scheme),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

fn run(path: PathBuf, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    init_logging();
    let config = Config::load(&path)?;
    let address = listen.unwrap_or(config.server.listen);
    let listener =
        TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
    listener.set_nonblocking(true)?;
    actix_web::rt::System::new().block_on(sentinel::run(config, listener, shutdown_signal()))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can install a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn check_config(path: PathBuf) -> ExitCode {
    match Config::load(&path) {
        Ok(config) => {
            println!("{}: ok", path.display());
            println!("  listen   {}", config.server.listen);
            println!("  exchange paper");
            for s in &config.sources {
                println!(
                    "  source   {:<16} {:<12} POST /webhook/{}",
                    s.name,
                    s.auth.kind(),
                    s.name
                );
            }
            for s in &config.symbols {
                let r = &s.rules;
                println!(
                    "  symbol   {:<16} {} max leverage {}, max notional {}",
                    s.symbol(),
                    if r.enabled { "enabled," } else { "disabled," },
                    r.max_leverage,
                    r.max_notional
                );
            }
            for w in &config.warnings {
                println!("  warning  {w}");
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
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn sign(secret_env: &str, scheme: Scheme) -> anyhow::Result<()> {
    let secret = std::env::var(secret_env)
        .with_context(|| format!("set {secret_env} to the source's secret"))?;
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("cannot read the body from stdin")?;
    match scheme {
        Scheme::Hmac => println!(
            "{SIGNATURE_HEADER}: sha256={}",
            sign_hex(secret.as_bytes(), &body)
        ),
    }
    let _ = SourceAuth::kind;
    Ok(())
}
