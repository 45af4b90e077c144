//! Webhook security over real HTTP: every source kind, every refusal, spoofing, duplicates, slow clients, HTTPS.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{Daemon, GITHUB_SECRET, HMAC_SECRET, PASSPHRASE, STANDARD_SECRET, URL_TOKEN};
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

/// Sources of every kind; `extra_sources` and `server` are appended to the test config.
fn config(server: &str, extra_sources: &str) -> String {
    let sources = format!(
        r#"
[[sources]]
name = "tv-token"
kind = "tradingview"
token_env = "TEST_URL_TOKEN"

[[sources]]
name = "github"
kind = "hmac"
secret_env = ["TEST_GITHUB_SECRET"]
signature_header = "X-Hub-Signature-256"

[[sources]]
name = "stamped"
kind = "hmac"
secret_env = "TEST_HMAC_SECRET"
timestamp_header = "X-Webhook-Timestamp"

[[sources]]
name = "standard"
kind = "standard-webhooks"
secret_env = "TEST_STANDARD_SECRET"
{extra_sources}
"#
    );
    let base = common::config("fee_rate = \"0\"\nslippage = \"0\"", &sources);
    // Server keys belong in the [server] table at the top.
    base.replacen("workers = 1\n", &format!("workers = 1\n{server}\n"), 1)
}

type Headers = Vec<(String, String)>;

fn standard_headers(id: &str, ts: i64, body: &str) -> Headers {
    let key = sentinel::auth::decode_secret(STANDARD_SECRET).unwrap();
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        (
            "webhook-signature".into(),
            sentinel::auth::sign_standard(&key, id, ts, body.as_bytes()),
        ),
    ]
}

async fn post(
    c: &common::Client,
    path: &str,
    body: &str,
    headers: &[(String, String)],
) -> (StatusCode, Value) {
    c.post_json(path, body, headers).await
}

#[actix_web::test]
async fn every_source_kind_accepts_an_honest_request() {
    let daemon = Daemon::start(&config("", ""));
    let c = daemon.client();
    let body = |id: &str| ORDER.replace("\"price\"", &format!("\"id\":\"{id}\",\"price\""));

    let mut tv: Value = serde_json::from_str(ORDER).unwrap();
    tv["passphrase"] = json!(PASSPHRASE);
    let (status, _) = post(&c, "tradingview", &tv.to_string(), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "tradingview passphrase");

    let (status, _) = post(&c, &format!("tv-token/{URL_TOKEN}"), &body("a"), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "tradingview URL token");

    let b = body("b");
    let sig = format!(
        "sha256={}",
        sentinel::auth::sign_hex(GITHUB_SECRET.as_bytes(), b.as_bytes())
    );
    let (status, _) = post(&c, "github", &b, &[("X-Hub-Signature-256".into(), sig)]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "GitHub-style hmac");

    // No id in the body: a replay inside the tolerance is recognised by the signature itself.
    let b = ORDER.replace("0.01", "0.02");
    let stamped = common::stamped_headers(HMAC_SECRET, now(), &b);
    let (status, _) = post(&c, "stamped", &b, &stamped).await;
    assert_eq!(status, StatusCode::ACCEPTED, "hmac with a signed timestamp");
    let (status, answer) = post(&c, "stamped", &b, &stamped).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "a replay"
    );

    let (status, answer) = post(
        &c,
        "standard",
        ORDER,
        &standard_headers("msg_1", now(), ORDER),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "standard webhooks: {answer}");
    assert_eq!(answer["signal_id"], "standard:msg_1");
    let (status, answer) = post(
        &c,
        "standard",
        ORDER,
        &standard_headers("msg_1", now(), ORDER),
    )
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "a retried delivery"
    );

    let record = c.done("standard:msg_1").await;
    assert_eq!(record["status"], "filled");
    assert_eq!(
        c.position("BTCUSDT").await.unwrap()["quantity"],
        "0.06",
        "four orders of 0.01 and one of 0.02"
    );
}

#[actix_web::test]
async fn refusals_have_the_right_status_and_place_nothing() {
    let daemon = Daemon::start(&config(
        "body_limit_bytes = 2048",
        r#"
[[sources]]
name = "tv-allowlisted"
kind = "tradingview"
passphrase_env = "TEST_TV_PASSPHRASE"
allow_ips = ["tradingview"]

[[sources]]
name = "slow-lane"
kind = "tradingview"
token_env = "TEST_URL_TOKEN"
rate_limit_per_minute = 1
rate_limit_burst = 2
"#,
    ));
    let c = daemon.client();
    // Well past the 300 s tolerance both ways: `now()` is truncated to the second, so one second of margin could
    // fall inside the tolerance by the time the daemon looks at the clock.
    let old = now() - 330;
    let unauthorized: Vec<(String, Headers, &str)> = vec![
        ("tv-token/tok_wrong_wrong_wrong".into(), vec![], "bad_token"),
        (
            "tv-token".into(),
            vec![],
            "not a token source path: 404 below",
        ),
        (
            "stamped".into(),
            common::stamped_headers(HMAC_SECRET, old, ORDER),
            "stale_timestamp",
        ),
        (
            "stamped".into(),
            common::stamped_headers("wrong", now(), ORDER),
            "bad_signature",
        ),
        (
            "standard".into(),
            standard_headers("msg_2", old, ORDER),
            "stale_timestamp",
        ),
        (
            "standard".into(),
            standard_headers("msg_3", now() + 330, ORDER),
            "stale_timestamp",
        ),
        ("github".into(), vec![], "missing_header"),
    ];
    for (path, headers, why) in &unauthorized {
        let (status, answer) = post(&c, path, ORDER, headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {why}");
        assert_eq!(
            answer,
            json!({"error":{"code":"unauthorized","message":"authentication failed"}}),
            "no detail"
        );
    }

    let mut tv: Value = serde_json::from_str(ORDER).unwrap();
    tv["passphrase"] = json!(PASSPHRASE);
    let (status, answer) = post(&c, "tv-allowlisted", &tv.to_string(), &[]).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );

    let big = format!(
        "{{\"symbol\":\"BTCUSDT\",\"pad\":\"{}\"}}",
        "x".repeat(4096)
    );
    let (status, answer) = post(&c, "tradingview", &big, &[]).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    // Chunked, so no Content-Length tells the size in advance.
    let chunks = (0..8).map(|_| Ok::<_, std::io::Error>(web_bytes(&"y".repeat(512))));
    let mut res = awc::Client::default()
        .post(format!("{}/webhook/tradingview", c.base))
        .insert_header(JSON)
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "chunked");
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "payload_too_large");
    // A Content-Length that promises more than the limit is refused before any of it is read.
    let reply = raw_request(
        daemon.addr(),
        "POST /webhook/tradingview HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{}",
    );
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");

    let (status, answer) = c
        .post(
            "tradingview",
            "symbol=BTCUSDT",
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );

    let slow = format!("slow-lane/{URL_TOKEN}");
    for i in 0..2 {
        let (status, _) = post(
            &c,
            &slow,
            &ORDER.replace("\"price\"", &format!("\"id\":\"r{i}\",\"price\"")),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let mut res = awc::Client::default()
        .post(format!("{}/webhook/{slow}", c.base))
        .insert_header(JSON)
        .send_body(ORDER.replace("\"price\"", "\"id\":\"r9\",\"price\""))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "rate_limited");

    // Only the two accepted slow-lane signals were ever processed.
    let signals = c.get("/api/signals").await;
    assert_eq!(signals["signals"].as_array().unwrap().len(), 2, "{signals}");
    let security = c.get("/api/security").await;
    let refusals = &security["refusals"];
    assert_eq!(
        refusals["tv-token"]["bad_token"], 2,
        "a wrong token and none"
    );
    assert_eq!(refusals["stamped"]["stale_timestamp"], 1);
    assert_eq!(refusals["stamped"]["bad_signature"], 1);
    assert_eq!(refusals["standard"]["stale_timestamp"], 2);
    assert_eq!(refusals["github"]["missing_header"], 1);
    assert_eq!(refusals["tv-allowlisted"]["ip_not_allowed"], 1);
    assert_eq!(refusals["slow-lane"]["rate_limited_source"], 1);
}

fn web_bytes(s: &str) -> actix_web::web::Bytes {
    actix_web::web::Bytes::copy_from_slice(s.as_bytes())
}

/// Sends raw bytes and returns what came back before the server closed or went quiet.
fn raw_request(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

const ALLOW_SOURCE: &str = r#"
[[sources]]
name = "tv-allowlisted"
kind = "tradingview"
passphrase_env = "TEST_TV_PASSPHRASE"
allow_ips = ["52.89.214.238"]
"#;

#[actix_web::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let mut tv: Value = serde_json::from_str(ORDER).unwrap();
    tv["passphrase"] = json!(PASSPHRASE);
    let body = tv.to_string();

    // No trusted proxy: a client on 127.0.0.1 claiming to be TradingView is still 127.0.0.1.
    let daemon = Daemon::start(&config("", ALLOW_SOURCE));
    let c = daemon.client();
    for header in [
        ("x-forwarded-for", "52.89.214.238"),
        ("forwarded", "for=52.89.214.238"),
    ] {
        let (status, _) = c.post("tv-allowlisted", &body, &[JSON, header]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{header:?}");
    }
    drop(daemon);

    // Behind a trusted proxy on 127.0.0.1, the address it appends is the client.
    let daemon = Daemon::start(&config("trusted_proxies = [\"127.0.0.1\"]", ALLOW_SOURCE));
    let c = daemon.client();
    let (status, _) = c
        .post(
            "tv-allowlisted",
            &body,
            &[JSON, ("x-forwarded-for", "52.89.214.238")],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A client that prepends the allowed address is seen as what the proxy appended.
    let spoof = ("x-forwarded-for", "52.89.214.238, 203.0.113.5");
    let (status, _) = c
        .post(
            "tv-allowlisted",
            &body.replace("0.01", "0.02"),
            &[JSON, spoof],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn fifty_concurrent_identical_deliveries_make_one_order() {
    let daemon = Daemon::start(&config("", ""));
    let c = Rc::new(daemon.client());
    let mut tv: Value = serde_json::from_str(ORDER).unwrap();
    tv["passphrase"] = json!(PASSPHRASE);
    let body = Rc::new(tv.to_string());
    let sends = (0..50).map(|_| {
        let (c, body) = (c.clone(), body.clone());
        async move { c.post("tradingview", &body, &[JSON]).await }
    });
    let answers = futures_util::future::join_all(sends).await;
    let accepted: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .collect();
    let duplicates: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .collect();
    assert_eq!((accepted.len(), duplicates.len()), (1, 49), "{answers:?}");
    let first = &accepted[0].1["signal_id"];
    assert!(duplicates
        .iter()
        .all(|(_, a)| a["status"] == "duplicate" && &a["signal_id"] == first));

    c.done(first.as_str().unwrap()).await;
    let orders = c.get("/api/orders").await;
    assert_eq!(orders["orders"].as_array().unwrap().len(), 1);
    assert_eq!(c.position("BTCUSDT").await.unwrap()["quantity"], "0.01");
}

#[actix_web::test]
async fn a_slow_header_client_is_cut_off() {
    let daemon = Daemon::start(&config("header_timeout_ms = 1000", ""));
    let mut stream = TcpStream::connect(daemon.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    // Half a request head, then nothing: the slowloris pattern.
    stream
        .write_all(b"POST /webhook/tradingview HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(4500),
        "not cut off: {waited:?}"
    );
    let reply = String::from_utf8_lossy(&buf);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
    // The daemon still serves others.
    let reply = raw_request(daemon.addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[actix_web::test]
async fn serves_https_with_the_configured_certificate() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let daemon = Daemon::start(&config(
        &format!("[server.tls]\ncert = \"{dir}/tests/fixtures/cert.pem\"\nkey = \"{dir}/tests/fixtures/key.pem\""),
        "",
    ));
    let client = tls_client(None);
    let url = format!("https://localhost:{}", daemon.addr().port());
    let mut tv: Value = serde_json::from_str(ORDER).unwrap();
    tv["passphrase"] = json!(PASSPHRASE);
    let mut res = client
        .post(format!("{url}/webhook/tradingview"))
        .send_json(&tv)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["status"], "accepted");
    // Plain HTTP on the TLS port gets nothing useful.
    let reply = raw_request(daemon.addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!reply.contains("\"ok\""), "{reply}");
}

/// A client over HTTPS, trusting the test CA, presenting `client` (a fixture name) as its certificate, if any.
fn tls_client(client: Option<&str>) -> awc::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = env!("CARGO_MANIFEST_DIR");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(format!("{dir}/tests/fixtures/ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let tls = match client {
        None => builder.with_no_client_auth(),
        Some(name) => {
            let chain =
                CertificateDer::pem_file_iter(format!("{dir}/tests/fixtures/client-{name}.pem"))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
            let key =
                PrivateKeyDer::from_pem_file(format!("{dir}/tests/fixtures/client-{name}-key.pem"))
                    .unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
        .finish()
}

#[actix_web::test]
async fn a_source_can_require_tradingviews_client_certificate() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let daemon = Daemon::start(&config(
        &format!(
            "[server.tls]\ncert = \"{dir}/tests/fixtures/cert.pem\"\nkey = \"{dir}/tests/fixtures/key.pem\"\n\
             client_ca = \"{dir}/tests/fixtures/clients-ca.pem\""
        ),
        r#"
[[sources]]
name = "tv-mtls"
kind = "tradingview"
passphrase_env = "TEST_TV_PASSPHRASE"
client_cert_subject = "TradingView Webhooks"
"#,
    ));
    let url = format!("https://localhost:{}", daemon.addr().port());
    let mut tv: Value = serde_json::from_str(ORDER).unwrap();
    tv["passphrase"] = json!(PASSPHRASE);
    let send = |client: Option<&'static str>, source: &'static str, id: &'static str| {
        let mut body = tv.clone();
        body["id"] = json!(id);
        let url = url.clone();
        async move {
            let res = tls_client(client)
                .post(format!("{url}/webhook/{source}"))
                .send_json(&body)
                .await
                .unwrap();
            res.status()
        }
    };
    assert_eq!(
        send(Some("tradingview"), "tv-mtls", "m1").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        send(Some("other"), "tv-mtls", "m2").await,
        StatusCode::FORBIDDEN,
        "another subject"
    );
    assert_eq!(
        send(None, "tv-mtls", "m3").await,
        StatusCode::FORBIDDEN,
        "no certificate"
    );
    // Sources that do not ask for one still serve clients without a certificate.
    assert_eq!(send(None, "tradingview", "m4").await, StatusCode::ACCEPTED);
    // The API is plain HTTP on its own listener: TLS is the webhooks'.
    let security = daemon.client().get("/api/security").await;
    assert_eq!(security["refusals"]["tv-mtls"]["client_cert"], 2);
}
