//! The kill switch from a signed command source: `{"command":"halt"}` to `POST /webhook/{source}`, authenticated like
//! any webhook, carried out like the API's `POST /api/trading-state` and `POST /api/flatten`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{Client, Daemon};
use serde_json::{json, Value};

const OPS_SECRET: &str = "ops-secret-4d8e1b7a";

/// The test config plus a command source that signs a timestamp with every request.
fn ops_config() -> String {
    common::config(
        "fee_rate = \"0\"\nslippage = \"0\"",
        r#"
[[sources]]
name = "ops"
kind = "hmac"
secret_env = "TEST_OPS_SECRET"
timestamp_header = "X-Webhook-Timestamp"
commands = true
"#,
    )
}

fn start() -> Daemon {
    Daemon::start_with_env(
        &ops_config(),
        vec![("TEST_OPS_SECRET".into(), OPS_SECRET.into())],
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// POSTs `body` to the command source, signed with `secret`.
async fn send(client: &Client, secret: &str, body: &Value) -> (StatusCode, Value) {
    let body = body.to_string();
    let headers = common::stamped_headers(secret, now(), &body);
    client.post_json("ops", &body, &headers).await
}

async fn command(client: &Client, body: Value) -> (StatusCode, Value) {
    send(client, OPS_SECRET, &body).await
}

async fn trading_state(client: &Client) -> Value {
    client.get("/api/trading-state").await["trading_state"].clone()
}

fn open_long() -> Value {
    json!({"symbol": "BTCUSDT", "action": "open_long", "price": 50000})
}

#[actix_web::test]
async fn a_signed_halt_halts_and_resume_resumes() {
    let daemon = start();
    let client = daemon.client();

    let (status, answer) = command(
        &client,
        json!({"command": "halt", "reason": "drawdown alert"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"trading_state": "halted"}));
    assert_eq!(trading_state(&client).await, "halted");
    let record = client.act(open_long()).await;
    assert_eq!(
        record["status"], "denied",
        "no entry while halted: {record}"
    );

    let (status, answer) = command(&client, json!({"command": "reducing"})).await;
    assert_eq!(
        (status, &answer),
        (StatusCode::OK, &json!({"trading_state": "reducing"}))
    );
    assert_eq!(trading_state(&client).await, "reducing");

    let (status, answer) = command(&client, json!({"command": "resume"})).await;
    assert_eq!(
        (status, &answer),
        (StatusCode::OK, &json!({"trading_state": "active"}))
    );
    assert_eq!(trading_state(&client).await, "active");
    let record = client.act(open_long()).await;
    assert_eq!(record["status"], "filled", "{record}");
}

#[actix_web::test]
async fn a_command_that_is_not_signed_right_changes_nothing() {
    let daemon = start();
    let client = daemon.client();
    let halt = json!({"command": "halt"});

    let (status, answer) = send(&client, "not-the-ops-secret", &halt).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (status, answer) = client.post_json("ops", &halt.to_string(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    // Signed for another moment than the one it arrives at: a capture replayed later.
    let body = halt.to_string();
    let stale = common::stamped_headers(OPS_SECRET, now() - 3600, &body);
    let (status, answer) = client.post_json("ops", &body, &stale).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");

    assert_eq!(trading_state(&client).await, "active");
    let record = client.act(open_long()).await;
    assert_eq!(record["status"], "filled", "{record}");
}

#[actix_web::test]
async fn the_same_signed_command_twice_is_a_duplicate() {
    let daemon = start();
    let client = daemon.client();
    let body = json!({"command": "halt"}).to_string();
    let headers = common::stamped_headers(OPS_SECRET, now(), &body);
    let (status, answer) = client.post_json("ops", &body, &headers).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = client.post_json("ops", &body, &headers).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "{answer}"
    );
}

#[actix_web::test]
async fn flatten_closes_the_open_paper_position() {
    let daemon = start();
    let client = daemon.client();
    let record = client.act(open_long()).await;
    assert_eq!(record["status"], "filled", "{record}");
    assert!(client.position("BTCUSDT").await.is_some());

    let (status, answer) = command(&client, json!({"command": "flatten"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["trading_state"], "reducing");
    let closing = answer["closing"].as_array().unwrap();
    assert_eq!(closing.len(), 1, "{answer}");
    assert_eq!(closing[0]["symbol"], "BTCUSDT");
    let record = client.done(closing[0]["signal_id"].as_str().unwrap()).await;
    assert_eq!(record["status"], "filled", "{record}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get("/api/positions").await["positions"] != json!([]) {
        assert!(Instant::now() < deadline, "the position was not closed");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(trading_state(&client).await, "reducing");
}

#[actix_web::test]
async fn a_command_source_takes_only_commands() {
    let daemon = start();
    let client = daemon.client();
    for body in [
        open_long(),
        json!({"command": "buy_everything"}),
        json!({"command": 1}),
        json!({"command": "halt", "symbol": "BTCUSDT"}),
    ] {
        let (status, answer) = command(&client, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], "command", "{body}: {answer}");
    }
    assert_eq!(trading_state(&client).await, "active");
    assert_eq!(client.get("/api/positions").await["positions"], json!([]));
}

#[actix_web::test]
async fn an_ordinary_source_refuses_commands() {
    let daemon = start();
    let client = daemon.client();
    let (status, answer) = client.signed(r#"{"command":"halt"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "command", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not take operator commands"),
        "{answer}"
    );
    let (status, answer) = client.tradingview(json!({"command": "flatten"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "command", "{answer}");
    assert_eq!(trading_state(&client).await, "active");
}

#[actix_web::test]
async fn an_unauthenticated_command_to_an_ordinary_source_learns_nothing() {
    let daemon = start();
    let client = daemon.client();
    let (status, answer) = client
        .post_json("signals", r#"{"command":"halt"}"#, &[])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
}

#[test]
fn commands_need_a_signed_source() {
    let text = ops_config().replace(
        "name = \"tradingview\"\nkind = \"tradingview\"",
        "name = \"tradingview\"\nkind = \"tradingview\"\ncommands = true",
    );
    let env = |name: &str| match name {
        "TEST_OPS_SECRET" => Some(OPS_SECRET.to_string()),
        other => common::test_env(other),
    };
    let problems = sentinel::Config::parse(&text, ".".into(), &env).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "sources[0].commands");
    assert!(problems[0].message.contains("hmac"), "{problems:?}");

    let config = sentinel::Config::parse(&ops_config(), ".".into(), &env).unwrap();
    assert!(config.source("ops").unwrap().commands);
    assert!(!config.source("signals").unwrap().commands);

    // Without a signed timestamp a captured command passes again later: allowed, with a warning.
    let unstamped = ops_config().replace(
        "timestamp_header = \"X-Webhook-Timestamp\"\ncommands",
        "commands",
    );
    let config = sentinel::Config::parse(&unstamped, ".".into(), &env).unwrap();
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.starts_with("sources[2].commands")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn check_config_refuses_commands_on_a_tradingview_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let text = common::free_config().replace(
        "passphrase_env = \"TEST_TV_PASSPHRASE\"",
        "passphrase_env = \"TEST_TV_PASSPHRASE\"\ncommands = true",
    );
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env("TEST_TV_PASSPHRASE", common::PASSPHRASE)
        .env("TEST_HMAC_SECRET", common::HMAC_SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sources[0].commands: operator commands need a signed source"),
        "{stderr}"
    );
}

#[test]
fn a_command_source_never_runs_on_the_demo_secret() {
    // The signals source falls back to the public demo secret on paper; a command source must not.
    let problems =
        sentinel::Config::parse(&ops_config(), ".".into(), &common::test_env).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "sources[2].secret_env");
}
