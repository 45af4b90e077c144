//! What the webhook endpoint refuses, and that a refused webhook places nothing.

mod common;

use awc::http::{Method, StatusCode};
use common::{free_config, Daemon, PASSPHRASE};
use serde_json::{json, Value};

async fn nothing_ordered(c: &common::Client) {
    assert!(c.get("/api/orders").await["orders"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(c.get("/api/signals").await["signals"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[actix_web::test]
async fn bad_input_gets_a_json_error_with_the_right_status() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let json_ct = [("content-type", "application/json")];
    let tv = |body: Value| {
        let mut body = body;
        body["passphrase"] = Value::from(PASSPHRASE);
        body.to_string()
    };

    let cases: Vec<(&str, String, StatusCode, &str, Option<&str>)> = vec![
        (
            "tradingview",
            "{\"symbol\":".into(),
            StatusCode::BAD_REQUEST,
            "malformed_payload",
            None,
        ),
        (
            "tradingview",
            "[1,2,3]".into(),
            StatusCode::BAD_REQUEST,
            "malformed_payload",
            None,
        ),
        (
            "nope",
            tv(json!({"symbol":"BTCUSDT"})),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "tradingview",
            tv(json!({"symbol":"DOGEUSDT","action":"open_long"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("symbol"),
        ),
        (
            "tradingview",
            tv(json!({"symbol":"BTCUSDT","action":"moon"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("action"),
        ),
        (
            "tradingview",
            tv(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"lots"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("position_size"),
        ),
        (
            "tradingview",
            tv(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"150%"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("position_size"),
        ),
        (
            "tradingview",
            tv(json!({"symbol":"BTCUSDT","action":"open_long","leverage":2.5})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("leverage"),
        ),
        (
            "tradingview",
            tv(json!({"symbol":"BTCUSDT","action":"open_long","price":"-1"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price"),
        ),
        // Beyond any market: refused before arithmetic on it could overflow.
        (
            "tradingview",
            tv(
                json!({"symbol":"BTCUSDT","action":"open_long","price":"79228162514264337593543950335"}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("price"),
        ),
        (
            "tradingview",
            tv(json!({"symbol":"BTCUSDT","market_position":"long"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("market_position_size"),
        ),
        (
            "tradingview",
            tv(json!({"symbol":"BTCUSDT"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("action"),
        ),
    ];
    for (source, body, status, code, field) in cases {
        let (got, answer) = c.post(source, &body, &json_ct).await;
        assert_eq!(got, status, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], code, "{body} -> {answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        if let Some(field) = field {
            assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
            assert!(answer["error"]["message"].as_str().unwrap().contains(field));
        }
    }

    for (method, path) in [
        (Method::GET, "/webhook/tradingview"),
        (Method::PUT, "/webhook/signals"),
        (Method::POST, "/api/positions"),
        (Method::DELETE, "/healthz"),
    ] {
        let (status, answer) = c.request(method.clone(), path).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(answer["error"]["code"], "method_not_allowed");
    }
    let (status, answer) = c.request(Method::GET, "/api/signals?limit=lots").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_payload"))
    );
    let (status, answer) = c.request(Method::GET, "/nowhere").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    nothing_ordered(&c).await;
}

#[actix_web::test]
async fn forged_webhooks_are_401_and_place_nothing() {
    let daemon = Daemon::start(&free_config());
    let c = daemon.client();
    let order =
        json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.01","price":"45000"});
    let json_ct = ("content-type", "application/json");

    let mut wrong = order.clone();
    wrong["passphrase"] = json!("guess");
    let (status, answer) = c.post("tradingview", &wrong.to_string(), &[json_ct]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer,
        json!({"error":{"code":"unauthorized","message":"authentication failed"}})
    );
    let (status, _) = c.post("tradingview", &order.to_string(), &[json_ct]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no passphrase");

    let body = order.to_string();
    let forged = format!(
        "sha256={}",
        sentinel::auth::sign_hex(b"not-the-secret", body.as_bytes())
    );
    let (status, _) = c
        .post(
            "signals",
            &body,
            &[json_ct, ("x-webhook-signature", &forged)],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong key");
    let good = format!(
        "sha256={}",
        sentinel::auth::sign_hex(common::HMAC_SECRET.as_bytes(), body.as_bytes())
    );
    let tampered = body.replace("0.01", "0.99");
    let (status, _) = c
        .post(
            "signals",
            &tampered,
            &[json_ct, ("x-webhook-signature", &good)],
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "body changed after signing"
    );
    let (status, _) = c.post("signals", &body, &[json_ct]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "unsigned");
    // Not even a 400 for an unauthenticated malformed body on a signed source: nothing is revealed.
    let (status, _) = c
        .post(
            "signals",
            "{oops",
            &[json_ct, ("x-webhook-signature", &forged)],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    nothing_ordered(&c).await;
    let (status, _) = c.signed(&body).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the honest request still works"
    );
}
