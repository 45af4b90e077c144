//! The test harness: the real daemon on 127.0.0.1:0 in a thread of its own, and an HTTP client for it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use sentinel::Config;
use serde_json::Value;

pub const PASSPHRASE: &str = "test-passphrase-9f2c";
pub const HMAC_SECRET: &str = "test-hmac-secret-71ab";

/// A config with a TradingView source, an HMAC source, BTCUSDT and ETHUSDT, no fees and no slippage so numbers in
/// assertions are easy to check by hand. `extra` is appended (more symbols, overrides).
pub fn config(exchange: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1

[[sources]]
name = "tradingview"
kind = "tradingview"
passphrase_env = "TEST_TV_PASSPHRASE"

[[sources]]
name = "signals"
kind = "hmac"
secret_env = "TEST_HMAC_SECRET"

[exchange]
kind = "paper"
starting_balance = "10000"
{exchange}

[[symbols]]
symbol = "BTCUSDT"
default_size = "0.01"
default_leverage = 1
max_leverage = 20
max_notional = "100000"
quantity_step = "0.001"

[[symbols]]
symbol = "ETHUSDT"
default_size = "1"
max_leverage = 10
quantity_step = "0.01"
{extra}
"#
    )
}

pub fn free_config() -> String {
    config("fee_rate = \"0\"\nslippage = \"0\"", "")
}

/// The Standard Webhooks spec's example secret.
pub const STANDARD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const URL_TOKEN: &str = "tok_8c1f0e2a9b7d4c3e";
pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
pub const ADMIN_TOKEN: &str = "admin-token-7f3a9c2e5b1d";

pub fn test_env(name: &str) -> Option<String> {
    match name {
        "TEST_TV_PASSPHRASE" => Some(PASSPHRASE.into()),
        "TEST_HMAC_SECRET" => Some(HMAC_SECRET.into()),
        "TEST_STANDARD_SECRET" => Some(STANDARD_SECRET.into()),
        "TEST_URL_TOKEN" => Some(URL_TOKEN.into()),
        "TEST_GITHUB_SECRET" => Some(GITHUB_SECRET.into()),
        "TEST_ADMIN_TOKEN" => Some(ADMIN_TOKEN.into()),
        _ => None,
    }
}

/// The headers that sign `body` at Unix time `ts` for an hmac source with `timestamp_header = "X-Webhook-Timestamp"`.
pub fn stamped_headers(secret: &str, ts: i64, body: &str) -> Vec<(String, String)> {
    let scheme = sentinel::auth::HmacScheme {
        secrets: vec![sentinel::secret::Secret::new(secret)],
        signature_header: "x-webhook-signature".into(),
        timestamp_header: Some("x-webhook-timestamp".into()),
        tolerance_secs: 300,
    };
    scheme.sign(body.as_bytes(), ts)
}

/// A running daemon with its journal in a temporary folder; stopped when dropped.
pub struct Daemon {
    pub base: String,
    pub dir: tempfile::TempDir,
    config_text: String,
    /// Environment variables besides `test_env`'s.
    env: Vec<(String, String)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Daemon {
    pub fn start(config_text: &str) -> Daemon {
        Self::start_in(tempfile::tempdir().unwrap(), config_text, Vec::new())
    }

    /// Starts with `env` set besides `test_env`'s variables (an exchange's API keys).
    pub fn start_with_env(config_text: &str, env: Vec<(String, String)>) -> Daemon {
        Self::start_in(tempfile::tempdir().unwrap(), config_text, env)
    }

    /// Stops the daemon cleanly and starts a new one on the same journal.
    pub fn restart(mut self) -> Daemon {
        self.stop();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Self::start_in(
            dir,
            &self.config_text.clone(),
            std::mem::take(&mut self.env),
        )
    }

    /// Stops the daemon cleanly and hands back its folder, journal included.
    pub fn stop_keeping_journal(mut self) -> tempfile::TempDir {
        self.stop();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Starts a daemon on the journal folder of an earlier one.
    pub fn start_at(dir: tempfile::TempDir, config_text: &str) -> Daemon {
        Self::start_in(dir, config_text, Vec::new())
    }

    /// Starts on the journal folder of an earlier one, with `env` set besides `test_env`'s.
    pub fn start_at_with_env(
        dir: tempfile::TempDir,
        config_text: &str,
        env: Vec<(String, String)>,
    ) -> Daemon {
        Self::start_in(dir, config_text, env)
    }

    fn start_in(dir: tempfile::TempDir, config_text: &str, env: Vec<(String, String)>) -> Daemon {
        // Relative paths (the journal's default `sentinel.db`) resolve against the temporary folder.
        let lookup = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .or_else(|| test_env(name))
        };
        let config = Config::parse(config_text, dir.path().to_path_buf(), &lookup)
            .expect("test config is valid");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new()
                .block_on(sentinel::run(config, listener, async {
                    let _ = stopped.await;
                }))
                .expect("daemon runs");
        });
        Daemon {
            base,
            dir,
            config_text: config_text.to_string(),
            env,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    pub fn client(&self) -> Client {
        Client {
            base: self.base.clone(),
            http: awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .finish(),
        }
    }
}

impl Daemon {
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    pub fn journal_path(&self) -> std::path::PathBuf {
        self.dir.path().join("sentinel.db")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Client {
    pub base: String,
    http: awc::Client,
}

impl Client {
    /// POSTs `body` to `/webhook/{source}` with the given headers; returns the status and the JSON answer.
    pub async fn post(
        &self,
        source: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}/webhook/{source}", self.base));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let mut res = req.send_body(body.to_string()).await.expect("request sent");
        let status = res.status();
        let bytes = res.body().await.expect("body read");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// POSTs a JSON body to `/webhook/{path}` with `headers` besides the content type.
    pub async fn post_json(
        &self,
        path: &str,
        body: &str,
        headers: &[(String, String)],
    ) -> (StatusCode, Value) {
        let mut all: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.push(("content-type", "application/json"));
        self.post(path, body, &all).await
    }

    /// POSTs a TradingView-style JSON body (the passphrase is added).
    pub async fn tradingview(&self, mut body: Value) -> (StatusCode, Value) {
        body["passphrase"] = Value::from(PASSPHRASE);
        self.post(
            "tradingview",
            &body.to_string(),
            &[("content-type", "application/json")],
        )
        .await
    }

    /// POSTs a body signed for the HMAC source.
    pub async fn signed(&self, body: &str) -> (StatusCode, Value) {
        let signature = format!(
            "sha256={}",
            sentinel::auth::sign_hex(HMAC_SECRET.as_bytes(), body.as_bytes())
        );
        self.post(
            "signals",
            body,
            &[
                ("content-type", "application/json"),
                ("x-webhook-signature", &signature),
            ],
        )
        .await
    }

    pub async fn request(&self, method: awc::http::Method, path: &str) -> (StatusCode, Value) {
        let mut res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        let status = res.status();
        let bytes = res.body().await.expect("body read");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.request(awc::http::Method::GET, path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Waits until the signal is done and returns its record.
    pub async fn done(&self, signal_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let signals = self.get("/api/signals?limit=1000").await;
            let record = signals["signals"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["signal"]["id"] == signal_id)
                .cloned();
            if let Some(record) = record {
                if record["status"] != "pending" {
                    return record;
                }
            }
            assert!(
                Instant::now() < deadline,
                "signal {signal_id} not done in time"
            );
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends a TradingView body (with a fresh delivery `id`, so that identical bodies are distinct signals), expects
    /// 202, waits for the outcome and returns its record.
    pub async fn act(&self, mut body: Value) -> Value {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if body.get("id").is_none() {
            body["id"] = Value::from(format!(
                "t{}",
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
        }
        let (status, answer) = self.tradingview(body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        self.done(answer["signal_id"].as_str().unwrap()).await
    }

    /// The open position of `symbol`, if any.
    pub async fn position(&self, symbol: &str) -> Option<Value> {
        let positions = self.get("/api/positions").await;
        positions["positions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["symbol"] == symbol)
            .cloned()
    }
}

/// Starts the `sentinel` binary on `config` with `env` set, and waits until it listens: the process (to kill with
/// SIGKILL, as a crash would) and its base URL.
pub fn start_binary(
    config: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut command = Command::new(env!("CARGO_BIN_EXE_sentinel"));
    command
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("address=").nth(1) {
                if let Some(tx) = tx.take() {
                    let addr = addr.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_string());
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the daemon listens within 30 s");
    (child, format!("http://{addr}"))
}
