//! Operator commands on the running daemon: `sentinel flatten | halt | resume` over its API with the admin token.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::{json, Value};

use common::{Client, Daemon, ADMIN_TOKEN};

/// The harness's config: its `[api]` table names `TEST_ADMIN_TOKEN`.
fn admin_config() -> String {
    common::free_config()
}

/// Runs `sentinel <command>` against the daemon, with the admin token in the environment; its stdout as JSON.
fn sentinel(daemon: &Daemon, command: &str) -> (bool, Value) {
    let config = daemon.dir.path().join("operator.toml");
    std::fs::write(&config, admin_config()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args([command, "--config"])
        .arg(&config)
        .args(["--url", &daemon.api_base])
        .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    let answer = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out.stderr).into_owned()));
    (out.status.success(), answer)
}

async fn trading_state(client: &Client) -> Value {
    client.get("/api/trading-state").await["trading_state"].clone()
}

#[actix_web::test]
async fn flatten_closes_every_position_and_refuses_new_entries() {
    let daemon = Daemon::start(&admin_config());
    let client = daemon.client();
    for (symbol, price) in [("BTCUSDT", 50000), ("ETHUSDT", 3000)] {
        let record = client
            .act(json!({"symbol": symbol, "action": "open_long", "price": price}))
            .await;
        assert_eq!(record["status"], "filled", "{record}");
    }
    assert!(client.position("BTCUSDT").await.is_some());

    let (ok, answer) = sentinel(&daemon, "flatten");
    assert!(ok, "{answer}");
    assert_eq!(answer["trading_state"], "reducing");
    assert_eq!(answer["closing"].as_array().unwrap().len(), 2, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get("/api/positions").await["positions"] != json!([]) {
        assert!(Instant::now() < deadline, "positions were not closed");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    for close in answer["closing"].as_array().unwrap() {
        let record = client.done(close["signal_id"].as_str().unwrap()).await;
        assert_eq!(record["status"], "filled", "{record}");
    }
    assert_eq!(trading_state(&client).await, "reducing");
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "price": 50000}))
        .await;
    assert_eq!(
        record["status"], "denied",
        "no new entry after a flatten: {record}"
    );

    let (ok, answer) = sentinel(&daemon, "halt");
    assert!(ok, "{answer}");
    assert_eq!(trading_state(&client).await, "halted");
    let (ok, answer) = sentinel(&daemon, "resume");
    assert!(ok, "{answer}");
    assert_eq!(trading_state(&client).await, "active");
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "price": 50000}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
}

#[actix_web::test]
async fn flatten_needs_the_admin_token() {
    let daemon = Daemon::start(&admin_config());
    let client = daemon.client();
    let (status, body) = client
        .request(awc::http::Method::POST, "/api/flatten")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = client.request(awc::http::Method::GET, "/api/flatten").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn operator_commands_need_the_token_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, admin_config()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["halt", "--config"])
        .arg(&config)
        .env_remove("TEST_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TEST_ADMIN_TOKEN is not set"), "{stderr}");
}
