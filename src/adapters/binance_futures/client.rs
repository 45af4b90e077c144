//! Binance's REST API, signed: HMAC-SHA256 over the query string with `timestamp` and `recvWindow`, to the configured
//! host only, redirects off, every call bounded in time. The client also keeps the account's standing with the
//! venue: the clock offset, the request weight and order counts used, a pause the venue asked for (429, 418) and a
//! halt (a refused key), so every caller sees the same gate.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::Sha256;
use tracing::{error, info, warn};

use super::rules::RateLimits;
use crate::secret::Secret;

/// Waits for a pause to end at most this long, for an exit; entries are refused during a pause instead.
const LONGEST_EXIT_WAIT: Duration = Duration::from_secs(60);
/// Retries after `-1021` (our clock and Binance's disagree), each after a fresh clock sync.
const CLOCK_RETRIES: usize = 2;
/// Share of a rate limit past which background calls wait for the window to roll, keeping the rest for orders.
const SLOW_DOWN_AT: f64 = 0.8;
/// Without a `Retry-After`, a 429 pauses this long, a 418 (an IP ban) this long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);
const DEFAULT_BAN: Duration = Duration::from_secs(120);

/// How much a call may wait for the venue's limits, by what it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// Opens or grows a position: refused while the venue asks for a pause.
    Entry,
    /// Closes, protects or looks up a position: waits out a pause (bounded) rather than leave it open.
    Exit,
    /// Polling and bookkeeping: waits for a rate window to roll once the budget runs low.
    Background,
}

/// Why a call did not return an answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The request may or may not have been executed: a timeout, a 5xx, `-1006` or `-1007`. Look it up.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The request never reached Binance (no connection): nothing was executed.
    #[error("not sent: {0}")]
    NotSent(String),
    /// Binance refused it with a code: nothing was executed.
    #[error("Binance code {code}: {msg}")]
    Refused { status: u16, code: i64, msg: String },
    /// Binance asked for a pause (429, 418), now or earlier; nothing was sent.
    #[error("paused by Binance until {until_ms} ms: {why}")]
    Paused { until_ms: i64, why: String },
    /// The key or signature was refused: trading is halted until an operator acts.
    #[error("halted: {0}")]
    Halted(String),
}

impl CallError {
    pub fn code(&self) -> Option<i64> {
        match self {
            CallError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The account's standing with the venue, shared by every call.
#[derive(Debug, Default)]
struct Gate {
    /// No call until then (ms since the epoch, local clock), and why.
    paused: Option<(i64, String)>,
    halted: Option<String>,
    /// The last `X-MBX-USED-WEIGHT-1M` and the minute it was read in.
    weight: (u32, i64),
    /// The last `X-MBX-ORDER-COUNT-10S` and the 10 s window it was read in, and `-1M` likewise.
    orders_10s: (u32, i64),
    orders_1m: (u32, i64),
}

/// What the API shows of the client.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Standing {
    pub paused_until_ms: Option<i64>,
    pub pause_reason: Option<String>,
    pub halted: Option<String>,
    pub used_weight_1m: u32,
    pub order_count_10s: u32,
    pub order_count_1m: u32,
    pub clock_offset_ms: i64,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    api_key: Secret,
    api_secret: Secret,
    recv_window_ms: u64,
    /// Binance's clock minus ours, in ms.
    offset_ms: AtomicI64,
    gate: Mutex<Gate>,
    limits: Mutex<RateLimits>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

pub fn now_ms() -> i64 {
    sentinel_actors::types::Timestamp::now().0
}

/// The hex HMAC-SHA256 of `payload` under `secret`: Binance's `signature`.
pub fn sign(secret: &[u8], payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `key=value&...`, form-encoded.
pub fn encode(params: &[(&str, String)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        out.append_pair(key, value);
    }
    out.finish()
}

impl Client {
    pub fn new(
        base: &str,
        api_key: Secret,
        api_secret: Secret,
        recv_window: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(concat!("sentinel/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            api_key,
            api_secret,
            recv_window_ms: recv_window.as_millis() as u64,
            offset_ms: AtomicI64::new(0),
            gate: Mutex::new(Gate::default()),
            limits: Mutex::new(RateLimits {
                weight_per_minute: 2400,
                orders_per_10s: 300,
                orders_per_minute: 1200,
            }),
        }))
    }

    /// The client for a configured account.
    pub fn for_config(config: &crate::config::BinanceConfig) -> anyhow::Result<Arc<Self>> {
        Self::new(
            &config.endpoints.rest_url,
            config.api_key.clone(),
            config.api_secret.clone(),
            config.recv_window,
            config.request_timeout,
        )
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_limits(&self, limits: RateLimits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    fn limits(&self) -> RateLimits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Binance's clock, as far as we know it.
    pub fn server_now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    pub fn standing(&self) -> Standing {
        let gate = self.gate();
        let minute = self.server_now_ms() / 60_000;
        let window = self.server_now_ms() / 10_000;
        let paused = gate.paused.clone().filter(|(until, _)| *until > now_ms());
        Standing {
            paused_until_ms: paused.as_ref().map(|(until, _)| *until),
            pause_reason: paused.map(|(_, why)| why),
            halted: gate.halted.clone(),
            used_weight_1m: if gate.weight.1 == minute {
                gate.weight.0
            } else {
                0
            },
            order_count_10s: if gate.orders_10s.1 == window {
                gate.orders_10s.0
            } else {
                0
            },
            order_count_1m: if gate.orders_1m.1 == minute {
                gate.orders_1m.0
            } else {
                0
            },
            clock_offset_ms: self.offset_ms.load(Ordering::Relaxed),
        }
    }

    pub fn halted(&self) -> Option<String> {
        self.gate().halted.clone()
    }

    /// Stops every call: the venue refused the key or the signature, so retrying would only hammer it.
    fn halt(&self, why: String) {
        let mut gate = self.gate();
        if gate.halted.is_none() {
            error!(%why, "TRADING HALTED: Binance refused the API key or signature; nothing more is sent. Fix the key \
                          (or its IP whitelist and permissions) and restart");
            gate.halted = Some(why);
        }
    }

    fn pause(&self, status: StatusCode, retry_after: Option<Duration>) -> (i64, String) {
        let banned = status.as_u16() == 418;
        let wait = retry_after.unwrap_or(if banned { DEFAULT_BAN } else { DEFAULT_PAUSE });
        let until = now_ms() + wait.as_millis() as i64;
        let why = if banned {
            format!(
                "418: the IP is banned for {} s for ignoring rate limits",
                wait.as_secs()
            )
        } else {
            format!(
                "429: rate limit hit; Binance asked for {} s",
                wait.as_secs()
            )
        };
        let mut gate = self.gate();
        if gate.paused.as_ref().is_none_or(|(old, _)| *old < until) {
            warn!(%why, "every call to Binance is paused; new entries are refused meanwhile");
            gate.paused = Some((until, why.clone()));
        }
        (until, why)
    }

    /// Waits, refuses or lets a call through, by the venue's standing and the call's urgency.
    async fn admit(&self, urgency: Urgency, is_order: bool) -> Result<(), CallError> {
        let started = now_ms();
        loop {
            let wait = {
                let gate = self.gate();
                if let Some(why) = &gate.halted {
                    return Err(CallError::Halted(why.clone()));
                }
                let now = now_ms();
                match &gate.paused {
                    Some((until, why)) if *until > now => match urgency {
                        Urgency::Entry => {
                            return Err(CallError::Paused {
                                until_ms: *until,
                                why: why.clone(),
                            })
                        }
                        _ if *until - started > LONGEST_EXIT_WAIT.as_millis() as i64 => {
                            return Err(CallError::Paused {
                                until_ms: *until,
                                why: why.clone(),
                            })
                        }
                        _ => Some(Duration::from_millis((*until - now) as u64)),
                    },
                    _ => self.slow_down(&gate, urgency, is_order),
                }
            };
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Ok(()),
            }
        }
    }

    /// How long to hold a call back so the account stays under the venue's limits, if at all.
    fn slow_down(&self, gate: &Gate, urgency: Urgency, is_order: bool) -> Option<Duration> {
        let limits = self.limits();
        let server = self.server_now_ms();
        let (minute, window) = (server / 60_000, server / 10_000);
        let near = |used: u32, limit: u32| f64::from(used) >= f64::from(limit) * SLOW_DOWN_AT;
        let to_minute = Duration::from_millis((60_000 - server.rem_euclid(60_000)) as u64 + 50);
        let to_window = Duration::from_millis((10_000 - server.rem_euclid(10_000)) as u64 + 50);
        if urgency == Urgency::Background
            && gate.weight.1 == minute
            && near(gate.weight.0, limits.weight_per_minute)
        {
            return Some(to_minute);
        }
        if is_order && urgency != Urgency::Exit {
            if gate.orders_10s.1 == window && near(gate.orders_10s.0, limits.orders_per_10s) {
                return Some(to_window);
            }
            if gate.orders_1m.1 == minute && near(gate.orders_1m.0, limits.orders_per_minute) {
                return Some(to_minute);
            }
        }
        None
    }

    fn track(&self, headers: &HeaderMap) {
        let read = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok())
        };
        let server = self.server_now_ms();
        let mut gate = self.gate();
        if let Some(used) = read("x-mbx-used-weight-1m") {
            gate.weight = (used, server / 60_000);
        }
        if let Some(count) = read("x-mbx-order-count-10s") {
            gate.orders_10s = (count, server / 10_000);
        }
        if let Some(count) = read("x-mbx-order-count-1m") {
            gate.orders_1m = (count, server / 60_000);
        }
    }

    /// Sets our idea of Binance's clock from `GET /fapi/v1/time`, half a round trip late.
    pub async fn sync_clock(&self) -> Result<i64, CallError> {
        let before = now_ms();
        let body = self.public(Method::GET, "/fapi/v1/time", &[]).await?;
        let after = now_ms();
        let server = body["serverTime"]
            .as_i64()
            .ok_or_else(|| CallError::Unknown("GET /fapi/v1/time: no serverTime".into()))?;
        let offset = server - (before + after) / 2;
        let old = self.offset_ms.swap(offset, Ordering::Relaxed);
        if (old - offset).abs() > 500 {
            info!(offset_ms = offset, "clock synchronised with Binance");
        }
        Ok(offset)
    }

    /// An unsigned call (market data).
    pub async fn public(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Value, CallError> {
        self.admit(Urgency::Background, false).await?;
        let query = encode(params);
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        self.send(self.http.request(method, url), path).await
    }

    /// A call with the API key and no signature (the listen key).
    pub async fn keyed(&self, method: Method, path: &str) -> Result<Value, CallError> {
        self.admit(Urgency::Background, false).await?;
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-MBX-APIKEY", self.api_key.expose());
        self.send(request, path).await
    }

    /// A signed call: `timestamp`, `recvWindow` and `signature` are added; a `-1021` syncs the clock and tries again.
    pub async fn signed(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        urgency: Urgency,
    ) -> Result<Value, CallError> {
        let is_order = path == "/fapi/v1/order" && method == Method::POST;
        let mut attempt = 0;
        let mut waited = false;
        loop {
            self.admit(urgency, is_order).await?;
            let mut all = params.to_vec();
            all.push(("recvWindow", self.recv_window_ms.to_string()));
            all.push(("timestamp", self.server_now_ms().to_string()));
            let query = encode(&all);
            let signature = sign(self.api_secret.expose(), &query);
            let url = format!("{}{path}?{query}&signature={signature}", self.base);
            let request = self
                .http
                .request(method.clone(), url)
                .header("X-MBX-APIKEY", self.api_key.expose());
            match self.send(request, path).await {
                Err(CallError::Refused {
                    code: -1021, msg, ..
                }) if attempt < CLOCK_RETRIES => {
                    warn!(%msg, "Binance says our timestamp is outside the receive window; syncing the clock");
                    attempt += 1;
                    self.sync_clock().await?;
                }
                // A 429 or 418 executed nothing: an exit or a look-up waits the pause out (in `admit`) and goes again.
                Err(CallError::Paused { .. }) if urgency != Urgency::Entry && !waited => {
                    waited = true
                }
                Err(CallError::Refused { code, msg, .. })
                    if matches!(code, -1022 | -2014 | -2015) =>
                {
                    let why = format!("Binance code {code}: {msg}");
                    self.halt(why.clone());
                    return Err(CallError::Halted(why));
                }
                other => return other,
            }
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, path: &str) -> Result<Value, CallError> {
        let response = match request.send().await {
            Ok(response) => response,
            // A connection that never opened carried nothing; anything later may have reached Binance.
            Err(e) if e.is_connect() => return Err(CallError::NotSent(format!("{path}: {e}"))),
            Err(e) => return Err(CallError::Unknown(format!("{path}: {e}"))),
        };
        let status = response.status();
        self.track(response.headers());
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                return Err(CallError::Unknown(format!(
                    "{path}: reading the answer: {e}"
                )))
            }
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.as_u16() == 418 {
            let (until_ms, why) = self.pause(status, retry_after);
            return Err(CallError::Paused { until_ms, why });
        }
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let code = json
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(Value::as_i64);
        let msg = json
            .as_ref()
            .and_then(|v| v.get("msg"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // Binance: a 5xx, -1006 and -1007 mean the execution status is unknown, never a failure.
        if status.is_server_error() || matches!(code, Some(-1006 | -1007)) {
            return Err(CallError::Unknown(format!(
                "{path}: HTTP {status}{}",
                code.map(|c| format!(" code {c}: {msg}"))
                    .unwrap_or_default()
            )));
        }
        if !status.is_success() {
            return Err(CallError::Refused {
                status: status.as_u16(),
                code: code.unwrap_or(0),
                msg: if msg.is_empty() {
                    format!("HTTP {status}")
                } else {
                    msg
                },
            });
        }
        match json {
            // Some successes carry `{"code": 200, "msg": "success"}`; a negative code is a refusal.
            Some(value) if code.is_some_and(|c| c < 0) => Err(CallError::Refused {
                status: status.as_u16(),
                code: code.unwrap_or(0),
                msg: value["msg"].as_str().unwrap_or("").to_string(),
            }),
            Some(value) => Ok(value),
            None => Err(CallError::Unknown(format!(
                "{path}: the answer is not JSON"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in Binance's USD-M futures documentation ("SIGNED Endpoint Examples for POST /fapi/v1/order").
    #[test]
    fn signs_the_documented_example() {
        let secret = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9";
        let query = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943";
        assert_eq!(
            sign(secret.as_bytes(), query),
            "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
        );
    }

    fn client() -> Arc<Client> {
        Client::new(
            "http://127.0.0.1:9",
            Secret::new("key"),
            Secret::new("secret"),
            Duration::from_secs(5),
            Duration::from_secs(1),
        )
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn slows_polling_near_the_weight_limit_and_entries_near_the_order_limit_but_never_exits() {
        let client = client();
        client.track(&headers(&[
            ("x-mbx-used-weight-1m", "100"),
            ("x-mbx-order-count-10s", "10"),
        ]));
        let gate = client.gate();
        assert_eq!(client.slow_down(&gate, Urgency::Background, false), None);
        assert_eq!(client.slow_down(&gate, Urgency::Entry, true), None);
        drop(gate);
        // 80 % of 2400 weight and of 300 orders per 10 s.
        client.track(&headers(&[
            ("x-mbx-used-weight-1m", "1920"),
            ("x-mbx-order-count-10s", "240"),
        ]));
        let gate = client.gate();
        let wait = client
            .slow_down(&gate, Urgency::Background, false)
            .expect("polling waits");
        assert!(wait <= Duration::from_millis(60_050));
        let wait = client
            .slow_down(&gate, Urgency::Entry, true)
            .expect("an entry waits");
        assert!(wait <= Duration::from_millis(10_050));
        assert_eq!(
            client.slow_down(&gate, Urgency::Exit, true),
            None,
            "an exit never waits for a budget"
        );
        drop(gate);
        assert_eq!(client.standing().used_weight_1m, 1920);
    }

    #[actix_web::test]
    async fn a_pause_refuses_entries_and_a_halt_refuses_everything() {
        let client = client();
        let (until, _) = client.pause(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(30)));
        assert!(
            matches!(client.admit(Urgency::Entry, true).await, Err(CallError::Paused { until_ms, .. }) if until_ms == until)
        );
        // An exit would wait 30 s: within the bound, so it is not refused (not awaited here).
        let started = now_ms();
        client.gate().paused = Some((started + 120_000, "418".into()));
        assert!(
            matches!(
                client.admit(Urgency::Exit, true).await,
                Err(CallError::Paused { .. })
            ),
            "past the longest wait"
        );
        client.halt("code -2015".into());
        assert!(matches!(
            client.admit(Urgency::Exit, false).await,
            Err(CallError::Halted(_))
        ));
        assert!(client.standing().halted.is_some());
    }

    #[test]
    fn encodes_values_a_signature_covers_exactly() {
        let query = encode(&[("symbol", "BTCUSDT".into()), ("note", "a b&c".into())]);
        assert_eq!(query, "symbol=BTCUSDT&note=a+b%26c");
    }
}
