//! Margin through the daemon: a denial with its numbers, liquidation prices on /api/positions, a paper liquidation
//! that a restart agrees with, the open position's own PnL against the symbol's history, and exact fill prices at a
//! tiny price.

mod common;

use common::{config, free_config, Daemon};
use serde_json::{json, Value};

/// An isolated symbol (SOLUSDT) besides the harness's BTCUSDT and ETHUSDT, which are cross.
const SOL: &str = r#"
[[symbols]]
symbol = "SOLUSDT"
max_leverage = 20
quantity_step = "0.01"
margin_mode = "isolated"
maintenance_margin_rate = "0.004"
"#;

/// The fills in /api/orders, oldest first.
async fn fills(c: &common::Client) -> Vec<Value> {
    let orders = c.get("/api/orders?limit=1000").await;
    let mut fills: Vec<Value> = orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| !o["fill"].is_null())
        .cloned()
        .collect();
    fills.reverse();
    fills
}

#[actix_web::test]
async fn an_entry_without_the_margin_for_it_is_denied_with_the_numbers() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    // 0.5 BTC at 40000 at 1x needs 20000 of initial margin; the wallet holds 10000 and nothing is open.
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.5","leverage":1,"price":"40000"}))
        .await;
    assert_eq!(record["status"], "denied", "{record}");
    assert_eq!(
        record["outcome"]["reason"],
        json!({"code":"insufficient_margin","required":"20000","available":"10000"})
    );
    assert!(c.position("BTCUSDT").await.is_none(), "nothing placed");

    // At 5x it needs 0.5 x 40000 / 5 = 4000: filled.
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.5","leverage":5,"price":"40000"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    // Adding 0.8 at 5x: IM(after) = 1.3 x 40000 / 5 = 10400, less the 4000 held = 6400 required; available is
    // 10000 + 0 unrealized - 4000 = 6000.
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.8","leverage":5,"price":"40000"}))
        .await;
    assert_eq!(
        record["outcome"]["reason"],
        json!({"code":"insufficient_margin","required":"6400","available":"6000"})
    );
    // Closing always passes.
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"close_long"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert!(c.position("BTCUSDT").await.is_none());
}

#[actix_web::test]
async fn positions_show_margin_and_the_liquidation_price_cross_and_isolated() {
    let daemon = Daemon::start(&config("fee_rate = \"0\"\nslippage = \"0\"", SOL));
    let c = daemon.client();
    c.act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"1","leverage":10,"price":"24940"}))
        .await;
    let btc = c.position("BTCUSDT").await.unwrap();
    assert_eq!(btc["leverage"], 10);
    assert_eq!(btc["margin_mode"], "cross");
    assert_eq!(btc["initial_margin"], "2494"); // 1 x 24940 / 10
    assert_eq!(btc["maintenance_margin"], "99.76"); // 1 x 24940 x 0.004
                                                    // Cross, alone: LP = (10000 - 1 x 24940) / (1 x 0.004 - 1) = -14940 / -0.996 = 15000.
                                                    // Check: at 15000 equity is 10000 - 9940 = 60 = 15000 x 0.004.
    assert_eq!(btc["liquidation_price"], "15000");

    c.act(json!({"symbol":"SOLUSDT","action":"open_short","position_size":"10","leverage":10,"price":"100.4"}))
        .await;
    let sol = c.position("SOLUSDT").await.unwrap();
    assert_eq!(sol["margin_mode"], "isolated");
    assert_eq!(sol["initial_margin"], "100.4"); // 10 x 100.4 / 10
    assert_eq!(sol["maintenance_margin"], "4.016"); // 1004 x 0.004
                                                    // Isolated short: WB = 100.4; LP = (100.4 + 10 x 100.4) / (10 x 0.004 + 10) = 1104.4 / 10.04 = 110.
    assert_eq!(sol["liquidation_price"], "110");
    // SOL's isolated margin left BTC's cross wallet: (10000 - 100.4 - 24940) / -0.996 = 15100.8032128514056224...,
    // rounded up at 12 places.
    let btc = c.position("BTCUSDT").await.unwrap();
    assert_eq!(btc["liquidation_price"], "15100.803212851406");
}

#[actix_web::test]
async fn paper_liquidates_at_the_liquidation_price_with_the_fee_and_a_restart_agrees() {
    let daemon = Daemon::start(&config("fee_rate = \"0.0004\"\nslippage = \"0\"", SOL));
    let c = daemon.client();
    // Short 10 SOL at 100.4, 10x, isolated, with a stop far beyond: LP 110 (see above). Fee 1004 x 0.0004 = 0.4016.
    let open = c.act(json!({"symbol":"SOLUSDT","action":"open_short","position_size":"10","leverage":10,"price":"100.4","stop_loss":"130"}))
        .await;
    assert_eq!(
        c.position("SOLUSDT").await.unwrap()["liquidation_price"],
        "110"
    );
    c.act(json!({"symbol":"SOLUSDT","price":"109.99"})).await;
    assert!(c.position("SOLUSDT").await.is_some(), "short of 110");
    // A gap to 111: closed whole at 110, not at 111.
    let tick = c.act(json!({"symbol":"SOLUSDT","price":"111"})).await;
    assert!(c.position("SOLUSDT").await.is_none(), "liquidated");
    let all = fills(&c).await;
    assert_eq!(all.len(), 2, "{all:?}");
    let liquidation = &all[1];
    assert!(liquidation["order"].is_null());
    assert_eq!(liquidation["fill"]["reason"], "liquidation");
    // It names its cause: the signal that opened the short and the tick that crossed the liquidation price.
    assert_eq!(
        liquidation["cause"]["opened_by"], open["signal"]["id"],
        "{liquidation}"
    );
    assert_eq!(
        liquidation["cause"]["tick"], tick["signal"]["id"],
        "{liquidation}"
    );
    assert_eq!(tick["status"], "triggered", "{tick}");
    assert_eq!(liquidation["fill"]["side"], "buy");
    assert_eq!(liquidation["fill"]["quantity"], "10");
    assert_eq!(liquidation["fill"]["price"], "110");
    assert_eq!(liquidation["fill"]["fee"], "0.44"); // 10 x 110 x 0.0004
                                                    // 10000 - 0.4016 (entry fee) + (100.4 - 110) x 10 - 0.44 = 9903.1584
    let account = c.get("/api/account").await;
    assert_eq!(account["balance"], "9903.1584");
    // The stop went with the position: a price through it fills nothing.
    c.act(json!({"symbol":"SOLUSDT","price":"131"})).await;
    assert_eq!(fills(&c).await.len(), 2);

    // The ledger folded from the journal, and the paper book restored from it, agree.
    let daemon = daemon.restart();
    let c = daemon.client();
    assert!(c.position("SOLUSDT").await.is_none());
    assert_eq!(c.get("/api/account").await["balance"], "9903.1584");
    // And trading goes on from there: 10 SOL at 100 at 10x fills at 100 (fee 0.4).
    let record = c
        .act(json!({"symbol":"SOLUSDT","action":"open_long","position_size":"10","leverage":10,"price":"100"}))
        .await;
    assert_eq!(record["status"], "filled", "{record}");
    assert_eq!(c.get("/api/account").await["balance"], "9902.7584");
}

#[actix_web::test]
async fn a_position_reports_its_own_pnl_and_the_symbols_history_apart() {
    let daemon = Daemon::start(&config("fee_rate = \"0.0004\"\nslippage = \"0\"", ""));
    let c = daemon.client();
    // A round trip: 0.1 at 40000 (fee 1.6) out at 41000 (fee 1.64): +100 realized.
    c.act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.1","price":"40000"}))
        .await;
    c.act(json!({"symbol":"BTCUSDT","action":"close_long","price":"41000"}))
        .await;
    // A new position: 0.2 at 41000, fee 3.28.
    c.act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.2","price":"41000"}))
        .await;
    let btc = c.position("BTCUSDT").await.unwrap();
    assert_eq!(btc["realized_pnl"], "0");
    assert_eq!(btc["fees"], "3.28");
    assert_eq!(btc["history"]["realized_pnl"], "100");
    assert_eq!(btc["history"]["fees"], "6.52"); // 1.6 + 1.64 + 3.28
    assert_eq!(btc["leverage"], 1, "the symbol's default_leverage");
}

#[actix_web::test]
async fn a_tiny_price_fills_exactly_or_on_the_configured_tick() {
    let symbols = r#"
[[symbols]]
symbol = "PEPEUSDT"
quantity_step = "1"

[[symbols]]
symbol = "SHIBUSDT"
quantity_step = "1"
tick_size = "0.0000000001"
"#;
    let daemon = Daemon::start(&config(
        "fee_rate = \"0.0004\"\nslippage = \"0.0005\"",
        symbols,
    ));
    let c = daemon.client();
    for symbol in ["PEPEUSDT", "SHIBUSDT"] {
        let record = c
            .act(json!({"symbol":symbol,"action":"open_long","position_size":"1000000","price":"0.0000012345"}))
            .await;
        assert_eq!(record["status"], "filled", "{record}");
    }
    let all = fills(&c).await;
    // No tick: 0.0000012345 x 1.0005 = 0.00000123511725, exactly the 0.05 % slippage (it used to be 0.00000124).
    // Fee: 1.23511725 x 0.0004 = 0.0004940469, booked to 8 places: 0.00049405.
    assert_eq!(all[0]["fill"]["price"], "0.00000123511725");
    assert_eq!(all[0]["fill"]["fee"], "0.00049405");
    // Tick 1e-10: 12351.1725 ticks, rounded up against the buyer to 12352. Fee: 1.2352 x 0.0004 = 0.00049408.
    assert_eq!(all[1]["fill"]["price"], "0.0000012352");
    assert_eq!(all[1]["fill"]["fee"], "0.00049408");
}

#[test]
fn check_config_names_each_bad_margin_key() {
    let bad = r#"
[[symbols]]
symbol = "SOLUSDT"
max_leverage = 50
margin_mode = "portfolio"
maintenance_margin_rate = "0.02"
tick_size = "-0.01"
"#;
    let text = config("fee_rate = \"0\"\nslippage = \"0\"", bad);
    let dir = tempfile::tempdir().unwrap();
    let problems = sentinel::Config::parse(&text, dir.path().to_path_buf(), &common::test_env)
        .expect_err("invalid");
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "symbols[2].margin_mode",
            // 0.02 is not below 1 / 50: a position at 50x would be liquidated as it opens.
            "symbols[2].maintenance_margin_rate",
            "symbols[2].tick_size",
        ],
        "{problems:?}"
    );
    // The defaults: cross at 0.4 %, no tick.
    let text = config("fee_rate = \"0\"\nslippage = \"0\"", "");
    let good = sentinel::Config::parse(&text, dir.path().to_path_buf(), &common::test_env).unwrap();
    let btc = &good.symbols[0];
    assert_eq!(btc.margin.mode.as_str(), "cross");
    assert_eq!(btc.margin.maintenance_rate.to_string(), "0.004");
    assert_eq!(btc.tick_size, None);
}
