//! Floods over real HTTP: refusals from one address, signatures guessed from rotating addresses, idle connections
//! past the connection cap, and a slow body on the operator API.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use common::{Daemon, ADMIN_TOKEN, HMAC_SECRET, PASSPHRASE};
use futures_util::StreamExt;
use serde_json::{json, Value};

const ORDER: &str =
    r#"{"symbol":"BTCUSDT","action":"open_long","position_size":"0.01","price":"45000"}"#;
const JSON: (&str, &str) = ("content-type", "application/json");

/// The test config with `server` keys added to its [server] table and `sources` appended.
fn config(server: &str, sources: &str) -> String {
    let base = common::config("fee_rate = \"0\"\nslippage = \"0\"", sources);
    base.replacen("workers = 1\n", &format!("workers = 1\n{server}\n"), 1)
}

fn count(answers: &[StatusCode], status: StatusCode) -> usize {
    answers.iter().filter(|s| **s == status).count()
}

/// A refusal counter of `GET /api/security`; absent is none.
fn num(counter: &Value) -> usize {
    counter.as_u64().unwrap_or(0) as usize
}

/// Sends `n` requests, 16 at a time, built by `request(i)`; returns the statuses.
async fn flood<F, Fut>(n: usize, request: F) -> Vec<StatusCode>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    futures_util::stream::iter((0..n).map(request))
        .buffer_unordered(16)
        .collect()
        .await
}

#[actix_web::test]
async fn a_flood_of_refused_requests_ends_in_429s_and_a_few_log_lines() {
    common::captured_log();
    let daemon = Daemon::start(&config(
        "",
        r#"
[[sources]]
name = "flood-allowlisted"
kind = "tradingview"
passphrase_env = "TEST_TV_PASSPHRASE"
allow_ips = ["203.0.113.0/24"]
"#,
    ));
    let c = daemon.client();
    let mut tv: Value = serde_json::from_str(ORDER).unwrap();
    tv["passphrase"] = json!(PASSPHRASE);
    let body = tv.to_string();
    let http = awc::Client::default();
    let url = format!("{}/webhook/flood-allowlisted", c.base);

    let answers = flood(3000, |_| {
        let req = http.post(&url).insert_header(JSON);
        let body = body.clone();
        async move {
            let res = req.send_body(body).await.expect("answered");
            if res.status() == StatusCode::TOO_MANY_REQUESTS {
                let retry_after: u64 = res
                    .headers()
                    .get("retry-after")
                    .expect("Retry-After")
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry_after), "{retry_after}");
            }
            res.status()
        }
    })
    .await;
    let (forbidden, limited) = (
        count(&answers, StatusCode::FORBIDDEN),
        count(&answers, StatusCode::TOO_MANY_REQUESTS),
    );
    assert_eq!(forbidden + limited, answers.len(), "only 403 and 429");
    // The default budget: a burst of 20 refusals, then 30 a minute.
    assert!(
        forbidden < 100,
        "{forbidden} answered 403 of {}",
        answers.len()
    );

    let security = c.get("/api/security").await;
    let refusals = &security["refusals"]["flood-allowlisted"];
    assert_eq!(num(&refusals["ip_not_allowed"]), forbidden, "{refusals}");
    // Mostly the refusal budget; the request rate only if many were let through at once.
    assert_eq!(
        num(&refusals["too_many_refusals"]) + num(&refusals["rate_limited_address"]),
        limited,
        "{refusals}"
    );
    assert!(num(&refusals["too_many_refusals"]) > 2000, "{refusals}");

    // One line per reason, not one per refusal ...
    let one_by_one = common::logged(&["webhook refused", "flood-allowlisted"]);
    assert!(
        (1..=6).contains(&one_by_one.len()),
        "{} lines: {one_by_one:#?}",
        one_by_one.len()
    );
    // ... and the rest summed up at the end of the window.
    let deadline = Instant::now() + Duration::from_secs(25);
    let summary = loop {
        let lines = common::logged(&[
            "only the first was logged",
            "flood-allowlisted",
            "too_many_refusals",
        ]);
        if let Some(line) = lines.into_iter().next() {
            break line;
        }
        assert!(Instant::now() < deadline, "no summary line");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    };
    let summed: usize = summary
        .split("count=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(summed > 1 && summed <= limited, "{summary}");
}

fn bad_signature(body: &str) -> String {
    format!(
        "sha256={}",
        sentinel::auth::sign_hex(b"a guessed secret", body.as_bytes())
    )
}

fn good_signature(body: &str) -> String {
    format!(
        "sha256={}",
        sentinel::auth::sign_hex(HMAC_SECRET.as_bytes(), body.as_bytes())
    )
}

/// POSTs `body` to the HMAC source `signals` as forwarded for `client` by the trusted proxy on 127.0.0.1.
async fn signed_for(
    http: &awc::Client,
    base: &str,
    client: &str,
    body: &str,
    signature: &str,
) -> StatusCode {
    http.post(format!("{base}/webhook/signals"))
        .insert_header(JSON)
        .insert_header(("x-forwarded-for", client))
        .insert_header(("x-webhook-signature", signature))
        .send_body(body.to_string())
        .await
        .expect("answered")
        .status()
}

#[actix_web::test]
async fn rotating_addresses_cannot_guess_signatures_at_the_request_rate() {
    let daemon = Daemon::start(&config("trusted_proxies = [\"127.0.0.1\"]", ""));
    let c = daemon.client();
    let http = awc::Client::default();
    let with_id = |id: &str| ORDER.replace("\"price\"", &format!("\"id\":\"{id}\",\"price\""));

    // A sender that authenticated before the attack.
    let honest = "198.51.100.77";
    let body = with_id("before");
    let status = signed_for(&http, &c.base, honest, &body, &good_signature(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // 4,000 addresses, each guessing once.
    let guess = bad_signature(ORDER);
    let answers = flood(4000, |i| {
        let client = format!("100.64.{}.{}", i / 250, i % 250 + 1);
        let (http, base, guess) = (&http, &c.base, &guess);
        async move { signed_for(http, base, &client, ORDER, guess).await }
    })
    .await;
    let (verified, throttled) = (
        count(&answers, StatusCode::UNAUTHORIZED),
        count(&answers, StatusCode::TOO_MANY_REQUESTS),
    );
    assert_eq!(verified + throttled, answers.len(), "only 401 and 429");
    assert!(
        verified < 400,
        "{verified} of 4000 reached signature verification"
    );
    let security = c.get("/api/security").await;
    let refusals = &security["refusals"]["signals"];
    assert_eq!(refusals["bad_signature"], verified, "{refusals}");
    assert_eq!(refusals["auth_throttled"], throttled, "{refusals}");

    // The sender that authenticated before is vouched for: still verified, still accepted.
    let body = with_id("during");
    let status = signed_for(&http, &c.base, honest, &body, &good_signature(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[actix_web::test]
async fn the_addresses_of_one_ipv6_slash_64_are_one_client() {
    let daemon = Daemon::start(&config(
        "trusted_proxies = [\"127.0.0.1\"]\nfailed_auth_burst = 10000",
        "",
    ));
    let c = daemon.client();
    let http = awc::Client::default();
    let guess = bad_signature(ORDER);
    let mut answers = Vec::new();
    for i in 1..=100u32 {
        let client = format!("2001:db8:7:7:{:x}::{:x}", i * 7919 % 65536, i);
        answers.push(signed_for(&http, &c.base, &client, ORDER, &guess).await);
    }
    let (verified, limited) = (
        count(&answers, StatusCode::UNAUTHORIZED),
        count(&answers, StatusCode::TOO_MANY_REQUESTS),
    );
    // A burst of 20 refusals for the whole /64, then 30 a minute.
    assert!((20..=40).contains(&verified), "{verified} answered 401");
    assert_eq!(verified + limited, 100);
    let security = c.get("/api/security").await;
    assert_eq!(
        security["refusals"]["signals"]["too_many_refusals"],
        limited
    );
    // The next /64 is another client.
    let status = signed_for(&http, &c.base, "2001:db8:7:8::1", ORDER, &guess).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Reads what the server sends until it closes the connection; `None` if it is still open after `wait`.
fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A reset is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned())
            }
            Err(_) => return None,
        }
    }
}

#[actix_web::test]
async fn idle_connections_past_the_cap_do_not_starve_new_clients() {
    let daemon = Daemon::start(&config(
        "max_connections = 64\nkeep_alive_secs = 1\nheader_timeout_ms = 1000",
        "",
    ));
    let addr = daemon.addr();
    // 120 connections, more than the cap: half sent a request and sit idle in keep-alive, half never say anything.
    let mut idle: Vec<TcpStream> = (0..120)
        .map(|i| {
            let mut stream = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
            }
            stream
        })
        .collect();

    let started = Instant::now();
    let mut probe = TcpStream::connect(addr).unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = read_until_closed(&mut probe, Duration::from_secs(5)).unwrap_or_default();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );

    // Every idle connection is closed by the daemon, after its answer if it asked for one.
    for (i, stream) in idle.iter_mut().enumerate() {
        let reply = read_until_closed(stream, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("connection {i} still open"));
        if i % 2 == 0 {
            assert!(reply.starts_with("HTTP/1.1 200"), "{i}: {reply:?}");
        } else {
            assert!(
                reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
                "{i}: {reply:?}"
            );
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "closed after {:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn a_slow_body_to_the_operator_api_is_cut_off() {
    let daemon = Daemon::start(&config("body_timeout_ms = 500", ""));
    let addr = daemon.api_addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    // Promises 20 bytes, sends 5, then nothing.
    write!(
        stream,
        "POST /api/trading-state HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 20\r\n\r\n{{\"sta"
    )
    .unwrap();
    let reply = read_until_closed(&mut stream, Duration::from_secs(5)).unwrap_or_default();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    assert!(reply.contains("body_timeout"), "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut off after {:?}",
        started.elapsed()
    );
    let state = daemon.client().get("/api/trading-state").await;
    assert_eq!(state["trading_state"], "active");
}

/// Sends a request head with a chunked body and then a byte of body every 100 ms, forever; returns the answer once
/// the daemon closes the connection, or `None` if it is still open after `wait`.
fn dribble(addr: std::net::SocketAddr, head: &str, wait: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{head}Transfer-Encoding: chunked\r\n\r\n1\r\n{{\r\n"
    )
    .unwrap();
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned())
            }
            Err(_) => {}
        }
        // Writing to a connection the daemon has closed fails: that is a close too.
        if stream.write_all(b"1\r\n \r\n").is_err() {
            return Some(String::from_utf8_lossy(&got).into_owned());
        }
    }
    None
}

#[actix_web::test]
async fn a_body_that_never_ends_does_not_hold_the_connection() {
    let daemon = Daemon::start(&config("body_timeout_ms = 500", ""));
    let addr = daemon.addr();
    // Answered at once (the body is not read), then closed rather than drained.
    let reply = dribble(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(5),
    )
    .expect("the connection was closed");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    // Read until the body timeout, then closed.
    let reply = dribble(
        addr,
        "POST /webhook/signals HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
        Duration::from_secs(5),
    )
    .expect("the connection was closed");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
}
