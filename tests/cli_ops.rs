//! The `sentinel` binary as operators run it: into a pipe that closes early, without a config file, with JSON logs,
//! and as a container's health check.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{free_config, Daemon, PASSPHRASE};
use serde_json::{json, Value};

fn sentinel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sentinel"))
}

/// A journal written by a real daemon: `signals` TradingView signals, each done. The daemon is stopped.
async fn journal(signals: usize) -> (tempfile::TempDir, Vec<String>) {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let mut ids = Vec::new();
    for n in 0..signals {
        let (status, answer) = c
            .tradingview(
                json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.001",
                                "price":"40000","id":format!("pipe-{n}"),
                                "comment":"x".repeat(2000)}),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["signal_id"].as_str().unwrap().to_string());
    }
    c.done(ids.last().unwrap()).await;
    (daemon.stop_keeping_journal(), ids)
}

/// Runs `command` with its stdout a pipe whose reading end is already closed: every write to it fails with EPIPE.
fn into_closed_pipe(mut command: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command
        .stdout(writer)
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    command.output().expect("the binary runs")
}

#[actix_web::test]
async fn every_command_stops_quietly_when_its_reader_is_gone() {
    let (dir, ids) = journal(1).await;
    let db = dir.path().join("sentinel.db");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let backup = dir.path().join("backup.db");
    let cases: Vec<Vec<&str>> = vec![
        vec!["token"],
        vec!["check-config", "--config", config],
        vec!["sign", "--secret-env", "PIPE_TEST_SECRET"],
        vec!["journal", "--path", db.to_str().unwrap(), "tail"],
        vec!["journal", "--path", db.to_str().unwrap(), "show", &ids[0]],
        vec!["journal", "--path", db.to_str().unwrap(), "export"],
        vec![
            "journal",
            "--path",
            db.to_str().unwrap(),
            "backup",
            backup.to_str().unwrap(),
        ],
    ];
    for args in cases {
        let mut command = sentinel();
        command.args(&args).env("PIPE_TEST_SECRET", "s3cret");
        let out = into_closed_pipe(command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert_eq!(stderr, "", "{args:?}");
    }
}

/// `sentinel journal export | head -1`.
#[actix_web::test]
async fn journal_export_into_head_stops_quietly() {
    let (dir, _) = journal(60).await;
    let db = dir.path().join("sentinel.db");
    // More than a pipe holds, so the export is still writing when its reader goes away.
    let whole = dir.path().join("export.jsonl");
    let out = sentinel()
        .arg("journal")
        .arg("--path")
        .arg(&db)
        .args(["export", "--out"])
        .arg(&whole)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(std::fs::metadata(&whole).unwrap().len() > 256 * 1024);

    let mut child = sentinel()
        .arg("journal")
        .arg("--path")
        .arg(&db)
        .arg("export")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["type"], "signal");
    // The reader is dropped here, closed after one line, as `head -1` does.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?} {stderr}", out.status);
    assert_eq!(stderr, "");
}

#[test]
fn a_missing_config_file_is_named_once_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("config.toml");
    let missing = missing.to_str().unwrap();
    for args in [
        vec!["run", "--config", missing],
        vec!["check-config", "--config", missing],
        vec!["journal", "--config", missing, "tail"],
    ] {
        let out = sentinel().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr,
            format!("error: config file {missing} not found: pass --config PATH\n"),
            "{args:?}"
        );
    }
}

/// POSTs `body` to `http://{addr}{path}` over a fresh connection; the status code and the JSON answer.
fn post(addr: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_default();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn json_logs_are_one_object_a_line_and_name_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, free_config()).unwrap();
    let mut child = sentinel()
        .args(["run", "--log-format", "json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .envs(
            [
                "TEST_TV_PASSPHRASE",
                "TEST_HMAC_SECRET",
                "TEST_READ_TOKEN",
                "TEST_ADMIN_TOKEN",
            ]
            .into_iter()
            .filter_map(|name| common::test_env(name).map(|value| (name, value))),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let seen = std::cell::RefCell::new(Vec::new());
    let next = || {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the daemon logs within 30 s");
        let parsed: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        seen.borrow_mut().push(line);
        parsed
    };
    let webhooks = loop {
        let line = next();
        if line["listener"] == "webhooks" {
            break line["address"].as_str().unwrap().to_string();
        }
    };
    // A wrong passphrase first: refused, and logged without the guess.
    let guess = "a-wrong-guess-at-the-passphrase";
    let refused =
        json!({"passphrase":guess,"symbol":"BTCUSDT","action":"open_long","id":"json-log-0"});
    let (status, answer) = post(&webhooks, "/webhook/tradingview", &refused.to_string());
    assert_eq!(status, 401, "{answer}");
    let body = json!({"passphrase":PASSPHRASE,"symbol":"BTCUSDT","action":"open_long",
                      "position_size":"0.01","price":"40000","id":"json-log-1"});
    let (status, answer) = post(&webhooks, "/webhook/tradingview", &body.to_string());
    assert_eq!(status, 202, "{answer}");
    let signal_id = answer["signal_id"].as_str().unwrap().to_string();
    let done = loop {
        let line = next();
        if line["message"] == "signal done" && line["signal_id"] == signal_id.as_str() {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    // Nothing secret in any line: not the passphrase, not a wrong guess at it, not a token.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        seen.borrow_mut().push(line);
    }
    let secrets: Vec<String> = [PASSPHRASE, guess]
        .into_iter()
        .map(String::from)
        .chain(
            ["TEST_READ_TOKEN", "TEST_ADMIN_TOKEN", "TEST_HMAC_SECRET"]
                .into_iter()
                .filter_map(common::test_env),
        )
        .collect();
    assert!(
        seen.borrow()
            .iter()
            .any(|line| line.contains("webhook refused") && line.contains("bad_passphrase")),
        "the refusal is logged"
    );
    for secret in &secrets {
        assert!(
            seen.borrow()
                .iter()
                .all(|line| !line.contains(secret.as_str())),
            "a secret in the log"
        );
    }
    assert_eq!(done["symbol"], "BTCUSDT", "{done}");
    assert_eq!(done["status"], "filled", "{done}");
    assert_eq!(done["level"], "INFO", "{done}");
}

#[test]
fn healthcheck_exits_by_the_daemons_answer() {
    let daemon = Daemon::start(&free_config());
    let check = |url: &str| {
        sentinel()
            .args(["healthcheck", "--url", url])
            .output()
            .unwrap()
    };
    let healthy = check(&format!("{}/healthz", daemon.base));
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );

    let api = check(&format!("{}/healthz", daemon.api_base));
    assert!(
        api.status.success(),
        "{}",
        String::from_utf8_lossy(&api.stderr)
    );

    let not_found = check(&format!("{}/no-such-page", daemon.base));
    assert_eq!(not_found.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_found.stderr).contains("404"));

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let gone = check(&format!("http://{closed}/healthz"));
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot be reached"));
}
