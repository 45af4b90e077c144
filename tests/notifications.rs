//! Notifications: the daemon tells Telegram, Discord, Slack and a signed webhook about a fill, over real HTTP to
//! receivers on loopback; retries a failing receiver; never lets a hanging one delay orders; and refuses private
//! addresses unless allowed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::{free_config, Client, Daemon};
use sentinel::auth::{decode_secret, StandardWebhooks};
use sentinel::secret::Secret;
use serde_json::{json, Value};

const BOT_TOKEN: &str = "123456:test-bot-token-AbC";
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: actix_web::http::header::HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How a receiver answers.
#[derive(Clone, Copy)]
enum Behaviour {
    Ok,
    /// 500 to the first `n` requests, then 200.
    FailFirst(usize),
    /// No answer until released.
    Hang,
    /// 307 to this port on 127.0.0.1, where another receiver listens.
    Redirect(u16),
}

/// An HTTP server on 127.0.0.1:0 in a thread of its own, recording every request.
struct Receiver {
    base: String,
    got: Arc<Mutex<Vec<Received>>>,
    release: Arc<AtomicBool>,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    fn start(behaviour: Behaviour) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let (g, r) = (got.clone(), release.clone());
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let (g, r, seen) = (g.clone(), r.clone(), seen.clone());
                    App::new().default_service(web::to(
                        move |req: HttpRequest, body: web::Bytes| {
                            let (g, r, seen) = (g.clone(), r.clone(), seen.clone());
                            async move {
                                g.lock().unwrap().push(Received {
                                    path: req.path().to_string(),
                                    headers: req.headers().clone(),
                                    body: body.to_vec(),
                                });
                                let n = seen.fetch_add(1, Ordering::SeqCst);
                                match behaviour {
                                    Behaviour::Ok => HttpResponse::Ok().json(json!({"ok": true})),
                                    Behaviour::FailFirst(k) if n < k => {
                                        HttpResponse::InternalServerError().finish()
                                    }
                                    Behaviour::FailFirst(_) => HttpResponse::Ok().finish(),
                                    Behaviour::Redirect(port) => HttpResponse::TemporaryRedirect()
                                        .insert_header((
                                            "location",
                                            format!("http://127.0.0.1:{port}/elsewhere"),
                                        ))
                                        .finish(),
                                    Behaviour::Hang => {
                                        while !r.load(Ordering::SeqCst) {
                                            actix_web::rt::time::sleep(Duration::from_millis(20))
                                                .await;
                                        }
                                        HttpResponse::Ok().finish()
                                    }
                                }
                            }
                        },
                    ))
                })
                .workers(1)
                .listen(listener)
                .unwrap()
                .run();
                tx.send(server.handle()).unwrap();
                server.await.unwrap();
            });
        });
        Receiver {
            base,
            got,
            release,
            server: rx.recv().unwrap(),
        }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until `n` requests came in.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        self.wait_for_within(n, Duration::from_secs(10)).await
    }

    /// Waits (at most `limit`) until `n` requests came in.
    async fn wait_for_within(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{} of {n} requests", got.len());
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.release.store(true, Ordering::SeqCst);
        // The stop command is sent at once; its completion is not waited for.
        drop(self.server.stop(false));
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const TEMPLATE: &str = "{symbol} {side} {quantity} @ {price} ({reason})";

/// The daemon with one notification channel whose URL is `receiver`'s: `channel` holds the rest of its keys.
fn notifying(receiver: &Receiver, channel: &str) -> Daemon {
    let config = format!(
        "{}\n[[notifications]]\nurl_env = \"TEST_HOOK_URL\"\nallow_private = true\n{channel}\n",
        free_config()
    );
    let url = format!("{}/hook", receiver.base);
    Daemon::start_with_env(&config, env(&[("TEST_HOOK_URL", &url)]))
}

async fn open_long(c: &Client) -> Value {
    let record = c
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "position_size": "0.01", "price": "50000"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    record
}

/// The delivery log, waiting (at most 15 s) until `done` holds.
async fn notifications_until(c: &Client, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = c.get("/api/notifications").await;
        if done(&log) {
            return log;
        }
        assert!(Instant::now() < deadline, "not reached: {log}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn attempts_of<'a>(log: &'a Value, channel: &str) -> Vec<&'a Value> {
    log["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["channel"] == channel)
        .collect()
}

#[actix_web::test]
async fn a_fill_reaches_telegram_discord_slack_and_a_signed_webhook() {
    let telegram = Receiver::start(Behaviour::Ok);
    let discord = Receiver::start(Behaviour::Ok);
    let slack = Receiver::start(Behaviour::Ok);
    let webhook = Receiver::start(Behaviour::Ok);
    let config = free_config()
        + &format!(
            r#"
[[notifications]]
name = "tg"
kind = "telegram"
token_env = "TEST_BOT_TOKEN"
chat_id = -1001234
api_base = "{tg}"
allow_private = true
template = "{TEMPLATE}"

[[notifications]]
name = "dc"
kind = "discord"
url_env = "TEST_DISCORD_URL"
allow_private = true
template = "{TEMPLATE}"

[[notifications]]
name = "sl"
kind = "slack"
url_env = "TEST_SLACK_URL"
allow_private = true
events = ["fills"]
template = "{TEMPLATE}"

[[notifications]]
name = "hook"
kind = "webhook"
url = "{hook}/in"
secret_env = "TEST_SIGNING_SECRET"
allow_private = true
"#,
            tg = telegram.base,
            hook = webhook.base,
        );
    let d = Daemon::start_with_env(
        &config,
        env(&[
            ("TEST_BOT_TOKEN", BOT_TOKEN),
            (
                "TEST_DISCORD_URL",
                &format!("{}/api/webhooks/1/secret-part", discord.base),
            ),
            (
                "TEST_SLACK_URL",
                &format!("{}/services/T0/B0/secret-part", slack.base),
            ),
            ("TEST_SIGNING_SECRET", SIGNING_SECRET),
        ]),
    );
    let c = d.client();
    let record = open_long(&c).await;
    let signal_id = record["signal"]["id"].as_str().unwrap().to_string();
    let expected = "BTCUSDT buy 0.01 @ 50000 (signal)";

    let tg = telegram.wait_for(1).await;
    assert_eq!(tg[0].path, format!("/bot{BOT_TOKEN}/sendMessage"));
    assert_eq!(tg[0].json(), json!({"chat_id": -1001234, "text": expected}));

    let dc = discord.wait_for(1).await;
    assert_eq!(dc[0].path, "/api/webhooks/1/secret-part");
    assert_eq!(dc[0].json(), json!({"content": expected}));

    let sl = slack.wait_for(1).await;
    assert_eq!(sl[0].path, "/services/T0/B0/secret-part");
    assert_eq!(sl[0].json(), json!({"text": expected}));

    let hook = webhook.wait_for(1).await;
    assert_eq!(hook[0].path, "/in");
    let body = hook[0].json();
    assert_eq!(body["type"], "fill");
    assert_eq!(body["data"]["symbol"], "BTCUSDT");
    assert_eq!(body["data"]["side"], "buy");
    assert_eq!(body["data"]["price"], "50000");
    assert_eq!(body["data"]["signal_id"], signal_id.as_str());
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
    let verifier = StandardWebhooks {
        keys: vec![Secret::new(decode_secret(SIGNING_SECRET).unwrap())],
        tolerance_secs: 300,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let id = verifier
        .verify(&hook[0].headers, &hook[0].body, now)
        .expect("the delivery verifies");
    assert!(id.starts_with("msg_"), "{id}");
    let mut tampered = hook[0].body.clone();
    tampered.extend_from_slice(b" ");
    assert!(verifier.verify(&hook[0].headers, &tampered, now).is_err());

    // The API shows each channel's delivery, and no secret: not the token, not the webhook URLs' tokens.
    let log = notifications_until(&c, |log| {
        log["channels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|ch| ch["delivered"] == 1)
    })
    .await;
    for channel in ["tg", "dc", "sl", "hook"] {
        let attempts = attempts_of(&log, channel);
        assert_eq!(attempts.len(), 1, "{log}");
        assert_eq!(attempts[0]["outcome"], "delivered");
        assert_eq!(attempts[0]["event"], "fill");
        assert_eq!(attempts[0]["status"], 200);
    }
    let text = log.to_string();
    assert!(
        !text.contains("test-bot-token") && !text.contains("secret-part"),
        "{text}"
    );
}

#[actix_web::test]
async fn a_receiver_that_fails_twice_gets_the_third_try() {
    let hook = Receiver::start(Behaviour::FailFirst(2));
    let d = notifying(&hook, "name = \"flaky\"\nkind = \"discord\"");
    let c = d.client();
    open_long(&c).await;
    let log = notifications_until(&c, |log| log["channels"][0]["delivered"] == 1).await;
    let attempts = attempts_of(&log, "flaky");
    // Newest first.
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["outcome"].as_str().unwrap(),
                a["status"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (3, "delivered", Some(200)),
            (2, "retrying", Some(500)),
            (1, "retrying", Some(500))
        ],
        "{log}"
    );
    let got = hook.received();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "every try sends the same notice"
    );
    assert_eq!(log["channels"][0]["failed"], 0);

    // The same counts are metrics.
    let mut req = awc::Client::default().get(format!("{}/metrics", c.api_base));
    if let Some(token) = &c.read_token {
        req = req.insert_header(("authorization", format!("Bearer {token}")));
    }
    let body = req.send().await.unwrap().body().await.unwrap();
    let text = std::str::from_utf8(&body).unwrap();
    assert!(
        text.contains(r#"sentinel_notifications_total{channel="flaky",outcome="delivered"} 1"#),
        "{text}"
    );
}

#[actix_web::test]
async fn a_hanging_receiver_is_retried_and_never_delays_orders() {
    let hanging = Receiver::start(Behaviour::Hang);
    let d = notifying(
        &hanging,
        "name = \"stuck\"\nkind = \"slack\"\nqueue = 1\nmax_retries = 1",
    );
    let c = d.client();
    open_long(&c).await;
    // The first notice is stuck in its request: the receiver holds it and never answers.
    hanging.wait_for(1).await;
    // Orders still fill while it hangs, each in far less than the 5 s a notifier on the order path would add; the
    // notices beyond the queue's room are dropped and counted.
    for _ in 0..3 {
        let record = c
            .act(json!({"symbol": "ETHUSDT", "action": "open_long", "position_size": "1", "price": "3000"}))
            .await;
        assert_eq!(record["status"], "filled", "{record}");
        let took_ms =
            record["finished_at"].as_i64().unwrap() - record["received_at"].as_i64().unwrap();
        assert!(took_ms < 2_000, "a signal took {took_ms} ms: {record}");
    }
    let log =
        notifications_until(&c, |log| log["channels"][0]["dropped"].as_u64() >= Some(1)).await;
    assert_eq!(log["channels"][0]["delivered"], 0, "{log}");

    // After its 5 s limit the stuck request is given up and, after a 1 s backoff, tried again: the receiver gets the
    // same notice a second time.
    let got = hanging.wait_for_within(2, Duration::from_secs(30)).await;
    assert_eq!(
        got[1].body, got[0].body,
        "the second try sends the same notice"
    );
    // The second try hangs too; with one retry allowed, the notice is then given up, each try with its reason.
    let log = notifications_until(&c, |log| {
        attempts_of(log, "stuck")
            .iter()
            .any(|a| a["outcome"] == "failed")
    })
    .await;
    let attempts: Vec<_> = attempts_of(&log, "stuck")
        .into_iter()
        .rev()
        .take(2)
        .map(|a| {
            assert!(a["error"].as_str().unwrap().contains("timed out"), "{log}");
            (
                a["attempt"].as_u64().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(attempts, [(1, "retrying"), (2, "failed")], "{log}");
    assert_eq!(log["channels"][0]["failed"], 1, "{log}");
}

#[actix_web::test]
async fn a_redirect_is_not_followed() {
    let elsewhere = Receiver::start(Behaviour::Ok);
    let port: u16 = elsewhere.base.rsplit(':').next().unwrap().parse().unwrap();
    let hook = Receiver::start(Behaviour::Redirect(port));
    let d = notifying(
        &hook,
        "name = \"moved\"\nkind = \"discord\"\nmax_retries = 0",
    );
    let c = d.client();
    open_long(&c).await;
    let log = notifications_until(&c, |log| log["channels"][0]["failed"] == 1).await;
    let attempts = attempts_of(&log, "moved");
    assert_eq!(attempts.len(), 1, "{log}");
    assert_eq!(attempts[0]["outcome"], "failed", "{log}");
    assert_eq!(attempts[0]["status"], 307, "{log}");
    // The notice went to the configured host only: the place it was sent on to never heard of it.
    assert_eq!(hook.received().len(), 1);
    assert!(elsewhere.received().is_empty());
}

#[actix_web::test]
async fn private_addresses_are_refused_unless_allowed() {
    let hook = Receiver::start(Behaviour::Ok);
    let port = hook.base.rsplit(':').next().unwrap();
    let config = free_config()
        + &format!(
            r#"
[[notifications]]
name = "guarded"
kind = "webhook"
url = "https://127.0.0.1:{port}/in"
secret_env = "TEST_SIGNING_SECRET"
"#
        );
    let d = Daemon::start_with_env(&config, env(&[("TEST_SIGNING_SECRET", SIGNING_SECRET)]));
    let c = d.client();
    open_long(&c).await;
    let log = notifications_until(&c, |log| log["channels"][0]["failed"] == 1).await;
    let attempts = attempts_of(&log, "guarded");
    assert_eq!(attempts.len(), 1, "a refusal is not retried: {log}");
    assert_eq!(attempts[0]["outcome"], "refused");
    let why = attempts[0]["error"].as_str().unwrap();
    assert!(
        why.contains("127.0.0.1") && why.contains("allow_private"),
        "{why}"
    );
    assert!(hook.received().is_empty(), "nothing was sent");
}

#[test]
fn configuration_problems_name_their_keys() {
    let text = free_config()
        + r#"
[[notifications]]
name = "tg"
kind = "telegram"
token_env = "UNSET_BOT_TOKEN"

[[notifications]]
name = "pager"
kind = "pager"

[[notifications]]
name = "dc"
kind = "discord"
url_env = "TEST_TV_PASSPHRASE"
events = ["fills", "everything"]
summary_hour_utc = 24

[[notifications]]
name = "hook"
kind = "webhook"
url = "ftp://example.com/in"
secret_env = "TEST_HMAC_SECRET"
"#;
    let problems = sentinel::Config::parse(&text, ".".into(), &common::test_env)
        .expect_err("refused")
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>();
    for expected in [
        "notifications[0].token_env: UNSET_BOT_TOKEN is not set",
        "notifications[0].chat_id: is required",
        "notifications[1].kind: `pager` is not one of telegram, discord, slack, webhook",
        "notifications[2].url_env: TEST_TV_PASSPHRASE is not a URL",
        "notifications[2].events: `everything` is not one of",
        "notifications[2].summary_hour_utc: must be between 0 and 23, not 24",
        "notifications[3].url: must be an https:// URL",
        "notifications[3].secret_env: TEST_HMAC_SECRET is not a Standard Webhooks secret",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected} not in {problems:#?}"
        );
    }
    // Nothing of a secret's value is in a problem.
    assert!(!problems.join("\n").contains(common::PASSPHRASE));

    let fine = free_config()
        + r#"
[[notifications]]
name = "tg"
kind = "telegram"
token_env = "TEST_URL_TOKEN"
chat_id = "@alerts"
"#;
    let config = sentinel::Config::parse(&fine, ".".into(), &common::test_env).expect("valid");
    let n = &config.notifications[0];
    assert_eq!(
        (n.queue, n.max_retries, n.allow_private, n.summary_hour_utc),
        (256, 4, false, 0)
    );
    let events: Vec<_> = n.topics.iter().map(|t| t.as_str()).collect();
    assert_eq!(
        events,
        [
            "fills",
            "exits",
            "denials",
            "rejections",
            "trading_state",
            "venue_faults"
        ]
    );
}
