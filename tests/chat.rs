//! Operator commands from Telegram, against a fake Bot API on loopback that queues updates for `getUpdates` and
//! records every `sendMessage`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

use common::{Client, Daemon};

const TOKEN: &str = "123456:fake-bot-token";
const OPERATOR: i64 = 4242;
const STRANGER: i64 = 6666;

/// What the fake Bot API holds: updates not yet confirmed by an offset past them, and every message sent.
#[derive(Default)]
struct Inbox {
    next_update: i64,
    updates: Vec<Value>,
    sent: Vec<(i64, String)>,
    /// `getUpdates` calls answered so far.
    polls: usize,
    /// `getUpdates` calls still to fail with 502, as Telegram down would.
    outage: usize,
}

/// A fake Telegram Bot API served from a thread of its own, so it answers whatever the test is doing.
struct FakeTelegram {
    base: String,
    inbox: Arc<Mutex<Inbox>>,
}

async fn get_updates(
    token: web::Path<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
    inbox: web::Data<Arc<Mutex<Inbox>>>,
) -> HttpResponse {
    if token.as_str() != TOKEN {
        return HttpResponse::Unauthorized()
            .json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"}));
    }
    let offset: i64 = query
        .get("offset")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    {
        let mut inbox = inbox.lock().unwrap();
        inbox.polls += 1;
        if inbox.outage > 0 {
            inbox.outage -= 1;
            return HttpResponse::BadGateway()
                .json(json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}));
        }
    }
    // A short long poll: answer as soon as something is queued, else empty after a while.
    for _ in 0..20 {
        let pending: Vec<Value> = {
            let mut inbox = inbox.lock().unwrap();
            inbox
                .updates
                .retain(|u| u["update_id"].as_i64().unwrap() >= offset);
            inbox.updates.clone()
        };
        if !pending.is_empty() {
            return HttpResponse::Ok().json(json!({"ok": true, "result": pending}));
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    HttpResponse::Ok().json(json!({"ok": true, "result": []}))
}

async fn send_message(
    token: web::Path<String>,
    body: web::Json<Value>,
    inbox: web::Data<Arc<Mutex<Inbox>>>,
) -> HttpResponse {
    if token.as_str() != TOKEN {
        return HttpResponse::Unauthorized().finish();
    }
    let chat = body["chat_id"].as_i64().expect("chat_id is a number");
    let text = body["text"].as_str().expect("text").to_string();
    inbox.lock().unwrap().sent.push((chat, text.clone()));
    HttpResponse::Ok()
        .json(json!({"ok": true, "result": {"message_id": 1, "chat": {"id": chat}, "text": text}}))
}

impl FakeTelegram {
    fn start() -> FakeTelegram {
        Self::start_down_for(0)
    }

    /// A fake whose first `polls` answers to `getUpdates` are 502.
    fn start_down_for(polls: usize) -> FakeTelegram {
        let inbox = Arc::new(Mutex::new(Inbox {
            next_update: 100,
            outage: polls,
            ..Inbox::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let data = web::Data::new(inbox.clone());
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .route("/bot{token}/getUpdates", web::get().to(get_updates))
                        .route("/bot{token}/sendMessage", web::post().to(send_message))
                })
                .workers(1)
                .listen(listener)
                .unwrap()
                .run()
                .await
                .unwrap()
            })
        });
        FakeTelegram { base, inbox }
    }

    /// Queues a text message from `chat`.
    fn say(&self, chat: i64, text: &str) {
        let mut inbox = self.inbox.lock().unwrap();
        let id = inbox.next_update;
        inbox.next_update += 1;
        inbox.updates.push(json!({
            "update_id": id,
            "message": {
                "message_id": id,
                "date": 1,
                "chat": {"id": chat, "type": "private"},
                "from": {"id": chat, "is_bot": false, "first_name": "Op", "username": "operator"},
                "text": text,
            }
        }));
    }

    /// Waits until the bot has polled `more` more times.
    async fn wait_polls(&self, more: usize) {
        let target = self.inbox.lock().unwrap().polls + more;
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.inbox.lock().unwrap().polls < target {
            assert!(Instant::now() < deadline, "the bot stopped polling");
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn sent_to(&self, chat: i64) -> Vec<String> {
        let inbox = self.inbox.lock().unwrap();
        inbox
            .sent
            .iter()
            .filter(|(to, _)| *to == chat)
            .map(|(_, text)| text.clone())
            .collect()
    }

    /// Sends `text` from `chat` and waits for the bot's answer to it.
    async fn ask(&self, chat: i64, text: &str) -> String {
        let before = self.sent_to(chat).len();
        self.say(chat, text);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(answer) = self.sent_to(chat).get(before) {
                return answer.clone();
            }
            assert!(Instant::now() < deadline, "no answer to `{text}`");
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends a destructive command, checks it asks for a code, and returns the code.
    async fn code_for(&self, command: &str) -> String {
        let question = self.ask(OPERATOR, command).await;
        assert!(question.starts_with("Send /confirm "), "{question}");
        assert!(question.contains("within 60 s"), "{question}");
        question["Send /confirm ".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

fn start(telegram: &FakeTelegram) -> Daemon {
    start_on(telegram, "fee_rate = \"0\"\nslippage = \"0\"")
}

/// A daemon whose paper exchange is configured by `exchange`.
fn start_on(telegram: &FakeTelegram, exchange: &str) -> Daemon {
    let config = common::config(
        exchange,
        &format!(
            r#"
[telegram]
bot_token_env = "TEST_TELEGRAM_TOKEN"
allowed_chat_ids = [{OPERATOR}]
api_base = "{}"
allow_private = true
"#,
            telegram.base
        ),
    );
    Daemon::start_with_env(&config, vec![("TEST_TELEGRAM_TOKEN".into(), TOKEN.into())])
}

async fn trading_state(client: &Client) -> Value {
    client.get("/api/trading-state").await["trading_state"].clone()
}

/// The operator commands the journal holds: (channel, who, command), oldest first.
fn operator_commands(daemon: &Daemon) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open_with_flags(
        daemon.journal_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut query = conn
        .prepare("SELECT data FROM events WHERE kind = 'operator_command' ORDER BY seq")
        .unwrap();
    let rows = query.query_map([], |row| row.get::<_, String>(0)).unwrap();
    rows.map(|data| {
        let event: Value = serde_json::from_str(&data.unwrap()).unwrap();
        let field = |name: &str| event[name].as_str().unwrap_or_default().to_string();
        (field("channel"), field("who"), field("command"))
    })
    .collect()
}

#[actix_web::test]
async fn status_answers_with_the_trading_state_and_strangers_get_nothing() {
    let telegram = FakeTelegram::start();
    let daemon = start(&telegram);
    let client = daemon.client();

    let status = telegram.ask(OPERATOR, "/status").await;
    assert!(status.contains("Trading: active"), "{status}");
    assert!(status.contains("Equity: 10000"), "{status}");
    assert!(status.contains("Open positions: 0"), "{status}");
    assert!(status.contains("Ready: yes"), "{status}");
    // Handled once: later polls ask past it.
    telegram.wait_polls(2).await;
    assert_eq!(telegram.sent_to(OPERATOR).len(), 1);

    // A chat not on the list: nothing is carried out and nothing is said to it. The operator's next message is
    // handled after it, so once that is answered the stranger's was handled too.
    telegram.say(STRANGER, "/halt");
    telegram.say(STRANGER, "/status");
    let status = telegram.ask(OPERATOR, "/status").await;
    assert!(status.contains("Trading: active"), "{status}");
    assert!(telegram.sent_to(STRANGER).is_empty());
    assert_eq!(trading_state(&client).await, "active");
}

#[actix_web::test]
async fn halt_needs_the_right_code_and_is_journaled() {
    common::captured_log();
    let telegram = FakeTelegram::start();
    let daemon = start(&telegram);
    let client = daemon.client();

    let code = telegram.code_for("/halt").await;
    let wrong = if code == "0000" { "0001" } else { "0000" };
    let answer = telegram.ask(OPERATOR, &format!("/confirm {wrong}")).await;
    assert!(answer.contains("nothing done"), "{answer}");
    assert_eq!(trading_state(&client).await, "active");
    // The refusal is not journaled (nothing was done) but leaves a trace in the log: who, which command, why; never
    // the code that was sent.
    let refusals = common::logged(&["operator command refused", &format!("chat={OPERATOR}")]);
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    assert!(refusals[0].contains("command=/halt"), "{}", refusals[0]);
    assert!(
        refusals[0].contains("wrong confirmation code"),
        "{}",
        refusals[0]
    );
    assert!(!refusals[0].contains(wrong), "{}", refusals[0]);
    // Another chat cannot confirm the operator's command, even with the right code (and is not answered).
    telegram.say(STRANGER, &format!("/confirm {code}"));
    assert!(operator_commands(&daemon).is_empty());

    let answer = telegram.ask(OPERATOR, &format!("/confirm {code}")).await;
    assert_eq!(answer, "Trading is halted.");
    assert_eq!(trading_state(&client).await, "halted");
    assert_eq!(
        operator_commands(&daemon),
        [(
            "telegram".to_string(),
            format!("chat {OPERATOR} @operator"),
            "/halt".to_string()
        )]
    );
    assert!(telegram.sent_to(STRANGER).is_empty());

    // A code is good once.
    let answer = telegram.ask(OPERATOR, &format!("/confirm {code}")).await;
    assert!(answer.contains("Nothing is waiting"), "{answer}");

    let code = telegram.code_for("/resume").await;
    let answer = telegram.ask(OPERATOR, &format!("/confirm {code}")).await;
    assert_eq!(answer, "Trading is active.");
    assert_eq!(trading_state(&client).await, "active");
    assert_eq!(operator_commands(&daemon).len(), 2);
}

#[actix_web::test]
async fn pnl_answers_with_realized_and_unrealized_pnl_and_fees() {
    let telegram = FakeTelegram::start();
    let daemon = start_on(&telegram, "fee_rate = \"0.001\"\nslippage = \"0\"");
    let client = daemon.client();
    // Buys 0.02 BTC at 50000 (fee 1), then sells 0.01 at 49000 (fee 0.49): 10 realized lost, and the 0.01 still
    // open, marked at 49000 by that signal, is 10 down.
    for (action, size, price) in [("open_long", "0.02", 50000), ("close_long", "0.01", 49000)] {
        let record = client
            .act(json!({"symbol": "BTCUSDT", "action": action, "position_size": size, "price": price}))
            .await;
        assert_eq!(record["status"], "filled", "{record}");
    }

    let pnl = telegram.ask(OPERATOR, "/pnl").await;
    assert_eq!(
        pnl, "Realized: -10\nUnrealized: -10\nFees: 1.49\nLoss today: 11.49",
        "loss today is the realized loss and the fees"
    );

    // A chat not on the list is told nothing; the operator's next message is handled after it.
    telegram.say(STRANGER, "/pnl");
    assert_eq!(telegram.ask(OPERATOR, "/pnl").await, pnl);
    assert!(telegram.sent_to(STRANGER).is_empty());
}

async fn wait_until_closed(client: &Client, symbol: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.position(symbol).await.is_some() {
        assert!(Instant::now() < deadline, "{symbol} was not closed");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn positions_lists_open_positions_and_flatten_closes_them() {
    let telegram = FakeTelegram::start();
    let daemon = start(&telegram);
    let client = daemon.client();
    for (symbol, price) in [("BTCUSDT", 50000), ("ETHUSDT", 3000)] {
        let record = client
            .act(json!({"symbol": symbol, "action": "open_long", "price": price}))
            .await;
        assert_eq!(record["status"], "filled", "{record}");
    }

    let positions = telegram.ask(OPERATOR, "/positions").await;
    assert!(
        positions.contains("BTCUSDT long 0.01 @ 50000"),
        "{positions}"
    );
    assert!(positions.contains("ETHUSDT long 1 @ 3000"), "{positions}");

    // One symbol: a close for it alone; trading stays active.
    let code = telegram.code_for("/flatten btcusdt").await;
    let answer = telegram.ask(OPERATOR, &format!("/confirm {code}")).await;
    assert!(answer.starts_with("Closing BTCUSDT"), "{answer}");
    wait_until_closed(&client, "BTCUSDT").await;
    assert!(client.position("ETHUSDT").await.is_some());
    assert_eq!(trading_state(&client).await, "active");
    let positions = telegram.ask(OPERATOR, "/positions").await;
    assert!(!positions.contains("BTCUSDT"), "{positions}");

    // The whole account: as `POST /api/flatten`.
    let code = telegram.code_for("/flatten").await;
    let answer = telegram.ask(OPERATOR, &format!("/confirm {code}")).await;
    assert!(answer.contains("closing 1 position"), "{answer}");
    wait_until_closed(&client, "ETHUSDT").await;
    assert_eq!(trading_state(&client).await, "reducing");
    assert_eq!(
        telegram.ask(OPERATOR, "/positions").await,
        "No open positions."
    );
    let commands: Vec<String> = operator_commands(&daemon)
        .into_iter()
        .map(|(_, _, command)| command)
        .collect();
    assert_eq!(commands, ["/flatten BTCUSDT", "/flatten"]);
}

#[actix_web::test]
async fn trading_goes_on_while_telegram_is_down_and_the_bot_comes_back() {
    let telegram = FakeTelegram::start_down_for(2);
    let daemon = start(&telegram);
    let client = daemon.client();
    let record = client
        .act(json!({"symbol": "BTCUSDT", "action": "open_long", "price": 50000}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");

    let status = telegram.ask(OPERATOR, "/status").await;
    assert!(status.contains("Open positions: 1"), "{status}");
    assert_eq!(telegram.inbox.lock().unwrap().outage, 0);
}
