//! Account limits and stale signals through the real daemon: a daily loss that trips the account to reducing and an
//! operator's resume, a stale signal by the sender's timestamp, the entry cooldown, and the limits' state across a
//! restart.

mod common;

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::{json, Value};

use common::{Client, Daemon, ADMIN_TOKEN};

/// No fees, no slippage, and `risk` as the `[risk]` table (the harness's config has the admin token).
fn config(risk: &str) -> String {
    common::config(
        "fee_rate = \"0\"\nslippage = \"0\"",
        &format!("\n[risk]\n{risk}\n"),
    )
}

async fn set_state(c: &Client, state: &str) {
    let mut res = awc::Client::new()
        .post(format!("{}/api/trading-state", c.api_base))
        .insert_header(("Authorization", format!("Bearer {ADMIN_TOKEN}")))
        .insert_header(("content-type", "application/json"))
        .send_body(json!({ "state": state }).to_string())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.body().await);
}

async fn trading_state(c: &Client) -> Value {
    c.get("/api/trading-state").await["trading_state"].clone()
}

/// Waits for the trading state to become `want` (the limits are looked at every second).
async fn wait_for_state(c: &Client, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while trading_state(c).await != want {
        assert!(
            Instant::now() < deadline,
            "trading state never became {want}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn denied_code(record: &Value) -> &str {
    assert_eq!(record["status"], "denied", "{record}");
    record["outcome"]["reason"]["code"].as_str().unwrap()
}

/// Long 0.01 BTC at 50000, closed at 48000: realized (48000 - 50000) x 0.01 = -20, no fees. Today's loss 20.
async fn lose_20(c: &Client) {
    let open = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","price":50000}))
        .await;
    assert_eq!(open["status"], "filled", "{open}");
    let close = c
        .act(json!({"symbol":"BTCUSDT","action":"close","price":48000}))
        .await;
    assert_eq!(close["status"], "filled", "{close}");
    assert_eq!(c.get("/api/account").await["realized_pnl"], "-20");
}

#[actix_web::test]
async fn a_daily_loss_trips_to_reducing_until_an_operator_resumes() {
    let daemon = Daemon::start(&config("max_daily_loss = \"15\""));
    let c = daemon.client();
    lose_20(&c).await;
    // 20 >= 15: the account goes reducing on its own.
    wait_for_state(&c, "reducing").await;
    let record = c
        .act(json!({"symbol":"ETHUSDT","action":"open_long","price":3000}))
        .await;
    assert_eq!(denied_code(&record), "daily_loss_reached");
    assert_eq!(record["outcome"]["reason"]["loss"], "20");
    assert_eq!(record["outcome"]["reason"]["limit"], "15");
    let account = c.get("/api/account").await;
    assert_eq!(account["trading_state"], "reducing");
    assert_eq!(account["limits"]["loss_today"], "20");
    assert_eq!(account["denials"], json!({"daily_loss_reached": 1}));

    // The operator resumes: today's loss counts from here, so the account stays active and entries fill.
    set_state(&c, "active").await;
    let record = c
        .act(json!({"symbol":"ETHUSDT","action":"open_long","price":3000}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(c.get("/api/account").await["limits"]["loss_today"], "0");
    actix_web::rt::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(trading_state(&c).await, "active");
}

#[actix_web::test]
async fn a_percentage_of_start_of_day_equity_trips_too() {
    // 0.1 % of 10000 = 10 <= 20.
    let daemon = Daemon::start(&config("max_daily_loss = \"0.1%\""));
    let c = daemon.client();
    lose_20(&c).await;
    wait_for_state(&c, "reducing").await;
}

#[actix_web::test]
async fn a_signal_stale_by_its_senders_timestamp_is_denied() {
    let daemon = Daemon::start(&config("max_signal_age_secs = 60"));
    let c = daemon.client();
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","price":50000,"time":"2020-01-01T00:00:00Z"}))
        .await;
    assert_eq!(denied_code(&record), "stale");
    assert_eq!(record["outcome"]["reason"]["limit_ms"], 60_000);
    assert!(
        record["outcome"]["reason"]["age_ms"].as_i64().unwrap() > 180 * 24 * 3_600_000,
        "{record}"
    );
    assert!(c.position("BTCUSDT").await.is_none());
    // Sent a second ago: fresh.
    let now = chrono_now_rfc3339(-1);
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","price":50000,"time":now}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    // Without a timestamp, the age is the time since acceptance: fresh.
    let record = c
        .act(json!({"symbol":"ETHUSDT","action":"open_long","price":3000}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    // A stale close still closes: reducing orders always pass.
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"close","price":50000,"time":"2020-01-01T00:00:00Z"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(c.get("/api/account").await["denials"], json!({"stale": 1}));
    // The denial is in /api/signals with its reason, and in the orders.
    let signals = c.get("/api/signals?status=denied").await;
    assert_eq!(signals["signals"].as_array().unwrap().len(), 1, "{signals}");
    assert_eq!(signals["signals"][0]["outcome"]["reason"]["code"], "stale");
}

/// Unix time `offset_secs` from now as RFC 3339 UTC, the way TradingView's `{{timenow}}` writes it.
fn chrono_now_rfc3339(offset_secs: i64) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_secs;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[actix_web::test]
async fn entries_of_one_symbol_wait_out_the_cooldown() {
    let daemon = Daemon::start(&config("entry_cooldown_secs = 3600"));
    let c = daemon.client();
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","price":50000}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","price":50000}))
        .await;
    assert_eq!(denied_code(&record), "cooldown");
    assert_eq!(record["outcome"]["reason"]["cooldown_ms"], 3_600_000);
    assert_eq!(record["outcome"]["reason"]["symbol"], "BTCUSDT");
    // Another symbol is not held back, and a close is not an entry.
    let record = c
        .act(json!({"symbol":"ETHUSDT","action":"open_long","price":3000}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"close","price":50000}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");

    // After a restart the cooldown still holds: the entry's time is folded from the log.
    let daemon = daemon.restart();
    let c = daemon.client();
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","price":50000}))
        .await;
    assert_eq!(denied_code(&record), "cooldown");
    assert_eq!(
        c.get("/api/account").await["denials"],
        json!({"cooldown": 2})
    );
}

#[actix_web::test]
async fn a_daily_loss_trip_survives_a_restart() {
    let risk = "max_daily_loss = \"15\"";
    let daemon = Daemon::start(&config(risk));
    let c = daemon.client();
    lose_20(&c).await;
    wait_for_state(&c, "reducing").await;

    let daemon = daemon.restart();
    let c = daemon.client();
    assert_eq!(trading_state(&c).await, "reducing");
    let account = c.get("/api/account").await;
    assert_eq!(account["limits"]["loss_today"], "20");
    assert_eq!(account["limits"]["day_start_equity"], "10000");
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","price":50000}))
        .await;
    assert_eq!(denied_code(&record), "daily_loss_reached");
    // Same-day restart: no release.
    actix_web::rt::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(trading_state(&c).await, "reducing");
}

#[actix_web::test]
async fn drawdown_halts_until_an_operator_resumes() {
    // Long 0.1 BTC at 50000, marked at 49000: equity 10000 - 100 = 9900, drawdown 100 from the peak 10000.
    let daemon = Daemon::start(&config("max_drawdown = \"1%\""));
    let c = daemon.client();
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.1","price":50000}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    c.act(json!({"symbol":"BTCUSDT","price":49500})).await;
    // 50 < 1 % of 10000 = 100: still active.
    actix_web::rt::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(trading_state(&c).await, "active");
    c.act(json!({"symbol":"BTCUSDT","price":49000})).await;
    wait_for_state(&c, "halted").await;
    let record = c
        .act(json!({"symbol":"ETHUSDT","action":"open_long","price":3000}))
        .await;
    assert_eq!(denied_code(&record), "drawdown_reached");
    assert_eq!(record["outcome"]["reason"]["drawdown"], "100");
    assert_eq!(record["outcome"]["reason"]["limit"], "100");
    set_state(&c, "active").await;
    let record = c
        .act(json!({"symbol":"ETHUSDT","action":"open_long","price":3000}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(trading_state(&c).await, "active");
}

#[actix_web::test]
async fn a_symbol_s_own_price_band_and_cooldown_replace_the_account_s() {
    // ETHUSDT (the harness's last symbol table) sets its own band and cooldown; the account's band is 5 %.
    let daemon = Daemon::start(&common::config(
        "fee_rate = \"0\"\nslippage = \"0\"",
        "max_price_deviation = \"20%\"\nentry_cooldown_secs = 3600\n\n[risk]\nmax_price_deviation = \"5%\"\n",
    ));
    let c = daemon.client();
    c.act(json!({"symbol":"BTCUSDT","price":40000})).await;
    c.act(json!({"symbol":"ETHUSDT","price":3000})).await;
    let entry =
        |symbol: &str, price: u32| json!({"symbol":symbol,"action":"open_long","price":price});
    // 10 % above the mark: inside ETHUSDT's own 20 %, outside the account's 5 % for BTCUSDT.
    let eth = c.act(entry("ETHUSDT", 3300)).await;
    assert_eq!(eth["status"], "filled", "{eth}");
    let btc = c.act(entry("BTCUSDT", 44000)).await;
    assert_eq!(denied_code(&btc), "price_deviation");
    assert_eq!(btc["outcome"]["reason"]["limit_pct"], "5", "{btc}");
    // ETHUSDT's own hour holds its next entry; BTCUSDT has no cooldown (44000 is its mark now).
    let eth = c.act(entry("ETHUSDT", 3300)).await;
    assert_eq!(denied_code(&eth), "cooldown");
    for _ in 0..2 {
        let btc = c.act(entry("BTCUSDT", 44000)).await;
        assert_eq!(btc["status"], "filled", "{btc}");
    }
}

/// The real binary, killed with SIGKILL once the daily loss has tripped: the trip, today's loss, the peak equity,
/// the order count and the cooldown are folded back from the journal.
#[actix_web::test]
async fn the_limits_state_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config_text = config("max_daily_loss = \"15\"\nentry_cooldown_secs = 3600").replace(
        "[exchange]",
        "[journal]\npath = \"journal.db\"\n\n[exchange]",
    );
    std::fs::write(dir.path().join("config.toml"), &config_text).unwrap();
    let start = || {
        common::start_binary(
            &dir.path().join("config.toml"),
            &[
                ("TEST_TV_PASSPHRASE", common::PASSPHRASE),
                ("TEST_HMAC_SECRET", common::HMAC_SECRET),
                ("TEST_ADMIN_TOKEN", ADMIN_TOKEN),
                ("TEST_READ_TOKEN", common::READ_TOKEN),
            ],
        )
    };
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let get = |base: String, path: &'static str| {
        let http = http.clone();
        async move {
            let mut res = http
                .get(format!("{base}{path}"))
                .bearer_auth(common::READ_TOKEN)
                .send()
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&res.body().await.unwrap()).unwrap()
        }
    };
    let post = |base: String, body: Value| {
        let http = http.clone();
        async move {
            let mut body = body;
            body["passphrase"] = Value::from(common::PASSPHRASE);
            let res = http
                .post(format!("{base}/webhook/tradingview"))
                .insert_header(("content-type", "application/json"))
                .send_body(body.to_string())
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::ACCEPTED);
        }
    };
    let until = |what: &'static str, base: String, path: &'static str, ok: fn(&Value) -> bool| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = get(base.clone(), path).await;
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: {v}");
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    };

    let (mut child, base, api) = start();
    post(
        base.clone(),
        json!({"id":"k1","symbol":"BTCUSDT","action":"open_long","price":50000}),
    )
    .await;
    until("the entry fills", api.clone(), "/api/positions", |v| {
        v["positions"].as_array().is_some_and(|p| p.len() == 1)
    })
    .await;
    post(
        base.clone(),
        json!({"id":"k2","symbol":"BTCUSDT","action":"close","price":48000}),
    )
    .await;
    until("the loss is realized", api.clone(), "/api/account", |v| {
        v["realized_pnl"] == "-20"
    })
    .await;
    until(
        "the account trips",
        api.clone(),
        "/api/trading-state",
        |v| v["trading_state"] == "reducing",
    )
    .await;
    // An entry while reducing is denied, and counted.
    post(
        base.clone(),
        json!({"id":"k-reducing","symbol":"ETHUSDT","action":"open_long","price":3000}),
    )
    .await;
    let before = until("the entry is denied", api.clone(), "/api/account", |v| {
        v["denials"].as_object().is_some_and(|d| !d.is_empty())
    })
    .await;
    assert_eq!(before["limits"]["orders_last_minute"], 2, "{before}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (mut child, base, api) = start();
    let account = get(api.clone(), "/api/account").await;
    assert_eq!(account["trading_state"], "reducing", "{account}");
    assert_eq!(account["limits"]["loss_today"], "20", "{account}");
    // All of it: the day's start equity, the peak and the drawdown from it, the orders in the last minute, and the
    // denials by reason.
    assert_eq!(account["limits"], before["limits"]);
    assert_eq!(account["denials"], before["denials"]);
    // After an operator's resume, the cooldown from the entry before the kill still holds.
    let res = http
        .post(format!("{api}/api/trading-state"))
        .insert_header(("Authorization", format!("Bearer {ADMIN_TOKEN}")))
        .insert_header(("content-type", "application/json"))
        .send_body(r#"{"state":"active"}"#)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    post(
        base.clone(),
        json!({"id":"k3","symbol":"BTCUSDT","action":"open_long","price":50000}),
    )
    .await;
    let account = until("the entry is denied", api.clone(), "/api/account", |v| {
        v["denials"]["cooldown"] == 1
    })
    .await;
    assert_eq!(account["trading_state"], "active");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn check_config_validates_every_limit_with_its_key_path() {
    let parse = |risk: &str| {
        sentinel::Config::parse(&config(risk), std::env::temp_dir(), &common::test_env)
    };
    let config = parse(
        "max_daily_loss = \"5%\"\nmax_drawdown = \"1000\"\nmax_open_positions = 3\nmax_gross_exposure = \"250000\"\n\
         max_orders_per_minute = 30\nmax_orders_per_minute_per_symbol = 10\nentry_cooldown_secs = 60\n\
         max_price_deviation = \"2.5%\"\nmax_signal_age_secs = 120",
    )
    .expect("a valid [risk] table");
    let limits = &config.risk.limits;
    assert_eq!(limits.max_signal_age_ms, Some(120_000));
    assert_eq!(limits.entry_cooldown_ms, Some(60_000));
    assert_eq!(limits.max_price_deviation, Some("2.5".parse().unwrap()));

    let problems = parse(
        "max_daily_loss = \"-5\"\nmax_drawdown = \"150%\"\nmax_open_positions = 0\nmax_gross_exposure = \"x\"\n\
         max_orders_per_minute = -1\nmax_orders_per_minute_per_symbol = 0\nentry_cooldown_secs = 0\n\
         max_price_deviation = \"5\"\nmax_signal_age_secs = 0\nmax_dayly_loss = \"5%\"",
    )
    .expect_err("every key is wrong");
    let mut paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "risk.entry_cooldown_secs",
            "risk.max_daily_loss",
            "risk.max_dayly_loss",
            "risk.max_drawdown",
            "risk.max_gross_exposure",
            "risk.max_open_positions",
            "risk.max_orders_per_minute",
            "risk.max_orders_per_minute_per_symbol",
            "risk.max_price_deviation",
            "risk.max_signal_age_secs",
        ],
        "{problems:?}"
    );

    // A symbol's own cooldown and band, checked by the same rules under its own path.
    let symbol = |lines: &str| {
        sentinel::Config::parse(
            &common::config("", lines),
            std::env::temp_dir(),
            &common::test_env,
        )
    };
    let config = symbol("entry_cooldown_secs = 600\nmax_price_deviation = \"12%\"")
        .expect("a valid symbol table");
    let eth =
        &config.risk.limits.per_symbol[&sentinel_actors::types::Symbol::new("ETHUSDT").unwrap()];
    assert_eq!(eth.entry_cooldown_ms, Some(600_000));
    assert_eq!(eth.max_price_deviation, Some("12".parse().unwrap()));
    assert_eq!(config.risk.limits.per_symbol.len(), 1);
    let problems = symbol("entry_cooldown_secs = 0\nmax_price_deviation = \"12\"")
        .expect_err("both keys are wrong");
    let mut paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    paths.sort();
    let last = config.symbols.len() - 1;
    assert_eq!(
        paths,
        [
            format!("symbols[{last}].entry_cooldown_secs"),
            format!("symbols[{last}].max_price_deviation"),
        ],
        "{problems:?}"
    );
}
