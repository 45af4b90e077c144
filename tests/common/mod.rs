//! The test harness: the real daemon in a thread of its own, its webhook and API listeners on 127.0.0.1:0, and an
//! HTTP client for it that sends webhooks to the one and API requests (with the read token) to the other.

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

[api]
listen = "127.0.0.1:0"
read_token_env = "TEST_READ_TOKEN"
admin_token_env = "TEST_ADMIN_TOKEN"

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
pub const READ_TOKEN: &str = "read-token-4e8b1c9d7a2f";

pub fn test_env(name: &str) -> Option<String> {
    match name {
        "TEST_TV_PASSPHRASE" => Some(PASSPHRASE.into()),
        "TEST_HMAC_SECRET" => Some(HMAC_SECRET.into()),
        "TEST_STANDARD_SECRET" => Some(STANDARD_SECRET.into()),
        "TEST_URL_TOKEN" => Some(URL_TOKEN.into()),
        "TEST_GITHUB_SECRET" => Some(GITHUB_SECRET.into()),
        "TEST_ADMIN_TOKEN" => Some(ADMIN_TOKEN.into()),
        "TEST_READ_TOKEN" => Some(READ_TOKEN.into()),
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
    /// The webhook listener: `POST /webhook/{source}`, `/healthz`, `/readyz`.
    pub base: String,
    /// The API listener: `/api/*`, `/healthz`, `/readyz`.
    pub api_base: String,
    /// The read token the daemon takes (the configured one, or paper's demo token), sent by `Client` on `/api/*`.
    pub read_token: Option<String>,
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

    /// Starts on `config_text` changed by `edit` after it was checked: a configuration no file can express.
    pub fn start_edited(config_text: &str, edit: impl FnOnce(&mut Config)) -> Daemon {
        Self::start_edited_in(tempfile::tempdir().unwrap(), config_text, Vec::new(), edit)
    }

    fn start_in(dir: tempfile::TempDir, config_text: &str, env: Vec<(String, String)>) -> Daemon {
        Self::start_edited_in(dir, config_text, env, |_| {})
    }

    /// Starts with `env` and returns at once, while the daemon may still be starting (its API answers the probes
    /// with a stand-in then). For a daemon that needs the test's own runtime to start (a fake exchange served on
    /// it): the waiting starts block that runtime.
    pub fn start_with_env_unwaited(config_text: &str, env: Vec<(String, String)>) -> Daemon {
        Self::spawn(tempfile::tempdir().unwrap(), config_text, env, |_| {})
    }

    /// `start_at_with_env`, returning at once (see `start_with_env_unwaited`).
    pub fn start_at_with_env_unwaited(
        dir: tempfile::TempDir,
        config_text: &str,
        env: Vec<(String, String)>,
    ) -> Daemon {
        Self::spawn(dir, config_text, env, |_| {})
    }

    /// Waits until the daemon itself answers on its API listener (not the start-up stand-in), or its thread ended
    /// (a configuration the daemon refuses): tests then talk to the daemon, never to the stand-in.
    fn wait_started(&self) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return;
            }
            let answer = std::net::TcpStream::connect(self.api_addr()).and_then(|mut stream| {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                stream.write_all(
                    b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                )?;
                let mut text = String::new();
                stream.read_to_string(&mut text)?;
                Ok(text)
            });
            if let Ok(text) = answer {
                if !text.is_empty() && !text.contains("recovering") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn start_edited_in(
        dir: tempfile::TempDir,
        config_text: &str,
        env: Vec<(String, String)>,
        edit: impl FnOnce(&mut Config),
    ) -> Daemon {
        let daemon = Self::spawn(dir, config_text, env, edit);
        daemon.wait_started();
        daemon
    }

    fn spawn(
        dir: tempfile::TempDir,
        config_text: &str,
        env: Vec<(String, String)>,
        edit: impl FnOnce(&mut Config),
    ) -> Daemon {
        // Relative paths (the journal's default `sentinel.db`) resolve against the temporary folder.
        let lookup = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .or_else(|| test_env(name))
        };
        let mut config = Config::parse(config_text, dir.path().to_path_buf(), &lookup)
            .expect("test config is valid");
        edit(&mut config);
        let bind = || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            (listener, base)
        };
        let (webhooks, base) = bind();
        let (api, api_base) = bind();
        let read_token = config
            .api
            .read_token
            .as_ref()
            .map(|t| String::from_utf8(t.expose().to_vec()).unwrap());
        let listeners = sentinel::Listeners { webhooks, api };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new()
                .block_on(sentinel::run(config, listeners, async {
                    let _ = stopped.await;
                }))
                .expect("daemon runs");
        });
        Daemon {
            base,
            api_base,
            read_token,
            dir,
            config_text: config_text.to_string(),
            env,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The webhook listener's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// The API listener's address.
    pub fn api_addr(&self) -> std::net::SocketAddr {
        self.api_base.trim_start_matches("http://").parse().unwrap()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base, &self.api_base, self.read_token.as_deref())
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
    /// Webhooks go here.
    pub base: String,
    /// `/api/*` goes here, with `read_token`.
    pub api_base: String,
    pub read_token: Option<String>,
    http: awc::Client,
}

impl Client {
    /// A client for a daemon listening at `base` (webhooks) and `api_base`, such as the binary `start_binary` ran.
    pub fn new(base: &str, api_base: &str, read_token: Option<&str>) -> Client {
        Client {
            base: base.to_string(),
            api_base: api_base.to_string(),
            read_token: read_token.map(str::to_string),
            http: awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .finish(),
        }
    }

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

    /// `method path` without a body: `/api/*` to the API listener with the read token, anything else (`/healthz`)
    /// to the webhook listener.
    pub async fn request(&self, method: awc::http::Method, path: &str) -> (StatusCode, Value) {
        let token = self.read_token.clone();
        self.request_as(method, path, token.as_deref()).await
    }

    /// `request` with `token` as the bearer token (`None`: no `Authorization` header).
    pub async fn request_as(
        &self,
        method: awc::http::Method,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let (true, Some(token)) = (path.starts_with("/api/"), token) {
            req = req.insert_header(("authorization", format!("Bearer {token}")));
        }
        let mut res = req.send().await.expect("request sent");
        let status = res.status();
        let bytes = res.body().await.expect("body read");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// POSTs a JSON `body` to the API's `path` with the admin token.
    pub async fn admin(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let mut res = self
            .http
            .post(self.url(path))
            .insert_header(("authorization", format!("Bearer {ADMIN_TOKEN}")))
            .insert_header(("content-type", "application/json"))
            .send_body(body.to_string())
            .await
            .expect("request sent");
        let status = res.status();
        let bytes = res.body().await.expect("body read");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The URL of `path`: on the API listener for `/api/*`, else on the webhook listener.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("/api/") {
            format!("{}{path}", self.api_base)
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.request(awc::http::Method::GET, path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Waits (at most 15 s) until the daemon answers `/readyz` with 200: for a daemon started unwaited.
    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.request(awc::http::Method::GET, "/readyz").await.0 != StatusCode::OK {
            assert!(Instant::now() < deadline, "the daemon did not become ready");
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
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

    /// The open position of `symbol` as a trader reads it: its quantity, negative for a short; `None` when flat.
    pub async fn held(&self, symbol: &str) -> Option<String> {
        self.position(symbol).await.map(|p| {
            let quantity = p["quantity"].as_str().unwrap();
            match p["side"].as_str() {
                Some("short") => format!("-{quantity}"),
                _ => quantity.to_string(),
            }
        })
    }
}

/// Starts the `sentinel` binary on `config` with `env` set, and waits until both listeners listen: the process (to
/// kill with SIGKILL, as a crash would), its webhook base URL and its API base URL.
pub fn start_binary(
    config: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, String, String) {
    let (child, webhooks, api, _) = start_binary_logged(config, env);
    (child, webhooks, api)
}

/// What a daemon started by `start_binary_logged` wrote to its log, kept as it runs (the last 10,000 lines).
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>);

impl Logs {
    const KEPT: usize = 10_000;

    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap();
        if lines.len() == Self::KEPT {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The first line holding `text`, waiting for it at most `within`.
    pub fn wait_for(&self, text: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(line) = self.0.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not log {text:?} within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `start_binary`, keeping what the daemon logs.
pub fn start_binary_logged(
    config: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, String, String, Logs) {
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
    let logs = Logs::default();
    let kept = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // `TEST_DAEMON_LOG=1` shows what the daemon logs, for a failing test.
            if std::env::var_os("TEST_DAEMON_LOG").is_some() {
                eprintln!("daemon: {line}");
            }
            if line.contains("sentinel is listening") {
                let field = |name: &str| {
                    line.split(&format!("{name}=")).nth(1).map(|rest| {
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .trim_matches('"')
                            .to_string()
                    })
                };
                if let (Some(listener), Some(addr)) = (field("listener"), field("address")) {
                    let _ = tx.send((listener, addr));
                }
            }
            kept.push(line);
        }
    });
    let (mut webhooks, mut api) = (None, None);
    while webhooks.is_none() || api.is_none() {
        let (listener, addr) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the daemon listens within 30 s");
        match listener.as_str() {
            "webhooks" => webhooks = Some(format!("http://{addr}")),
            _ => api = Some(format!("http://{addr}")),
        }
    }
    (child, webhooks.unwrap(), api.unwrap(), logs)
}

/// Every event of `kind` in the journal at `path`, oldest first: (offset, time in ms, data). Read while the daemon
/// runs, as an operator's tool would.
pub fn journal_events(path: &std::path::Path, kind: &str) -> Vec<(i64, i64, Value)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT seq, at, data FROM events WHERE kind = ?1 ORDER BY seq")
        .unwrap();
    stmt.query_map([kind], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            serde_json::from_str::<Value>(&row.get::<_, String>(2)?).unwrap(),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// What the daemons started in this test binary log at `info` and above, as plain text lines: what an operator reads.
/// The first call installs the process's log subscriber; every test of the binary shares the one log.
pub fn captured_log() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(sink.clone()))
            .init();
        log
    })
    .clone()
}

/// The lines of the captured log that contain every one of `needles`.
pub fn logged(needles: &[&str]) -> Vec<String> {
    let log = captured_log();
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    text.lines()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .map(str::to_string)
        .collect()
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
