//! The `sentinel` binary: check-config, sign, and the default config.toml the README runs.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

fn sentinel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sentinel"))
}

#[test]
fn check_config_reports_every_problem_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = common::free_config()
        .replace("max_leverage = 20", "max_leverage = 500")
        .replace("kind = \"hmac\"", "kind = \"hmac\"\nsecert_env = \"X\"")
        .replace("quantity_step = \"0.01\"", "quantity_step = \"-1\"");
    std::fs::write(&path, text).unwrap();
    let out = sentinel()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("TEST_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    assert!(
        stderr.contains("symbols[0].max_leverage: must be between 1 and 125, not 500"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sources[1].secert_env: is not a known key"),
        "{stderr}"
    );
    assert!(
        stderr.contains("symbols[1].quantity_step: must be greater than 0"),
        "{stderr}"
    );
}

#[test]
fn journal_retention_must_cover_the_idempotency_window() {
    let text = format!("{}\n[journal]\nretention_days = 1\n", common::free_config());
    let problems = sentinel::Config::parse(&text, ".".into(), &common::test_env).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "journal.retention_days");
}

#[test]
fn check_config_summarises_the_default_config() {
    let out = sentinel()
        .args([
            "check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"),
        ])
        .env_remove("SENTINEL_TRADINGVIEW_PASSPHRASE")
        .env_remove("SENTINEL_SIGNALS_SECRET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for expected in [
        "BTCUSDT",
        "ETHUSDT",
        "SOLUSDT",
        "POST /webhook/tradingview",
        "PUBLIC DEMO",
    ] {
        assert!(stdout.contains(expected), "{expected} missing in {stdout}");
    }
}

/// Runs `sentinel sign ARGS` with the secret in SIGN_TEST_SECRET and `body` on stdin; returns stdout.
fn sign(args: &[&str], secret: &str, body: &[u8]) -> String {
    let mut child = sentinel()
        .arg("sign")
        .args(args)
        .args(["--secret-env", "SIGN_TEST_SECRET"])
        .env("SIGN_TEST_SECRET", secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn sign_prints_the_header_for_a_body() {
    let out = sign(&[], "Jefe", b"what do ya want for nothing?");
    assert_eq!(
        out.trim(),
        "x-webhook-signature: sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// The README's walkthrough, on the default config.toml with its demo passphrase.
#[actix_web::test]
async fn the_readme_example_works_on_the_default_config() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    let daemon = common::Daemon::start(&text);
    let c = daemon.client();
    let body = json!({"passphrase":"sentinel-demo-passphrase","symbol":"BTCUSDT","action":"open_long","leverage":5,
                      "position_size":"10%","stop_loss":"2%","take_profit":"6%","price":45000});
    let (status, answer) = c
        .post(
            "tradingview",
            &body.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(answer["status"], "accepted");
    assert_eq!(
        c.done(answer["signal_id"].as_str().unwrap()).await["status"],
        "filled"
    );
    let btc = c.position("BTCUSDT").await.unwrap();
    assert_eq!(
        (btc["quantity"].as_str(), btc["entry_price"].as_str()),
        (Some("0.111"), Some("45022.5"))
    );
}

/// `sentinel journal tail | show | export` on a journal written by a real daemon.
#[actix_web::test]
async fn journal_commands_read_what_the_daemon_wrote() {
    let daemon = common::Daemon::start(&common::free_config());
    let c = daemon.client();
    c.act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.1","price":"40000","id":"story-1"})).await;
    c.act(json!({"symbol":"BTCUSDT","action":"close_short","id":"story-2"}))
        .await;
    let path = daemon.journal_path();
    let run = |args: &[&str]| {
        let out = sentinel()
            .arg("journal")
            .arg("--path")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    let tail = run(&["tail", "-n", "5"]);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 2, "{tail}");
    assert!(
        lines[0].contains("tradingview:story-1") && lines[0].contains("filled"),
        "{tail}"
    );
    assert!(
        lines[1].contains("tradingview:story-2") && lines[1].contains("nothing_to_close"),
        "{tail}"
    );

    let story: serde_json::Value =
        serde_json::from_str(&run(&["show", "tradingview:story-1"])).unwrap();
    let kinds: Vec<&str> = story["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "signal_accepted",
            "decided",
            "risk_checked",
            "order_sent",
            "filled",
            "signal_finished"
        ]
    );
    assert_eq!(story["status"], "filled");

    let export = run(&["export"]);
    let lines: Vec<serde_json::Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.iter().filter(|l| l["type"] == "signal").count(), 2);
    assert!(lines
        .iter()
        .any(|l| l["type"] == "event" && l["kind"] == "filled"));
    assert!(
        !export.contains(common::PASSPHRASE),
        "no secret in the export"
    );
}

#[test]
fn sign_produces_standard_webhooks_headers_that_verify() {
    let out = sign(
        &["--scheme", "standard-webhooks", "--id", "msg_cli_1"],
        common::STANDARD_SECRET,
        b"{\"symbol\":\"BTCUSDT\"}",
    );
    let mut headers = actix_web::http::header::HeaderMap::new();
    for line in out.lines() {
        let (name, value) = line.split_once(": ").unwrap();
        headers.insert(
            actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            actix_web::http::header::HeaderValue::from_str(value).unwrap(),
        );
    }
    let scheme = sentinel::auth::StandardWebhooks {
        keys: vec![sentinel::secret::Secret::new(
            sentinel::auth::decode_secret(common::STANDARD_SECRET).unwrap(),
        )],
        tolerance_secs: 300,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(
        scheme.verify(&headers, b"{\"symbol\":\"BTCUSDT\"}", now),
        Ok("msg_cli_1".to_string())
    );
    assert!(scheme
        .verify(&headers, b"{\"symbol\":\"ETHUSDT\"}", now)
        .is_err());
}

/// `sentinel rules test`: what each rule listening to an event would do with it, without a daemon or a trade; and
/// `check-config` refusing a rule's type error by its key path.
#[test]
fn rules_test_shows_what_a_rule_would_do_with_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"
[[rules]]
name = "risk-off"
on = "risk"
source = "signals"
when = "var_pct > 5"
then = { action = "reduce", position_size = "50%" }

[[rules]]
name = "calm"
on = "risk"
source = "signals"
when = "var_pct < 1"
then = { action = "resume_all" }
"#;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("{}{rules}", common::free_config())).unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        json!({"event": "risk", "symbol": "BTCUSDT", "var_pct": 7.5}).to_string(),
    )
    .unwrap();
    let out = sentinel()
        .args(["rules", "test", "--source", "signals", "--config"])
        .arg(&config)
        .arg("--event")
        .arg(&event)
        .env("TEST_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listening = report["rules"].as_array().unwrap();
    assert_eq!(listening.len(), 2, "{report}");
    assert_eq!(listening[0]["rule"], "risk-off");
    assert_eq!(listening[0]["verdict"], "fires");
    assert_eq!(
        listening[0]["signal"],
        json!({"action": "close", "position_size": "50%", "symbol": "BTCUSDT"})
    );
    assert_eq!(listening[1]["verdict"], "quiet");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "{}{}",
            common::free_config(),
            rules.replace("when = \"var_pct < 1\"", "when = 'var_pct < \"low\"'")
        ),
    )
    .unwrap();
    let out = sentinel()
        .args(["check-config", "--config"])
        .arg(&bad)
        .env("TEST_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules[1].when: `<`, `<=`, `>` and `>=` needs a number, not a text"),
        "{stderr}"
    );
}
