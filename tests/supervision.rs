//! A panic inside a strategy actor restarts it with its state; the daemon and other symbols carry on.

mod common;

use common::{free_config, Daemon};
use serde_json::json;

#[actix_web::test]
async fn a_panicking_strategy_restarts_with_its_state() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    c.act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.2","price":"40000"}))
        .await;
    c.act(json!({"symbol":"ETHUSDT","action":"open_short","position_size":"1","price":"2000"}))
        .await;
    // State only the strategy actor holds: BTCUSDT is paused.
    c.act(json!({"symbol":"BTCUSDT","action":"pause"})).await;

    // The real path: a webhook whose processing panics inside the BTCUSDT strategy.
    let record = c
        .act(
            json!({"symbol":"BTCUSDT","action":"open_long","price":"40100",
                    "comment": sentinel_actors::FAULT_INJECTION_PANIC}),
        )
        .await;
    assert_eq!(record["status"], "failed");
    // Typed: the strategy panicked (and was restarted), with the panic's message.
    assert_eq!(record["outcome"]["error"]["code"], "strategy_panicked");
    assert!(record["outcome"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("fault injection"));

    // The restarted actor still knows it is paused...
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.1"}))
        .await;
    assert_eq!(record["outcome"]["reason"]["code"], "paused");
    // ...and its position is intact, and the next signal is processed.
    assert_eq!(c.position("BTCUSDT").await.unwrap()["quantity"], "0.2");
    let record = c
        .act(json!({"symbol":"BTCUSDT","action":"close_long","price":"40500"}))
        .await;
    assert_eq!(record["status"], "filled");
    assert!(c.position("BTCUSDT").await.is_none());

    // The other symbol was untouched and still trades.
    assert_eq!(c.position("ETHUSDT").await.unwrap()["quantity"], "1");
    let record = c
        .act(json!({"symbol":"ETHUSDT","action":"close","price":"1900"}))
        .await;
    assert_eq!(record["status"], "filled");
    assert_eq!(c.get("/api/account").await["balance"], "10200"); // +100 BTC, +100 ETH
    assert_eq!(c.get("/healthz").await["status"], "ok");
}
