//! Security round two over real HTTP: signed replays, opaque delivery ids, secrets anywhere in a payload, browser
//! origins, DNS rebinding, and the admin token.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use awc::http::StatusCode;
use common::{Daemon, ADMIN_TOKEN, HMAC_SECRET, PASSPHRASE, READ_TOKEN};
use serde_json::{json, Value};

const ORDER: &str =
    r#"{"symbol":"BTCUSDT","action":"open_long","position_size":"0.01","price":"45000"}"#;
const JSON: (&str, &str) = ("content-type", "application/json");

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The common test config plus a timestamped HMAC source with no body window, and `server` keys.
fn config(server: &str, extra_sources: &str) -> String {
    let sources = format!(
        r#"
[[sources]]
name = "stamped"
kind = "hmac"
secret_env = "TEST_HMAC_SECRET"
timestamp_header = "X-Webhook-Timestamp"
duplicate_window_secs = {window}
{extra_sources}
"#,
        window = 0
    );
    let base = common::config("fee_rate = \"0\"\nslippage = \"0\"", &sources);
    base.replacen("workers = 1\n", &format!("workers = 1\n{server}\n"), 1)
}

async fn post(
    c: &common::Client,
    path: &str,
    body: &str,
    headers: &[(String, String)],
) -> (StatusCode, Value) {
    c.post_json(path, body, headers).await
}

/// One request over a fresh connection, headers as given (`Host` included): the status and the body. `/api/*` goes
/// to the API listener, with the read token unless `headers` carry an `Authorization`.
fn raw(daemon: &Daemon, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, Value) {
    let api = path.starts_with("/api/");
    let addr = if api {
        daemon.api_addr()
    } else {
        daemon.addr()
    };
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if api
        && !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("authorization:"))
    {
        request.push_str(&format!("Authorization: Bearer {READ_TOKEN}\r\n"));
    }
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let json = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

async fn position(c: &common::Client) -> String {
    c.position("BTCUSDT")
        .await
        .map_or("0".into(), |p| p["quantity"].as_str().unwrap().to_string())
}

#[actix_web::test]
async fn a_signed_request_is_accepted_once_for_as_long_as_it_would_pass() {
    let daemon = Daemon::start(&config("", ""));
    let c = daemon.client();
    // No id, no body window: only the signature can tell the replay.
    let headers = common::stamped_headers(HMAC_SECRET, now() - 200, ORDER);
    let (status, first) = post(&c, "stamped", ORDER, &headers).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    c.done(first["signal_id"].as_str().unwrap()).await;
    for _ in 0..3 {
        let (status, again) = post(&c, "stamped", ORDER, &headers).await;
        assert_eq!(
            (status, &again["status"]),
            (StatusCode::OK, &json!("duplicate"))
        );
        assert_eq!(again["signal_id"], first["signal_id"]);
    }
    // The signature is still remembered after a restart.
    let daemon = daemon.restart();
    let c = daemon.client();
    let (status, again) = post(&c, "stamped", ORDER, &headers).await;
    assert_eq!(
        (status, &again["status"]),
        (StatusCode::OK, &json!("duplicate"))
    );
    assert_eq!(position(&c).await, "0.01", "one order");
    // Signed anew by the sender: a new signal.
    let (status, _) = post(
        &c,
        "stamped",
        ORDER,
        &common::stamped_headers(HMAC_SECRET, now(), ORDER),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[actix_web::test]
async fn a_replay_after_the_body_window_is_still_a_duplicate() {
    // The red team's case: the body window (here 1 s) has passed, the timestamp is still fresh.
    let daemon = Daemon::start(
        &config("", "").replace("duplicate_window_secs = 0", "duplicate_window_secs = 1"),
    );
    let c = daemon.client();
    let headers = common::stamped_headers(HMAC_SECRET, now(), ORDER);
    let (status, first) = post(&c, "stamped", ORDER, &headers).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let (status, again) = post(&c, "stamped", ORDER, &headers).await;
    assert_eq!(
        (status, &again["status"]),
        (StatusCode::OK, &json!("duplicate"))
    );
    c.done(first["signal_id"].as_str().unwrap()).await;
    assert_eq!(position(&c).await, "0.01");
}

#[actix_web::test]
async fn delivery_ids_are_opaque_distinct_and_bounded() {
    let daemon = Daemon::start(&config("", ""));
    let c = daemon.client();
    let with_id = |id: &str| {
        let mut body: Value = serde_json::from_str(ORDER).unwrap();
        body["id"] = json!(id);
        body
    };
    let (status, spaced) = c.tradingview(with_id("order 1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{spaced}");
    let spaced_id = spaced["signal_id"].as_str().unwrap().to_string();
    // A different delivery whose id happens to be the digest the first was stored under.
    let digest = spaced_id
        .split_once('.')
        .map(|(_, d)| d.to_string())
        .unwrap();
    let (status, other) = c.tradingview(with_id(&digest)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{other}");
    assert_ne!(other["signal_id"], spaced["signal_id"]);
    // The same id again is the same delivery.
    let (status, again) = c.tradingview(with_id("order 1")).await;
    assert_eq!(
        (status, &again["signal_id"]),
        (StatusCode::OK, &spaced["signal_id"])
    );
    c.done(&spaced_id).await;
    c.done(other["signal_id"].as_str().unwrap()).await;
    assert_eq!(position(&c).await, "0.02", "two deliveries, two orders");

    // Past the cap: 422 naming the field, and nothing kept.
    let (status, answer) = c.tradingview(with_id(&"x".repeat(129))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "id");
    let (status, _) = c.tradingview(with_id(&"x".repeat(128))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut numeric: Value = serde_json::from_str(ORDER).unwrap();
    numeric["signal_id"] = serde_json::from_str(&"9".repeat(200)).unwrap();
    let (status, answer) = c.tradingview(numeric).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "signal_id");
}

#[actix_web::test]
async fn no_copy_of_a_secret_is_stored_or_served() {
    let daemon = Daemon::start(&config("", ""));
    let c = daemon.client();
    let body = json!({
        "symbol": "BTCUSDT", "action": "open_long", "position_size": "0.01", "price": "45000",
        "Passphrase": PASSPHRASE,
        "meta": { "passphrase": PASSPHRASE, "SECRET": "s3", "tags": ["keep", PASSPHRASE] },
        "comment": format!("sent with {PASSPHRASE} by mistake"),
        "note": "kept",
    });
    let record = c.act(body).await;
    assert_eq!(record["status"], "filled", "{record}");
    let served = c.get("/api/signals").await.to_string();
    assert!(!served.contains(PASSPHRASE), "{served}");
    assert!(!served.contains("s3"), "{served}");
    assert!(
        served.contains("kept") && served.contains("keep"),
        "{served}"
    );
    // A signed source's secret copied into its own body.
    let leaky = format!(
        r#"{{"symbol":"BTCUSDT","signal":"BUY","price":45000,"id":"leak-1","config":{{"key":"{HMAC_SECRET}"}}}}"#
    );
    let (status, answer) = c.signed(&leaky).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    c.done(answer["signal_id"].as_str().unwrap()).await;
    let served = c.get("/api/signals").await.to_string();
    assert!(!served.contains(HMAC_SECRET), "{served}");

    // Nothing of either secret on disk either.
    let dir = daemon.stop_keeping_journal();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        // Files a clean stop removes (the WAL's index) may be gone by now.
        let Ok(bytes) = std::fs::read(entry.unwrap().path()) else {
            continue;
        };
        for secret in [PASSPHRASE, HMAC_SECRET] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found on disk"
            );
        }
    }
}

#[actix_web::test]
async fn browser_origins_are_refused_unless_the_source_allows_them() {
    let extra = r#"
[[sources]]
name = "page"
kind = "hmac"
secret_env = "TEST_HMAC_SECRET"
allow_origins = ["https://dashboard.example"]
"#;
    let daemon = Daemon::start(&config("", extra));
    let c = daemon.client();
    let mut body: Value = serde_json::from_str(ORDER).unwrap();
    body["passphrase"] = json!(PASSPHRASE);
    let text = body.to_string();
    // What a web page's `fetch(..., {mode: "no-cors", body})` sends: text/plain with the page's origin.
    let (status, answer) = c
        .post(
            "tradingview",
            &text,
            &[
                ("content-type", "text/plain"),
                ("origin", "https://evil.example"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, _) = c
        .post(
            "tradingview",
            &text,
            &[("content-type", "text/plain"), ("origin", "null")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(c.position("BTCUSDT").await.is_none(), "nothing placed");
    let (status, _) = c
        .post("tradingview", &text, &[("content-type", "text/plain")])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "no origin: not a browser");

    let signed = |origin: &'static str| {
        let body = ORDER.replace("\"price\"", &format!("\"id\":\"{origin}\",\"price\""));
        let sig = format!(
            "sha256={}",
            sentinel::auth::sign_hex(HMAC_SECRET.as_bytes(), body.as_bytes())
        );
        (body, sig)
    };
    let (body, sig) = signed("https://dashboard.example");
    let (status, answer) = c
        .post(
            "page",
            &body,
            &[
                JSON,
                ("x-webhook-signature", &sig),
                ("origin", "https://dashboard.example"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "a listed origin: {answer}");
    let (body, sig) = signed("https://other.example");
    let (status, _) = c
        .post(
            "page",
            &body,
            &[
                JSON,
                ("x-webhook-signature", &sig),
                ("origin", "https://other.example"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn the_api_answers_only_to_its_own_host_names() {
    let daemon = Daemon::start(&config("api_hosts = [\"sentinel.example.com\"]", ""));
    let (status, body) = raw(
        &daemon,
        "GET",
        "/api/account",
        &["Host: rebound.evil.example"],
        "",
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "host_not_allowed");
    let (status, _) = raw(
        &daemon,
        "GET",
        "/api/positions",
        &["Host: evil.example:8080"],
        "",
    );
    assert_eq!(status, 403);
    for host in [
        "localhost:8080",
        "127.0.0.1",
        "[::1]:80",
        "sentinel.example.com",
    ] {
        let (status, body) = raw(
            &daemon,
            "GET",
            "/api/account",
            &[&format!("Host: {host}")],
            "",
        );
        assert_eq!(status, 200, "{host}: {body}");
    }
    // Webhooks keep coming under the public name, whatever it is.
    let body = json!({"symbol":"BTCUSDT","price":45000,"passphrase":PASSPHRASE}).to_string();
    let (status, _) = raw(
        &daemon,
        "POST",
        "/webhook/tradingview",
        &["Host: hooks.example.net", "Content-Type: application/json"],
        &body,
    );
    assert_eq!(status, 202);
}

#[actix_web::test]
async fn the_admin_token_takes_any_case_of_bearer_and_limits_guesses() {
    let daemon = Daemon::start(&config("", ""));
    let halt = r#"{"state":"halted"}"#;
    let host = "Host: localhost";
    let json_type = "Content-Type: application/json";
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = format!("Authorization: {scheme} {ADMIN_TOKEN}");
        let (status, body) = raw(
            &daemon,
            "POST",
            "/api/trading-state",
            &[host, json_type, &auth],
            halt,
        );
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    // Wrong guesses from one client run into 429 long before many are tried.
    let mut answers = Vec::new();
    for i in 0..20 {
        let auth = format!("Authorization: Bearer wrong-guess-{i:04}-abcdefgh");
        answers.push(
            raw(
                &daemon,
                "POST",
                "/api/trading-state",
                &[host, json_type, &auth],
                halt,
            )
            .0,
        );
    }
    let unauthorized = answers.iter().filter(|&&s| s == 401).count();
    let limited = answers.iter().filter(|&&s| s == 429).count();
    assert!(unauthorized <= 10, "{answers:?}");
    assert!(limited >= 10, "{answers:?}");
}

#[actix_web::test]
async fn wrong_read_tokens_cannot_lock_the_operator_out_of_the_kill_switch() {
    let daemon = Daemon::start(&config("", ""));
    let host = "Host: localhost";
    // A scraper left with an old read token: its failures spend the read budget until reads are answered 429.
    let answers: Vec<u16> = (0..40)
        .map(|i| {
            let auth = format!("Authorization: Bearer old-read-token-{i:04}-abcdefgh");
            raw(&daemon, "GET", "/api/positions", &[host, &auth], "").0
        })
        .collect();
    assert!(answers.contains(&429), "{answers:?}");
    assert!(answers.iter().all(|&s| s == 401 || s == 429), "{answers:?}");
    // The kill switch still answers the admin token at once.
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let (status, body) = raw(
        &daemon,
        "POST",
        "/api/trading-state",
        &[host, "Content-Type: application/json", &auth],
        r#"{"state":"halted"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["trading_state"], "halted", "{body}");
}

#[test]
fn weak_admin_tokens_are_refused_and_sentinel_token_makes_a_strong_one() {
    let parse = |token: String| {
        let text = common::free_config().replace(
            "admin_token_env = \"TEST_ADMIN_TOKEN\"",
            "admin_token_env = \"ADMIN\"",
        );
        sentinel::Config::parse(&text, std::env::temp_dir(), &move |name: &str| {
            if name == "ADMIN" {
                Some(token.clone())
            } else {
                common::test_env(name)
            }
        })
    };
    for weak in [
        " ".repeat(16),
        "a".repeat(16),
        "é".repeat(8),
        "ab".repeat(12),
    ] {
        let error = format!("{:?}", parse(weak.clone()).unwrap_err());
        assert!(error.contains("api.admin_token_env"), "{weak:?}: {error}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .arg("token")
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 43, "{token}");
    assert!(parse(token).is_ok());
}
