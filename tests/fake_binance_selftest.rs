//! The fake Binance on its own: signing, filters, algo orders, faults and stream frames.

mod fake_binance;

use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use awc::http::Method;
use fake_binance::{hmac_sha256_hex, FakeBinance, Fault};
use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Answer {
    status: u16,
    headers: awc::http::header::HeaderMap,
    body: Value,
    text: String,
}

struct Api<'a> {
    fake: &'a FakeBinance,
    http: awc::Client,
}

impl<'a> Api<'a> {
    fn new(fake: &'a FakeBinance) -> Self {
        Api {
            fake,
            http: awc::Client::builder()
                .timeout(Duration::from_secs(5))
                .finish(),
        }
    }

    /// `params` plus timestamp and signature, all in the query string (GET/DELETE) or the body (POST/PUT).
    fn signed(&self, params: &str) -> String {
        let payload = if params.is_empty() {
            format!("timestamp={}", now_ms())
        } else {
            format!("{params}&timestamp={}", now_ms())
        };
        format!(
            "{payload}&signature={}",
            hmac_sha256_hex(&self.fake.api_secret, &payload)
        )
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: &str,
        key: Option<&str>,
    ) -> Answer {
        self.send_with(&self.http, method, path, query, body, key)
            .await
            .expect("request")
    }

    async fn send_with(
        &self,
        http: &awc::Client,
        method: Method,
        path: &str,
        query: &str,
        body: &str,
        key: Option<&str>,
    ) -> Result<Answer, awc::error::SendRequestError> {
        let url = if query.is_empty() {
            format!("{}{path}", self.fake.rest_url)
        } else {
            format!("{}{path}?{query}", self.fake.rest_url)
        };
        let mut req = http
            .request(method, url)
            .insert_header(("Content-Type", "application/x-www-form-urlencoded"));
        if let Some(key) = key {
            req = req.insert_header(("X-MBX-APIKEY", key));
        }
        let mut res = req.send_body(body.to_string()).await?;
        let bytes = res.body().await.expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(Answer {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        })
    }

    async fn get(&self, path: &str, params: &str) -> Answer {
        let q = self.signed(params);
        self.send(Method::GET, path, &q, "", Some(&self.fake.api_key))
            .await
    }

    async fn post(&self, path: &str, params: &str) -> Answer {
        let b = self.signed(params);
        self.send(Method::POST, path, "", &b, Some(&self.fake.api_key))
            .await
    }

    async fn delete(&self, path: &str, params: &str) -> Answer {
        let q = self.signed(params);
        self.send(Method::DELETE, path, &q, "", Some(&self.fake.api_key))
            .await
    }
}

fn code(a: &Answer) -> i64 {
    a.body["code"].as_i64().unwrap_or(0)
}

#[test]
fn hmac_matches_the_binance_documentation_example() {
    // USDⓈ-M Futures "General Info", SIGNED Endpoint Examples for POST /fapi/v1/order - HMAC Keys, Example 1.
    let secret = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9";
    let query =
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000\
                 &timestamp=1591702613943";
    assert_eq!(
        hmac_sha256_hex(secret, query),
        "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
    );
}

#[actix_web::test]
async fn signing_rules() {
    let fake = FakeBinance::start().await;
    let api = Api::new(&fake);

    let ok = api.get("/fapi/v3/balance", "").await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body[0]["asset"], "USDT");
    assert_eq!(ok.body[0]["balance"], "10000.00000000");
    assert!(ok.headers.get("X-MBX-USED-WEIGHT-1M").is_some());

    // Tampered after signing.
    let q = api.signed("symbol=BTCUSDT").replace("BTCUSDT", "ETHUSDT");
    let bad = api
        .send(
            Method::GET,
            "/fapi/v3/positionRisk",
            &q,
            "",
            Some(&fake.api_key),
        )
        .await;
    assert_eq!((bad.status, code(&bad)), (400, -1022));

    // Mixed: part in the query string, the rest (and the signature) in the body; totalParams = query + body.
    let query = "symbol=BTCUSDT&leverage=7";
    let body = format!("recvWindow=5000&timestamp={}", now_ms());
    let sig = hmac_sha256_hex(&fake.api_secret, &format!("{query}{body}"));
    let mixed = api
        .send(
            Method::POST,
            "/fapi/v1/leverage",
            query,
            &format!("{body}&signature={sig}"),
            Some(&fake.api_key),
        )
        .await;
    assert_eq!(mixed.status, 200, "{}", mixed.text);
    assert_eq!(mixed.body["leverage"], 7);
    assert_eq!(fake.leverage("BTCUSDT"), 7);

    let no_key = api
        .send(Method::GET, "/fapi/v3/balance", &api.signed(""), "", None)
        .await;
    assert_eq!((no_key.status, code(&no_key)), (400, -2014));
    let wrong_key = api
        .send(
            Method::GET,
            "/fapi/v3/balance",
            &api.signed(""),
            "",
            Some("nope"),
        )
        .await;
    assert_eq!((wrong_key.status, code(&wrong_key)), (401, -2015));

    // The server clock runs 10 s ahead: a fresh local timestamp is outside the 5 s window.
    fake.set_server_time_offset_ms(10_000);
    let late = api.get("/fapi/v3/balance", "").await;
    assert_eq!((late.status, code(&late)), (400, -1021));
    let time = api.send(Method::GET, "/fapi/v1/time", "", "", None).await;
    assert!(time.body["serverTime"].as_i64().unwrap() >= now_ms() + 9_000);
    fake.set_server_time_offset_ms(0);

    let unknown = api
        .send(Method::GET, "/fapi/v9/nothing", "", "", None)
        .await;
    assert_eq!(unknown.status, 404);
    let info = api
        .send(Method::GET, "/fapi/v1/exchangeInfo", "", "", None)
        .await;
    let btc = info.body["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["symbol"] == "BTCUSDT")
        .unwrap();
    assert_eq!(btc["filters"][0]["tickSize"], "0.10");
    assert_eq!(btc["quantityPrecision"], 3);
}

#[actix_web::test]
async fn market_orders_and_filters() {
    let fake = FakeBinance::start().await;
    let api = Api::new(&fake);
    let order = "/fapi/v1/order";

    let placed = api
        .post(order, "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.010&newClientOrderId=e1&newOrderRespType=RESULT")
        .await;
    assert_eq!(placed.status, 200, "{}", placed.text);
    assert_eq!(placed.body["status"], "FILLED");
    assert_eq!(placed.body["avgPrice"], "50000.00");
    assert_eq!(placed.body["executedQty"], "0.010");
    assert!(placed.headers.get("X-MBX-ORDER-COUNT-1M").is_some());
    assert_eq!(fake.position("BTCUSDT"), d("0.01"));
    assert_eq!(fake.wallet(), d("9999.8")); // 500 notional * 0.0004
    let orders = fake.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(
        (
            orders[0].client_order_id.as_str(),
            orders[0].status.as_str()
        ),
        ("e1", "FILLED")
    );

    let queried = api.get(order, "symbol=BTCUSDT&origClientOrderId=e1").await;
    assert_eq!(queried.body["orderId"], placed.body["orderId"]);
    let trades = api.get("/fapi/v1/userTrades", "symbol=BTCUSDT").await;
    assert_eq!(trades.body[0]["qty"], "0.010");
    let risk = api.get("/fapi/v3/positionRisk", "").await;
    assert_eq!(risk.body[0]["positionAmt"], "0.010");

    // ACK (the default) answers NEW though the order is filled.
    let ack = api
        .post(order, "symbol=ETHUSDT&side=SELL&type=MARKET&quantity=0.1")
        .await;
    assert_eq!(
        (
            ack.body["status"].as_str(),
            ack.body["executedQty"].as_str()
        ),
        (Some("NEW"), Some("0"))
    );
    assert_eq!(fake.position("ETHUSDT"), d("-0.1"));

    let refusals = [
        (
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&newClientOrderId=e1",
            -4116,
        ),
        (
            "symbol=BTCUSDT&side=BUY&type=STOP_MARKET&quantity=0.01&stopPrice=60000",
            -4120,
        ),
        ("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.0101", -1111),
        ("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=121", -4005),
        ("symbol=ETHUSDT&side=BUY&type=MARKET&quantity=0.001", -4164),
        (
            "symbol=ETHUSDT&side=SELL&type=MARKET&quantity=0.01&reduceOnly=true",
            -2022,
        ),
        ("symbol=OLDUSDT&side=BUY&type=MARKET&quantity=100", -4140),
        ("symbol=XYZUSDT&side=BUY&type=MARKET&quantity=1", -1121),
        (
            "symbol=BTCUSDT&side=BUY&positionSide=LONG&type=MARKET&quantity=0.01",
            -4061,
        ),
        (
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&newClientOrderId=bad%20id",
            -1100,
        ),
    ];
    for (params, want) in refusals {
        let r = api.post(order, params).await;
        assert_eq!((r.status, code(&r)), (400, want), "{params}: {}", r.text);
    }
    assert_eq!(fake.orders().len(), 2);

    // A reduce-only order closes the position.
    let close = api
        .post(
            order,
            "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.01&reduceOnly=true",
        )
        .await;
    assert_eq!(close.status, 200, "{}", close.text);
    assert_eq!(fake.position("BTCUSDT"), Decimal::ZERO);

    let missing = api.get(order, "symbol=BTCUSDT&orderId=1").await;
    assert_eq!((missing.status, code(&missing)), (400, -2013));
}

#[actix_web::test]
async fn algo_orders() {
    let fake = FakeBinance::start().await;
    let api = Api::new(&fake);
    let algo = "/fapi/v1/algoOrder";
    api.post(
        "/fapi/v1/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01",
    )
    .await;

    let base =
        "algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&workingType=MARK_PRICE&closePosition=true";
    let off_tick = api
        .post(
            algo,
            &format!("{base}&type=STOP_MARKET&triggerPrice=49000.05&clientAlgoId=x"),
        )
        .await;
    assert_eq!(code(&off_tick), -4014);
    let at_once = api
        .post(
            algo,
            &format!("{base}&type=STOP_MARKET&triggerPrice=50000&clientAlgoId=x"),
        )
        .await;
    assert_eq!(code(&at_once), -2021);
    let with_qty = api
        .post(
            algo,
            &format!("{base}&type=STOP_MARKET&triggerPrice=49000&quantity=0.01&clientAlgoId=x"),
        )
        .await;
    assert_eq!(code(&with_qty), -4137);

    let sl = api
        .post(
            algo,
            &format!("{base}&type=STOP_MARKET&triggerPrice=49000&clientAlgoId=sl1"),
        )
        .await;
    assert_eq!(sl.status, 200, "{}", sl.text);
    assert_eq!(sl.body["algoStatus"], "NEW");
    let tp = api
        .post(
            algo,
            &format!("{base}&type=TAKE_PROFIT_MARKET&triggerPrice=52000&clientAlgoId=tp1"),
        )
        .await;
    assert_eq!(tp.status, 200, "{}", tp.text);
    let dup = api
        .post(
            algo,
            &format!("{base}&type=TAKE_PROFIT_MARKET&triggerPrice=53000&clientAlgoId=tp1"),
        )
        .await;
    assert_eq!(code(&dup), -4116);
    let open = api.get("/fapi/v1/openAlgoOrders", "symbol=BTCUSDT").await;
    assert_eq!(open.body.as_array().unwrap().len(), 2);

    fake.set_mark("BTCUSDT", d("49500"));
    assert_eq!(fake.algo_orders()[0].status, "NEW");
    fake.set_mark("BTCUSDT", d("48900"));
    let algos = fake.algo_orders();
    assert_eq!(algos[0].status, "FINISHED");
    assert_eq!(
        algos[1].status, "NEW",
        "the other leg is not cancelled by the exchange"
    );
    let fired = fake.orders().last().cloned().unwrap();
    assert_eq!(Some(fired.order_id), algos[0].actual_order_id);
    assert_eq!(
        (
            fired.side.as_str(),
            fired.order_type.as_str(),
            fired.executed_qty,
            fired.avg_price,
            fired.reduce_only
        ),
        ("SELL", "MARKET", d("0.01"), d("48900"), true)
    );
    assert_eq!(fake.position("BTCUSDT"), Decimal::ZERO);
    let queried = api.get(algo, "clientAlgoId=sl1").await;
    assert_eq!(queried.body["algoStatus"], "FINISHED");
    assert_eq!(queried.body["actualOrderId"], fired.order_id.to_string());

    // The TP leg fires with nothing to close: EXPIRED, nothing trades; it can no longer be cancelled.
    let before = fake.orders().len();
    fake.set_mark("BTCUSDT", d("52000"));
    assert_eq!(fake.algo_orders()[1].status, "EXPIRED");
    assert_eq!(fake.orders().len(), before);
    let cancel = api.delete(algo, "clientAlgoId=tp1").await;
    assert_eq!((cancel.status, code(&cancel)), (400, -2011));

    // Placed "on the website", cancelled through the API.
    fake.place_algo_directly("ETHUSDT", "BUY", "STOP_MARKET", d("3100"), "web_sl");
    let cancelled = api.delete(algo, "clientAlgoId=web_sl").await;
    assert_eq!(cancelled.body["code"], "200", "{}", cancelled.text);
    assert_eq!(fake.algo_orders()[2].status, "CANCELED");

    // A trade "on the website" moves the position and nothing else.
    let wallet = fake.wallet();
    fake.trade_directly("ETHUSDT", d("-0.5"), d("2990"));
    assert_eq!(fake.position("ETHUSDT"), d("-0.5"));
    assert_eq!(fake.wallet(), wallet);
    assert_eq!(fake.orders().last().unwrap().client_order_id, "web_1");
}

#[actix_web::test]
async fn faults() {
    let fake = FakeBinance::start().await;
    let api = Api::new(&fake);
    let order = "/fapi/v1/order";
    let buy = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.002";

    fake.inject(Fault::ServerError {
        path: order,
        status: 502,
        times: 1,
    });
    let r = api.post(order, buy).await;
    assert_eq!(r.status, 502);
    assert!(r.text.contains("<html>"));
    assert!(fake.orders().is_empty(), "not executed");

    fake.inject(Fault::UnknownAfterExecute {
        path: order,
        code: -1007,
    });
    let r = api.post(order, buy).await;
    assert_eq!((r.status, code(&r)), (503, -1007));
    assert_eq!(fake.orders().len(), 1, "executed");

    // Executed, then answered as a resend would be.
    fake.inject(Fault::DuplicateAfterExecute { path: order });
    let r = api.post(order, buy).await;
    assert_eq!((r.status, code(&r)), (400, -4116));
    assert_eq!(fake.orders().len(), 2, "executed");

    fake.inject(Fault::TimeoutAfterExecute {
        path: order,
        hold: Duration::from_secs(2),
    });
    let impatient = awc::Client::builder()
        .timeout(Duration::from_millis(300))
        .finish();
    let b = api.signed(buy);
    let r = api
        .send_with(&impatient, Method::POST, order, "", &b, Some(&fake.api_key))
        .await;
    assert!(r.is_err(), "the client times out");
    assert_eq!(fake.orders().len(), 3, "executed");

    fake.inject(Fault::Delay {
        path: order,
        symbol: Some("ETHUSDT".into()),
        delay: Duration::from_millis(400),
        times: 1,
    });
    let started = Instant::now();
    api.post(order, buy).await;
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "BTCUSDT is not delayed"
    );
    let started = Instant::now();
    let r = api
        .post(order, "symbol=ETHUSDT&side=BUY&type=MARKET&quantity=0.01")
        .await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(r.status, 200, "{}", r.text);

    fake.inject(Fault::RateLimit {
        status: 429,
        retry_after_secs: 7,
        times: 1,
    });
    let r = api.send(Method::GET, "/fapi/v1/ping", "", "", None).await;
    assert_eq!((r.status, code(&r)), (429, -1003));
    assert_eq!(r.headers.get("Retry-After").unwrap(), "7");
    assert_eq!(
        api.send(Method::GET, "/fapi/v1/ping", "", "", None)
            .await
            .status,
        200
    );

    fake.inject(Fault::RejectKey { times: 1 });
    let r = api.get("/fapi/v3/balance", "").await;
    assert_eq!((r.status, code(&r)), (401, -2015));
    assert_eq!(api.get("/fapi/v3/balance", "").await.status, 200);

    let answered: Vec<u16> = fake.requests().iter().map(|r| r.answered).collect();
    assert_eq!(answered, [502, 503, 400, 200, 200, 200, 429, 200, 401, 200]);
    assert!(fake.requests()[0]
        .params
        .iter()
        .any(|(k, v)| k == "symbol" && v == "BTCUSDT"));
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame in time")
            .expect("stream open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

#[actix_web::test]
async fn streams() {
    let fake = FakeBinance::start().await;
    let api = Api::new(&fake);

    let url = format!(
        "{}/market/stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice@1s",
        fake.ws_url
    );
    let (mut market, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let first = next_json(&mut market).await;
    assert_eq!(first["stream"], "btcusdt@markPrice@1s");
    assert_eq!(first["data"]["e"], "markPriceUpdate");
    assert_eq!(first["data"]["p"], "50000.00000000");
    next_json(&mut market).await; // ethusdt
    fake.set_mark("BTCUSDT", d("50123.4"));
    let update = next_json(&mut market).await;
    assert_eq!(
        (update["data"]["s"].as_str(), update["data"]["p"].as_str()),
        (Some("BTCUSDT"), Some("50123.40000000"))
    );

    market
        .send(Message::Ping(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), market.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(pong, Message::Pong(_)));

    let (mut raw, _) =
        tokio_tungstenite::connect_async(format!("{}/market/ws/ethusdt@markPrice", fake.ws_url))
            .await
            .unwrap();
    assert_eq!(next_json(&mut raw).await["s"], "ETHUSDT");

    // The user data stream.
    let key = api
        .send(
            Method::POST,
            "/fapi/v1/listenKey",
            "",
            "",
            Some(&fake.api_key),
        )
        .await;
    let listen_key = key.body["listenKey"].as_str().unwrap().to_string();
    assert!(listen_key.len() >= 60);
    let again = api
        .send(
            Method::PUT,
            "/fapi/v1/listenKey",
            "",
            "",
            Some(&fake.api_key),
        )
        .await;
    assert_eq!(again.body["listenKey"], listen_key.as_str());
    assert!(
        tokio_tungstenite::connect_async(format!("{}/private/ws/nope", fake.ws_url))
            .await
            .is_err()
    );
    let (mut user, _) =
        tokio_tungstenite::connect_async(format!("{}/private/ws/{listen_key}", fake.ws_url))
            .await
            .unwrap();
    assert_eq!(fake.stream_connections(), 3);

    api.post(
        "/fapi/v1/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&newClientOrderId=s1",
    )
    .await;
    let new = next_json(&mut user).await;
    assert_eq!(
        (
            new["e"].as_str(),
            new["o"]["x"].as_str(),
            new["o"]["c"].as_str()
        ),
        (Some("ORDER_TRADE_UPDATE"), Some("NEW"), Some("s1"))
    );
    let trade = next_json(&mut user).await;
    assert_eq!(
        (trade["o"]["x"].as_str(), trade["o"]["X"].as_str()),
        (Some("TRADE"), Some("FILLED"))
    );
    assert_eq!(trade["o"]["L"], "50123.4");
    let account = next_json(&mut user).await;
    assert_eq!(account["e"], "ACCOUNT_UPDATE");
    assert_eq!(account["a"]["P"][0]["pa"], "0.01");

    fake.inject(Fault::DropStreams);
    assert_eq!(fake.stream_connections(), 0);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match market.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the market stream is closed");

    fake.inject(Fault::StreamsRefused);
    assert!(tokio_tungstenite::connect_async(format!(
        "{}/market/ws/btcusdt@markPrice",
        fake.ws_url
    ))
    .await
    .is_err());
    let refused = api
        .send(
            Method::POST,
            "/fapi/v1/listenKey",
            "",
            "",
            Some(&fake.api_key),
        )
        .await;
    assert_eq!(refused.status, 503);
    fake.inject(Fault::StreamsAccepted);
    assert!(tokio_tungstenite::connect_async(format!(
        "{}/market/ws/btcusdt@markPrice",
        fake.ws_url
    ))
    .await
    .is_ok());
}
