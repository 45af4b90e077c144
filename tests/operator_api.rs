//! The operator API on its own listener: the read and admin tokens, what each listener serves, and the health and
//! readiness probes.

mod common;

use std::time::{Duration, Instant};

use awc::http::{Method, StatusCode};
use serde_json::{json, Value};

use common::{free_config, Client, Daemon, ADMIN_TOKEN, READ_TOKEN};

/// `method url` with `token` as the bearer token, if any: the status and the JSON answer.
async fn call(method: Method, url: &str, token: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut req = awc::Client::default()
        .request(method, url)
        .insert_header(("content-type", "application/json"));
    if let Some(token) = token {
        req = req.insert_header(("authorization", format!("Bearer {token}")));
    }
    let mut res = req.send_body(body.to_string()).await.unwrap();
    let status = res.status();
    let body = res.body().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[actix_web::test]
async fn reads_need_the_read_or_the_admin_token() {
    let daemon = Daemon::start(&free_config());
    let url = format!("{}/api/positions", daemon.api_base);
    let (status, body) = call(Method::GET, &url, None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = call(Method::GET, &url, Some("not-the-read-token-1234"), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(Method::GET, &url, Some(READ_TOKEN), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["positions"], json!([]));
    let (status, body) = call(Method::GET, &url, Some(ADMIN_TOKEN), "").await;
    assert_eq!(status, StatusCode::OK, "the admin token reads too: {body}");
}

#[actix_web::test]
async fn writes_need_the_admin_token() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let state = format!("{}/api/trading-state", daemon.api_base);
    let flatten = format!("{}/api/flatten", daemon.api_base);
    let halt = r#"{"state":"halted"}"#;
    for (url, body) in [(&state, halt), (&flatten, "{}")] {
        let (status, answer) = call(Method::POST, url, Some(READ_TOKEN), body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{url}: {answer}");
    }
    assert_eq!(
        c.get("/api/trading-state").await["trading_state"],
        "active",
        "the read token changed nothing"
    );
    let (status, answer) = call(Method::POST, &state, Some(ADMIN_TOKEN), halt).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(c.get("/api/trading-state").await["trading_state"], "halted");
    let (status, answer) = call(Method::POST, &flatten, Some(ADMIN_TOKEN), "{}").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["trading_state"], "reducing");
}

#[actix_web::test]
async fn only_paper_falls_back_to_the_demo_read_token() {
    // A real exchange with neither token set: reads and writes are off, with a warning; the demo token is refused.
    let live = r#"
[[sources]]
name = "tradingview"
kind = "tradingview"
passphrase_env = "TEST_TV_PASSPHRASE"

[exchange]
kind = "binance-futures"
api_key_env = "KEY"
api_secret_env = "SECRET"

[[symbols]]
symbol = "BTCUSDT"
"#;
    let env = |name: &str| match name {
        "KEY" => Some("a-real-looking-key".to_string()),
        "SECRET" => Some("a-real-looking-secret".to_string()),
        other => common::test_env(other),
    };
    let config = sentinel::Config::parse(live, ".".into(), &env).expect("valid without tokens");
    assert!(config.api.read_token.is_none());
    assert!(config.api.admin_token.is_none());
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("SENTINEL_READ_TOKEN")),
        "{:?}",
        config.warnings
    );
    // The demo token is refused with a real exchange.
    let demo = |name: &str| match name {
        "SENTINEL_READ_TOKEN" => Some(sentinel::config::DEMO_READ_TOKEN.to_string()),
        other => env(other),
    };
    let problems = sentinel::Config::parse(live, ".".into(), &demo).unwrap_err();
    assert!(
        problems.iter().any(|p| p.path == "api.read_token_env"),
        "{problems:?}"
    );

    // With paper and nothing set: the public demo token, and a warning that says so.
    let paper = free_config()
        .replace("read_token_env = \"TEST_READ_TOKEN\"\n", "")
        .replace("admin_token_env = \"TEST_ADMIN_TOKEN\"\n", "");
    let daemon = Daemon::start(&paper);
    let url = format!("{}/api/account", daemon.api_base);
    let demo_token = sentinel::config::DEMO_READ_TOKEN;
    let (status, _) = call(Method::GET, &url, Some(demo_token), "").await;
    assert_eq!(status, StatusCode::OK);
    // And no admin token: writes are off, whoever asks.
    let state = format!("{}/api/trading-state", daemon.api_base);
    let (status, answer) = call(Method::POST, &state, Some(ADMIN_TOKEN), "{}").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SENTINEL_ADMIN_TOKEN"),
        "{answer}"
    );
}

#[actix_web::test]
async fn reads_are_off_without_a_read_token_and_say_how_to_turn_them_on() {
    // What a real exchange without SENTINEL_READ_TOKEN runs with, on the paper exchange (no file can say it: paper
    // falls back to the demo token).
    let daemon = Daemon::start_edited(&free_config(), |config| {
        config.api.read_token = None;
        config.api.read_token_env = "SENTINEL_READ_TOKEN".into();
    });
    let url = format!("{}/api/positions", daemon.api_base);
    let (status, answer) = call(Method::GET, &url, Some(READ_TOKEN), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "reads are off: set SENTINEL_READ_TOKEN"
    );
}

#[actix_web::test]
async fn each_listener_serves_only_its_own_routes() {
    let daemon = Daemon::start(&free_config());
    let (status, answer) = call(
        Method::GET,
        &format!("{}/api/positions", daemon.base),
        Some(READ_TOKEN),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["error"]["code"], "not_found");
    let body = json!({"symbol":"BTCUSDT","action":"open_long","price":45000,"passphrase":common::PASSPHRASE});
    let (status, answer) = call(
        Method::POST,
        &format!("{}/webhook/tradingview", daemon.api_base),
        None,
        &body.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(
        daemon.client().position("BTCUSDT").await.is_none(),
        "nothing was placed"
    );
    // The same webhook on its own listener is taken.
    let (status, answer) = call(
        Method::POST,
        &format!("{}/webhook/tradingview", daemon.base),
        None,
        &body.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

#[actix_web::test]
async fn both_listeners_answer_healthz_and_readyz() {
    let daemon = Daemon::start(&free_config());
    for base in [&daemon.base, &daemon.api_base] {
        let (status, body) = call(Method::GET, &format!("{base}/healthz"), None, "").await;
        assert_eq!((status, body), (StatusCode::OK, json!({"status":"ok"})));
        let (status, body) = call(Method::GET, &format!("{base}/readyz"), None, "").await;
        assert_eq!(
            (status, &body),
            (StatusCode::OK, &json!({"ready":true})),
            "{base}"
        );
    }
    // An operator's halt is a choice, not a fault: still ready.
    let c = daemon.client();
    let (status, _) = c.admin("/api/trading-state", r#"{"state":"halted"}"#).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(Method::GET, &format!("{}/readyz", daemon.base), None, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// `/readyz` until it answers `want`; its last answer.
async fn readyz_until(c: &Client, want: StatusCode) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = c.request(Method::GET, "/readyz").await;
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz still {status}: {body}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn readyz_is_503_while_the_journal_cannot_be_written() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    readyz_until(&c, StatusCode::OK).await;

    // Another process takes SQLite's write lock and keeps it: the daemon's next commit waits out its busy timeout
    // and fails, as it would on a journal it cannot write.
    let holder = rusqlite::Connection::open(daemon.journal_path()).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // A webhook to write: its commit fails after the busy timeout (its answer, 503, may take a while under load).
    let webhook = {
        let url = format!("{}/webhook/tradingview", daemon.base);
        let body = json!({"symbol":"BTCUSDT","action":"open_long","price":45000,"id":"locked-1",
                          "passphrase":common::PASSPHRASE});
        actix_web::rt::spawn(async move {
            awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish()
                .post(url)
                .insert_header(("content-type", "application/json"))
                .send_body(body.to_string())
                .await
                .map(|res| res.status())
        })
    };
    let body = readyz_until(&c, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["ready"], false);
    assert!(
        body["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("journal")),
        "{body}"
    );
    // The API listener says the same.
    let (status, _) = awc::Client::default()
        .get(format!("{}/readyz", daemon.api_base))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // Released: the next write succeeds, and the daemon is ready again.
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    let answered = webhook.await.unwrap().expect("the webhook is answered");
    assert!(
        answered == StatusCode::SERVICE_UNAVAILABLE || answered == StatusCode::ACCEPTED,
        "{answered}"
    );
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","price":45000,"id":"locked-2"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    readyz_until(&c, StatusCode::OK).await;
}

#[test]
fn server_admin_token_env_still_names_the_admin_token_with_a_warning() {
    let text = free_config()
        .replace("admin_token_env = \"TEST_ADMIN_TOKEN\"\n", "")
        .replacen(
            "workers = 1\n",
            "workers = 1\nadmin_token_env = \"TEST_ADMIN_TOKEN\"\n",
            1,
        );
    let config = sentinel::Config::parse(&text, ".".into(), &common::test_env).unwrap();
    assert!(config
        .api
        .admin_token
        .as_ref()
        .is_some_and(|t| t.matches(ADMIN_TOKEN.as_bytes())));
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("server.admin_token_env is deprecated")),
        "{:?}",
        config.warnings
    );
    // Named and unset: a problem, not a silent "writes off".
    let unset = text.replace("TEST_ADMIN_TOKEN", "NOT_SET_ANYWHERE");
    let problems = sentinel::Config::parse(&unset, ".".into(), &common::test_env).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.path == "server.admin_token_env" && p.message.contains("NOT_SET_ANYWHERE")),
        "{problems:?}"
    );
}
