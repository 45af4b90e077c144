//! What an operator reads after the fact: a stop's or a target's fill names the signal that opened the position and
//! the tick that fired it, the tick says it fired something, and the last mark survives a restart.

mod common;

use common::{free_config, Daemon};
use serde_json::{json, Value};

/// The `filled` events of the journal with this fill reason, as stored.
fn fills(daemon: &Daemon, reason: &str) -> Vec<(Option<String>, Value)> {
    let conn = rusqlite::Connection::open(daemon.journal_path()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT signal_id, data FROM events WHERE kind = 'filled'
               AND json_extract(data, '$.fill.reason') = ?1 ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([reason], |row| {
        let data: String = row.get(1)?;
        Ok((row.get(0)?, serde_json::from_str(&data).unwrap()))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[actix_web::test]
async fn a_stop_or_target_fill_names_the_opening_signal_and_the_tick_that_fired_it() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    // A stop-loss on BTCUSDT, a take-profit on ETHUSDT: (symbol, the exit, its level, a quiet price, the crossing).
    let exits = [
        ("BTCUSDT", "stop_loss", 95, 97, 94),
        ("ETHUSDT", "take_profit", 105, 103, 106),
    ];
    for (symbol, exit, level, quiet, crossing) in exits {
        let mut entry =
            json!({"symbol": symbol, "action": "open_long", "price": 100, "position_size": "1"});
        entry[exit] = json!(level);
        let open = c.act(entry).await;
        assert_eq!(open["status"], "filled", "{open}");
        let opened_by = open["signal"]["id"].as_str().unwrap().to_string();
        // A tick that crosses nothing is a price update; the one that crosses the level says what it fired.
        let quiet = c.act(json!({"symbol": symbol, "price": quiet})).await;
        assert_eq!(quiet["status"], "ignored", "{quiet}");
        let tick = c.act(json!({"symbol": symbol, "price": crossing})).await;
        assert_eq!(tick["status"], "triggered", "{tick}");
        let fired = &tick["outcome"]["fills"];
        assert_eq!(fired[0]["reason"], exit, "{tick}");
        assert_eq!(fired[0]["price"], crossing.to_string(), "{tick}");
        let tick_id = tick["signal"]["id"].as_str().unwrap();

        // The journal's fill belongs to the opening signal (its story shows the exit) and names both.
        let exits = fills(&daemon, exit);
        assert_eq!(exits.len(), 1, "{exits:?}");
        let (signal_id, event) = &exits[0];
        assert_eq!(signal_id.as_deref(), Some(opened_by.as_str()));
        assert_eq!(event["cause"]["opened_by"], opened_by.as_str(), "{event}");
        assert_eq!(event["cause"]["tick"], tick_id, "{event}");
        assert!(event["order"].is_null(), "{event}");

        // `journal tail` shows the tick, and what it fired.
        let tail = std::process::Command::new(env!("CARGO_BIN_EXE_sentinel"))
            .args(["journal", "--path"])
            .arg(daemon.journal_path())
            .arg("tail")
            .output()
            .unwrap();
        let tail = String::from_utf8_lossy(&tail.stdout);
        let line = tail
            .lines()
            .find(|l| l.contains(tick_id))
            .unwrap_or_else(|| panic!("no line for the tick in:\n{tail}"));
        assert!(
            line.contains("triggered") && line.contains(&format!("{exit}@{crossing}")),
            "{line}"
        );
    }
}

#[actix_web::test]
async fn the_last_mark_survives_a_restart() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    c.act(json!({"symbol": "BTCUSDT", "action": "open_long", "price": 100, "position_size": "1"}))
        .await;
    c.act(json!({"symbol": "BTCUSDT", "price": 110})).await;
    let before = c.position("BTCUSDT").await.unwrap();
    assert_eq!(before["mark_price"], "110", "{before}");

    let daemon = daemon.restart();
    let c = daemon.client();
    let after = c.position("BTCUSDT").await.unwrap();
    assert_eq!(after["mark_price"], "110", "{after}");
    assert_eq!(after["unrealized_pnl"], "10", "{after}");
    assert_eq!(c.get("/api/account").await["equity"], "10010");
}

mod binary {
    //! The real binary: SIGTERM under load, SIGHUP, and overrides from the environment.

    use std::path::Path;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    use super::common::{self, PASSPHRASE, READ_TOKEN};

    /// Two symbols, the journal in a file, a paper venue that takes 150 ms per order (so signals are in flight when
    /// the stop comes), and no rate limits in the way.
    fn config(extra_server: &str) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
workers = 2
rate_limit_per_address_per_minute = 1000000
rate_limit_per_address_burst = 100000
{extra_server}

[api]
listen = "127.0.0.1:0"
read_token_env = "TEST_READ_TOKEN"

[[sources]]
name = "tradingview"
kind = "tradingview"
passphrase_env = "TEST_TV_PASSPHRASE"
rate_limit_per_minute = 1000000
rate_limit_burst = 100000

[exchange]
kind = "paper"
starting_balance = "1000000"
latency_ms = 150

[[symbols]]
symbol = "BTCUSDT"
max_leverage = 20
max_notional = "100000000"

[[symbols]]
symbol = "ETHUSDT"
max_notional = "100000000"
quantity_step = "0.01"

[journal]
path = "journal.db"
"#
        )
    }

    const ENV: [(&str, &str); 2] = [
        ("TEST_TV_PASSPHRASE", PASSPHRASE),
        ("TEST_READ_TOKEN", READ_TOKEN),
    ];

    fn start(dir: &Path, text: &str, extra_env: &[(&str, &str)]) -> (Child, String, String) {
        std::fs::write(dir.join("config.toml"), text).unwrap();
        let env: Vec<(&str, &str)> = ENV.iter().chain(extra_env).copied().collect();
        common::start_binary(&dir.join("config.toml"), &env)
    }

    /// Whether each of `ids` is finished in the journal at `dir`, and how many fills it has.
    fn outcomes(dir: &Path, ids: &[String]) -> Vec<(bool, i64)> {
        let conn = rusqlite::Connection::open(dir.join("journal.db")).unwrap();
        ids.iter()
            .map(|id| {
                conn.query_row(
                    "SELECT s.status IS NOT NULL,
                            (SELECT COUNT(*) FROM events e WHERE e.signal_id = s.signal_id AND e.kind = 'filled')
                     FROM signals s WHERE s.signal_id = ?1",
                    [id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .unwrap_or_else(|e| panic!("{id} acknowledged but not in the journal: {e}"))
            })
            .collect()
    }

    fn signal(child: &Child, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    fn exit_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > until {
                let _ = child.kill();
                panic!("the daemon did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn post(http: &awc::Client, base: &str, body: Value) -> Option<(u16, Value, bool)> {
        let mut res = http
            .post(format!("{base}/webhook/tradingview"))
            .send_json(&body)
            .await
            .ok()?;
        let retry_after = res.headers().contains_key("retry-after");
        let answer = serde_json::from_slice(&res.body().await.ok()?).unwrap_or(Value::Null);
        Some((res.status().as_u16(), answer, retry_after))
    }

    fn entry(n: u64, leverage: u32) -> Value {
        let symbol = if n.is_multiple_of(2) {
            "BTCUSDT"
        } else {
            "ETHUSDT"
        };
        json!({"passphrase": PASSPHRASE, "id": format!("load-{n}"), "symbol": symbol,
               "action": "open_long", "position_size": "0.1", "leverage": leverage, "price": 1000})
    }

    #[actix_web::test]
    async fn sigterm_under_load_answers_503_finishes_what_was_acknowledged_and_exits_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, base, _) = start(
            dir.path(),
            &config("shutdown_deadline_secs = 20\nmax_pending_signals = 64"),
            &[],
        );
        let http = awc::Client::builder()
            .timeout(Duration::from_secs(5))
            .finish();
        // Four senders, each sending until the daemon stops answering; the stop comes 300 ms in.
        let mut senders = Vec::new();
        for lane in 0..4u64 {
            let (http, base) = (http.clone(), base.clone());
            senders.push(actix_web::rt::spawn(async move {
                let mut answers = Vec::new();
                for i in 0.. {
                    match post(&http, &base, entry(lane + 4 * i, 2)).await {
                        Some(answer) => answers.push(answer),
                        None => break,
                    }
                    if i > 2_000 {
                        break;
                    }
                }
                answers
            }));
        }
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        signal(&child, "TERM");
        let mut answers = Vec::new();
        for sender in senders {
            answers.extend(sender.await.unwrap());
        }
        let status = exit_within(&mut child, Duration::from_secs(25));
        assert!(status.success(), "exit status {status}");

        let accepted: Vec<String> = answers
            .iter()
            .filter(|(code, ..)| *code == 202)
            .map(|(_, answer, _)| answer["signal_id"].as_str().unwrap().to_string())
            .collect();
        assert!(!accepted.is_empty(), "nothing was accepted before the stop");
        // 503s: `overloaded` while 64 signals wait (before the stop), `shutting_down` after it; each says when to
        // come back.
        let refused: Vec<_> = answers.iter().filter(|(code, ..)| *code == 503).collect();
        assert!(
            refused
                .iter()
                .any(|(_, answer, _)| answer["error"]["code"] == "shutting_down"),
            "no webhook was refused while draining"
        );
        for (_, answer, retry_after) in &refused {
            let code = answer["error"]["code"].as_str().unwrap_or_default();
            assert!(["shutting_down", "overloaded"].contains(&code), "{answer}");
            assert!(retry_after, "a 503 without Retry-After");
        }
        // Every acknowledged signal is in the journal and finished: the drain waited for each.
        let conn = rusqlite::Connection::open(dir.path().join("journal.db")).unwrap();
        for id in &accepted {
            let status: Option<String> = conn
                .query_row(
                    "SELECT status FROM signals WHERE signal_id = ?1",
                    [id],
                    |row| row.get(0),
                )
                .unwrap_or_else(|e| panic!("{id} acknowledged but not in the journal: {e}"));
            assert!(status.is_some(), "{id} acknowledged but not finished");
        }
    }

    #[actix_web::test]
    async fn a_second_sigterm_exits_at_once_and_the_next_start_finishes_what_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        // Each order takes the paper venue a second: twenty signals take many seconds to drain.
        let text = config("shutdown_deadline_secs = 120").replacen(
            "latency_ms = 150",
            "latency_ms = 1000",
            1,
        );
        let (mut child, base, _) = start(dir.path(), &text, &[]);
        let http = awc::Client::builder()
            .timeout(Duration::from_secs(5))
            .finish();
        let mut accepted = Vec::new();
        for n in 0..20 {
            let (code, answer, _) = post(&http, &base, entry(n, 2)).await.unwrap();
            assert_eq!(code, 202, "{answer}");
            accepted.push(answer["signal_id"].as_str().unwrap().to_string());
        }
        signal(&child, "TERM");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        signal(&child, "TERM");
        // At once: far sooner than the drain would take, and not a clean exit.
        let status = exit_within(&mut child, Duration::from_secs(5));
        assert!(!status.success(), "exit status {status}");
        let unfinished = outcomes(dir.path(), &accepted)
            .iter()
            .filter(|(finished, _)| !finished)
            .count();
        assert!(unfinished > 0, "everything finished before the second stop");

        // The next start finishes every acknowledged signal, each with one fill: ten 0.1 entries per symbol.
        let (mut child, _, api) = start(dir.path(), &text, &[]);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let outcomes = outcomes(dir.path(), &accepted);
            if outcomes.iter().all(|(finished, _)| *finished) {
                assert!(
                    outcomes.iter().all(|(_, fills)| *fills == 1),
                    "{outcomes:?}"
                );
                break;
            }
            assert!(
                Instant::now() < until,
                "unfinished after the restart: {outcomes:?}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        let mut res = http
            .get(format!("{api}/api/positions"))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap();
        let positions: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
        for symbol in ["BTCUSDT", "ETHUSDT"] {
            let position = positions["positions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["symbol"] == symbol)
                .unwrap_or_else(|| panic!("no {symbol} position: {positions}"));
            assert_eq!(position["quantity"], "1", "{position}");
        }
        signal(&child, "TERM");
        assert!(exit_within(&mut child, Duration::from_secs(30)).success());
    }

    /// The outcome of an entry at `leverage` on BTCUSDT: its status and, if denied, the reason's code.
    async fn entry_outcome(
        http: &awc::Client,
        base: &str,
        api: &str,
        n: u64,
        leverage: u32,
    ) -> (String, String) {
        let (code, answer, _) = post(http, base, entry(2 * n, leverage)).await.unwrap();
        assert_eq!(code, 202, "{answer}");
        let id = answer["signal_id"].as_str().unwrap().to_string();
        let record = common::Client::new(base, api, Some(READ_TOKEN))
            .done(&id)
            .await;
        let reason = record["outcome"]["reason"]["code"]
            .as_str()
            .unwrap_or_default();
        (
            record["status"].as_str().unwrap().to_string(),
            reason.to_string(),
        )
    }

    #[actix_web::test]
    async fn sighup_reloads_risk_limits_and_secrets_and_keeps_what_needs_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let text = config("");
        std::fs::write(dir.path().join("config.toml"), &text).unwrap();
        // The passphrase comes from a file (as systemd credentials and Docker secrets do), so it can be rotated.
        let secret = dir.path().join("tv-passphrase");
        std::fs::write(&secret, format!("{PASSPHRASE}\n")).unwrap();
        let secret_env = secret.to_str().unwrap();
        let (mut child, base, api, logs) = common::start_binary_logged(
            &dir.path().join("config.toml"),
            &[
                ("TEST_TV_PASSPHRASE_FILE", secret_env),
                ("TEST_READ_TOKEN", READ_TOKEN),
            ],
        );
        let http = awc::Client::default();
        assert_eq!(entry_outcome(&http, &base, &api, 1, 5).await.0, "filled");

        // BTCUSDT's highest leverage goes down to 2, the passphrase is rotated, and the listen address changes
        // (which needs a restart).
        let edited = text
            .replacen("max_leverage = 20", "max_leverage = 2", 1)
            .replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"", 1);
        std::fs::write(dir.path().join("config.toml"), edited).unwrap();
        let rotated = "a-rotated-passphrase-for-the-test";
        std::fs::write(&secret, rotated).unwrap();
        signal(&child, "HUP");
        let warning = logs.wait_for("needs a restart", Duration::from_secs(10));
        assert!(warning.contains("server"), "{warning}");
        assert!(!warning.contains(rotated) && !warning.contains(PASSPHRASE));

        // The new passphrase is taken once the reload is in force (a moment after the warning), the old refused.
        let with_rotated = |n: u64, leverage: u32| {
            let mut body = entry(2 * n, leverage);
            body["passphrase"] = json!(rotated);
            body
        };
        let until = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            let (code, answer, _) = post(&http, &base, with_rotated(2, 5)).await.unwrap();
            if code == 202 {
                break answer;
            }
            assert_eq!(code, 401, "{answer}");
            assert!(
                Instant::now() < until,
                "the rotated passphrase was never taken"
            );
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        };
        let mut old = entry(1_000, 2);
        old["id"] = json!("old-passphrase");
        let (code, refused, _) = post(&http, &base, old).await.unwrap();
        assert_eq!(code, 401, "{refused}");
        // The lower leverage limit is in force with it.
        let id = answer["signal_id"].as_str().unwrap().to_string();
        let client = common::Client::new(&base, &api, Some(READ_TOKEN));
        let record = client.done(&id).await;
        assert_eq!(record["status"], "denied", "{record}");
        assert_eq!(record["outcome"]["reason"]["code"], "leverage_above_limit");
        // Still serving on the same address: the new listen address waits for a restart.
        let (code, answer, _) = post(&http, &base, with_rotated(3, 2)).await.unwrap();
        assert_eq!(code, 202, "{answer}");
        let id = answer["signal_id"].as_str().unwrap().to_string();
        assert_eq!(client.done(&id).await["status"], "filled");
        assert!(!logs
            .wait_for("sentinel is listening", Duration::ZERO)
            .contains(":1 "));
        signal(&child, "TERM");
        assert!(exit_within(&mut child, Duration::from_secs(15)).success());
    }

    #[actix_web::test]
    async fn an_environment_override_reaches_the_running_config_and_check_config_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let text = config("");
        let overrides = [("SENTINEL__SYMBOLS__BTCUSDT__MAX_LEVERAGE", "3")];
        std::fs::write(dir.path().join("config.toml"), &text).unwrap();
        let check = Command::new(env!("CARGO_BIN_EXE_sentinel"))
            .args(["check-config", "--config"])
            .arg(dir.path().join("config.toml"))
            .envs(ENV.iter().chain(&overrides).copied())
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "{shown}");
        assert!(
            shown.contains(
                "override symbols[0].max_leverage from SENTINEL__SYMBOLS__BTCUSDT__MAX_LEVERAGE"
            ),
            "{shown}"
        );

        let (mut child, base, api) = start(dir.path(), &text, &overrides);
        let http = awc::Client::default();
        assert_eq!(entry_outcome(&http, &base, &api, 1, 3).await.0, "filled");
        let (status, reason) = entry_outcome(&http, &base, &api, 2, 4).await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("denied", "leverage_above_limit")
        );
        signal(&child, "TERM");
        assert!(exit_within(&mut child, Duration::from_secs(15)).success());
    }
}
