//! A fake Binance USDⓈ-M futures exchange for Sentinel's integration tests.
//!
//! It speaks the wire protocol as Binance documents it (developers.binance.com, "USDⓈ-M Futures"): signed REST
//! endpoints (HMAC-SHA256 over `totalParams`), the documented error payloads `{"code":N,"msg":"..."}`, the Algo
//! Service for conditional orders (since 2025-12-09 `/fapi/v1/order` refuses them with -4120), and the 2026 WebSocket
//! split (`/market/...` for mark prices, `/private/...` for the user data stream).
//!
//! It is an exchange with one account and no order book: MARKET orders fill at once and in full at the current mark
//! price; algo orders (`STOP_MARKET`, `TAKE_PROFIT_MARKET`) fire when [`FakeBinance::set_mark`] moves the mark across
//! their trigger. Faults ([`Fault`]) are queued by the test and consumed by the next matching requests.
//!
//! Where the documentation is silent or ambiguous the choice made is written next to the code, marked "Choice:".
//!
//! Threads: the REST side is an actix-web server with one worker (a thread of its own); the WebSocket side runs as
//! tasks on the caller's actix runtime. Both share one `Arc<Mutex<State>>`, never held across an await.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::TcpListener as StdTcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::Message;

// ------------------------------------------------------------------------------------------------------------------
// Public API
// ------------------------------------------------------------------------------------------------------------------

/// The fake exchange. Dropping it stops the REST server and closes every stream.
pub struct FakeBinance {
    /// `http://127.0.0.1:PORT`
    pub rest_url: String,
    /// `ws://127.0.0.1:PORT2` (routes `/market/stream?streams=...`, `/market/ws/...`, `/private/ws/<listenKey>`)
    pub ws_url: String,
    pub api_key: String,
    pub api_secret: String,
    shared: Shared,
    server: actix_web::dev::ServerHandle,
    ws_task: tokio::task::JoinHandle<()>,
}

/// A regular (matching-engine) order the exchange accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: i64,
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub quantity: Decimal,
    pub executed_qty: Decimal,
    pub avg_price: Decimal,
    pub reduce_only: bool,
    pub status: String,
}

/// An algo (conditional) order the exchange accepted, with its current status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgoRecord {
    pub algo_id: i64,
    pub client_algo_id: String,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub trigger_price: Decimal,
    pub close_position: bool,
    pub quantity: Option<Decimal>,
    pub reduce_only: bool,
    /// NEW, CANCELED, TRIGGERED, FINISHED, EXPIRED, REJECTED
    pub status: String,
    pub actual_order_id: Option<i64>,
}

/// One REST request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// Query string then body, percent-decoded, in the order sent (the signature included).
    pub params: Vec<(String, String)>,
    /// The HTTP status sent (0 while the request is still being processed).
    pub answered: u16,
}

/// A fault for the next matching requests.
///
/// `path` is matched against the request path exactly (`"/fapi/v1/order"` matches every method on that path); it
/// may also be written `"POST /fapi/v1/order"` to match one method only.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The next N matching requests are held `delay` before being processed (for "a slow order on one symbol").
    Delay {
        path: &'static str,
        symbol: Option<String>,
        delay: Duration,
        times: usize,
    },
    /// The next matching request is EXECUTED, then the answer is held for `hold` (longer than the client timeout),
    /// so the client sees a timeout although the order exists.
    TimeoutAfterExecute {
        path: &'static str,
        hold: Duration,
    },
    /// The next N matching requests get HTTP `status` (e.g. 502, 503) with an HTML or empty body; NOT executed.
    ServerError {
        path: &'static str,
        status: u16,
        times: usize,
    },
    /// The next matching request is EXECUTED, then answered HTTP 503 with -1007 (or -1006 if `code == -1006`).
    UnknownAfterExecute {
        path: &'static str,
        code: i64,
    },
    /// The next matching request is EXECUTED, then answered HTTP 400 -4116 "ClientOrderId is duplicated." (as if
    /// this were the resend of an order whose first answer was lost).
    DuplicateAfterExecute {
        path: &'static str,
    },
    /// The next N requests (any path) get `status` (429 or 418) with `Retry-After: secs` and -1003; NOT executed.
    RateLimit {
        status: u16,
        retry_after_secs: u64,
        times: usize,
    },
    /// The next N signed requests are refused -2015 (HTTP 401).
    RejectKey {
        times: usize,
    },
    /// Refuse WebSocket upgrades (HTTP 503) and POST /fapi/v1/listenKey (HTTP 503) until `StreamsAccepted`.
    StreamsRefused,
    StreamsAccepted,
    /// Close every open WebSocket connection now (the next connects are accepted).
    DropStreams,
}

impl FakeBinance {
    /// A fresh account: USDT wallet 10000, one-way mode, no positions, leverage 20 and CROSSED on every symbol.
    pub async fn start() -> FakeBinance {
        let api_key = random_hex("api-key");
        let api_secret = random_hex("api-secret");
        let shared: Shared = Arc::new(Mutex::new(State::new(api_key.clone(), api_secret.clone())));

        let listener = StdTcpListener::bind("127.0.0.1:0").expect("fake binance: bind REST port");
        let rest_port = listener
            .local_addr()
            .expect("fake binance: REST address")
            .port();
        let data = web::Data::new(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(rest_handler))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .expect("fake binance: listen")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);

        let ws_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake binance: bind WS port");
        let ws_port = ws_listener
            .local_addr()
            .expect("fake binance: WS address")
            .port();
        let ws_task = actix_web::rt::spawn(ws_accept_loop(ws_listener, shared.clone()));

        FakeBinance {
            rest_url: format!("http://127.0.0.1:{rest_port}"),
            ws_url: format!("ws://127.0.0.1:{ws_port}"),
            api_key,
            api_secret,
            shared,
            server: handle,
            ws_task,
        }
    }

    /// A new mark price: pushed on the market streams, and fires the NEW algo orders it crosses.
    /// A daemon configuration trading on this server: a TradingView source, BTCUSDT and ETHUSDT, short timeouts;
    /// `extra` goes into `[exchange]`, and tables such as `[[rules]]` may be appended.
    pub fn daemon_config(&self, extra: &str) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
workers = 1

[api]
listen = "127.0.0.1:0"
read_token_env = "TEST_READ_TOKEN"

[[sources]]
name = "tradingview"
kind = "tradingview"
passphrase_env = "TEST_TV_PASSPHRASE"

[exchange]
kind = "binance-futures"
rest_url = "{rest}"
ws_url = "{ws}"
api_key_env = "TEST_BINANCE_KEY"
api_secret_env = "TEST_BINANCE_SECRET"
request_timeout_ms = 800
poll_interval_ms = 100
{extra}

[[symbols]]
symbol = "BTCUSDT"
default_size = "0.01"
default_leverage = 5
max_leverage = 20
max_notional = "1000000"
quantity_step = "0.0001"

[[symbols]]
symbol = "ETHUSDT"
default_size = "0.1"
default_leverage = 3
max_leverage = 10
max_notional = "1000000"
quantity_step = "0.0001"
"#,
            rest = self.rest_url,
            ws = self.ws_url,
        )
    }

    /// The environment `daemon_config` names for this server's API key and secret.
    pub fn daemon_env(&self) -> Vec<(String, String)> {
        vec![
            ("TEST_BINANCE_KEY".into(), self.api_key.clone()),
            ("TEST_BINANCE_SECRET".into(), self.api_secret.clone()),
        ]
    }

    pub fn set_mark(&self, symbol: &str, price: Decimal) {
        let mut st = self.state();
        let symbol = symbol.to_ascii_uppercase();
        let now = st.now();
        st.marks.insert(symbol.clone(), price);
        st.push_mark(&symbol, now);
        st.check_algos(&symbol, now);
    }

    /// Queue a fault (StreamsRefused, StreamsAccepted and DropStreams act at once).
    pub fn inject(&self, fault: Fault) {
        let mut st = self.state();
        match fault {
            Fault::StreamsRefused => st.streams_refused = true,
            Fault::StreamsAccepted => st.streams_refused = false,
            Fault::DropStreams => st.drop_streams(),
            Fault::Delay { times: 0, .. }
            | Fault::ServerError { times: 0, .. }
            | Fault::RateLimit { times: 0, .. }
            | Fault::RejectKey { times: 0 } => {}
            other => st.faults.push(other),
        }
    }

    /// Every regular order the exchange accepted (those created by triggered algo orders and by
    /// [`FakeBinance::trade_directly`] included), oldest first.
    pub fn orders(&self) -> Vec<OrderRecord> {
        self.state()
            .orders
            .iter()
            .map(|o| OrderRecord {
                order_id: o.id,
                client_order_id: o.client_id.clone(),
                symbol: o.symbol.clone(),
                side: o.side.clone(),
                order_type: o.order_type.clone(),
                quantity: o.qty,
                executed_qty: o.executed,
                avg_price: o.avg_price,
                reduce_only: o.reduce_only,
                status: o.status.clone(),
            })
            .collect()
    }

    /// Every algo order accepted, oldest first, with its current status.
    pub fn algo_orders(&self) -> Vec<AlgoRecord> {
        self.state()
            .algos
            .iter()
            .map(|a| AlgoRecord {
                algo_id: a.id,
                client_algo_id: a.client_id.clone(),
                symbol: a.symbol.clone(),
                side: a.side.clone(),
                order_type: a.order_type.clone(),
                trigger_price: a.trigger,
                close_position: a.close_position,
                quantity: a.quantity,
                reduce_only: a.reduce_only,
                status: a.status.clone(),
                actual_order_id: a.actual_order_id,
            })
            .collect()
    }

    /// Signed position amount (one-way mode), 0 if none.
    pub fn position(&self, symbol: &str) -> Decimal {
        self.state().pos_amt(&symbol.to_ascii_uppercase())
    }

    /// USDT wallet balance.
    pub fn wallet(&self) -> Decimal {
        self.state().wallet
    }

    /// Current leverage setting (default 20).
    pub fn leverage(&self, symbol: &str) -> u32 {
        self.state().leverage_of(&symbol.to_ascii_uppercase())
    }

    /// "CROSSED" (default) or "ISOLATED".
    pub fn margin_type(&self, symbol: &str) -> String {
        self.state().margin_type_of(&symbol.to_ascii_uppercase())
    }

    /// Hedge mode on/off.
    pub fn set_dual_side_position(&self, on: bool) {
        self.state().dual_side = on;
    }

    /// Every REST request received, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().requests.clone()
    }

    /// Server clock = local clock + offset.
    pub fn set_server_time_offset_ms(&self, offset: i64) {
        self.state().offset_ms = offset;
    }

    /// As if the user traded on the website while the daemon was down: a filled MARKET order (client id `web_<n>`),
    /// changing the position, with no effect on anything else (no fee, no realized PnL on the wallet, the mark is
    /// unchanged and no algo order fires). Its events are still pushed to any open user data stream.
    pub fn trade_directly(&self, symbol: &str, signed_qty: Decimal, price: Decimal) {
        if signed_qty.is_zero() {
            return;
        }
        let mut st = self.state();
        let now = st.now();
        st.web_seq += 1;
        let client_id = format!("web_{}", st.web_seq);
        let side = if signed_qty > Decimal::ZERO {
            "BUY"
        } else {
            "SELL"
        };
        let exec = MarketExec {
            symbol: symbol.to_ascii_uppercase(),
            side,
            qty: signed_qty.abs(),
            price,
            reduce_only: false,
            close_position: false,
            client_id,
            orig_type: "MARKET".into(),
            stop_price: Decimal::ZERO,
            working_type: "CONTRACT_PRICE".into(),
            position_side: "BOTH".into(),
            charge: false,
            order_id: None,
        };
        st.execute_market(exec, now);
    }

    /// As if placed on the website: an algo order NEW, `closePosition=true`, `workingType=MARK_PRICE`. No check is
    /// made (not even "would immediately trigger"); it fires on the next [`FakeBinance::set_mark`] that crosses it.
    pub fn place_algo_directly(
        &self,
        symbol: &str,
        side: &str,
        order_type: &str,
        trigger: Decimal,
        client_algo_id: &str,
    ) {
        let mut st = self.state();
        let now = st.now();
        let algo = Algo {
            id: st.alloc_algo_id(),
            client_id: client_algo_id.to_string(),
            symbol: symbol.to_ascii_uppercase(),
            side: side.to_ascii_uppercase(),
            position_side: "BOTH".into(),
            order_type: order_type.to_ascii_uppercase(),
            trigger,
            working_type: "MARK_PRICE".into(),
            close_position: true,
            quantity: None,
            reduce_only: false,
            price_protect: false,
            status: "NEW".into(),
            actual_order_id: None,
            actual_price: Decimal::ZERO,
            executed: Decimal::ZERO,
            create_time: now,
            update_time: now,
            trigger_time: 0,
            reason: String::new(),
        };
        st.algos.push(algo);
        let idx = st.algos.len() - 1;
        st.push_algo_update(idx, now);
    }

    /// "CROSSED" or "ISOLATED" on a symbol, as if set on the website (no check, no event).
    pub fn set_margin_type(&self, symbol: &str, margin_type: &str) {
        self.state().margin_type.insert(
            symbol.to_ascii_uppercase(),
            margin_type.to_ascii_uppercase(),
        );
    }

    /// A new funding rate: carried in `r` by the next mark price frames (one is pushed now, as the next `@1s` tick)
    /// and in premiumIndex's `lastFundingRate`.
    pub fn set_funding_rate(&self, symbol: &str, rate: Decimal) {
        let mut st = self.state();
        let symbol = symbol.to_ascii_uppercase();
        let now = st.now();
        st.funding_rates.insert(symbol.clone(), rate);
        st.push_mark(&symbol, now);
    }

    /// Sends `event` as it is to every open user data stream connection (that subscribed to its `e`).
    pub fn push_user_event(&self, event: Value) {
        self.state().push_user(event);
    }

    /// Pushes the documented MARGIN_CALL frame for the symbol's position as the fake holds it, at `mark_price`, with
    /// `maintenance_margin` as `mm`: `iw` is the isolated margin added, `up` the PnL at that mark, and `cw` (the
    /// wallet) is sent only for a crossed position, as Binance does.
    pub fn margin_call(&self, symbol: &str, mark_price: Decimal, maintenance_margin: Decimal) {
        let mut st = self.state();
        let symbol = symbol.to_ascii_uppercase();
        let now = st.now();
        let pos = st.positions.get(&symbol).cloned().unwrap_or_default();
        let isolated = st.margin_type_of(&symbol) == "ISOLATED";
        let position_side = if !st.dual_side {
            "BOTH"
        } else if pos.amt > Decimal::ZERO {
            "LONG"
        } else {
            "SHORT"
        };
        let mut event = json!({
            "e": "MARGIN_CALL",
            "E": now,
            "p": [{
                "s": symbol,
                "ps": position_side,
                "pa": fmt_min(pos.amt, 0),
                "mt": if isolated { "ISOLATED" } else { "CROSSED" },
                "iw": fmt_fixed(st.isolated_of(&symbol), 8),
                "mp": fmt_fixed(mark_price, 8),
                "up": fmt_fixed((mark_price - pos.entry) * pos.amt, 8),
                "mm": fmt_fixed(maintenance_margin, 8),
            }],
        });
        if !isolated {
            event["cw"] = json!(fmt_fixed(st.wallet, 8));
        }
        st.push_user(event);
    }

    /// Isolated margin added to the symbol's position with `POST /fapi/v1/positionMargin` (0 if none).
    pub fn isolated_margin(&self, symbol: &str) -> Decimal {
        self.state().isolated_of(&symbol.to_ascii_uppercase())
    }

    /// Open WS connections (market + user) right now.
    pub fn stream_connections(&self) -> usize {
        self.state().conns.len()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }
}

impl Drop for FakeBinance {
    fn drop(&mut self) {
        self.ws_task.abort();
        self.state().drop_streams();
        // The stop command is sent when `stop` is called; the returned future only waits for its completion.
        drop(self.server.stop(false));
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Static market definition
// ------------------------------------------------------------------------------------------------------------------

struct SymbolSpec {
    symbol: &'static str,
    base: &'static str,
    status: &'static str,
    price_precision: u32,
    quantity_precision: u32,
    min_price: &'static str,
    max_price: &'static str,
    tick_size: &'static str,
    lot: [&'static str; 3],
    market_lot: [&'static str; 3],
    min_notional: &'static str,
    initial_mark: &'static str,
}

const SPECS: [SymbolSpec; 3] = [
    SymbolSpec {
        symbol: "BTCUSDT",
        base: "BTC",
        status: "TRADING",
        price_precision: 2,
        quantity_precision: 3,
        min_price: "556.80",
        max_price: "4529764",
        tick_size: "0.10",
        lot: ["0.001", "1000", "0.001"],
        market_lot: ["0.001", "120", "0.001"],
        min_notional: "100",
        initial_mark: "50000",
    },
    SymbolSpec {
        symbol: "ETHUSDT",
        base: "ETH",
        status: "TRADING",
        price_precision: 2,
        quantity_precision: 3,
        min_price: "39.86",
        max_price: "306177",
        tick_size: "0.01",
        lot: ["0.001", "10000", "0.001"],
        market_lot: ["0.001", "2000", "0.001"],
        min_notional: "20",
        initial_mark: "3000",
    },
    SymbolSpec {
        symbol: "OLDUSDT",
        base: "OLD",
        status: "SETTLING",
        price_precision: 2,
        quantity_precision: 3,
        min_price: "39.86",
        max_price: "306177",
        tick_size: "0.01",
        lot: ["0.001", "10000", "0.001"],
        market_lot: ["0.001", "2000", "0.001"],
        min_notional: "20",
        initial_mark: "1",
    },
];

const TAKER_FEE: &str = "0.0004";
const DEFAULT_FUNDING_RATE: &str = "0.0001";
/// Maintenance margin rate used for `maintMargin` and the (rough) liquidation price.
const MAINT_RATE: &str = "0.004";
const MAX_ALGO_ORDERS_PER_SYMBOL: usize = 10;
const CLIENT_ID_RULE: &str = r"^[\.A-Z\:/a-z0-9_-]{1,36}$";

fn spec(symbol: &str) -> Option<&'static SymbolSpec> {
    SPECS.iter().find(|s| s.symbol == symbol)
}

fn dec(s: &str) -> Decimal {
    s.parse().expect("fake binance: a decimal constant")
}

// ------------------------------------------------------------------------------------------------------------------
// State
// ------------------------------------------------------------------------------------------------------------------

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default, Clone)]
struct Position {
    amt: Decimal,
    entry: Decimal,
    /// Accumulated realized PnL before fees (`cr` in ACCOUNT_UPDATE).
    realized: Decimal,
    update_time: i64,
}

#[derive(Clone)]
struct Order {
    id: i64,
    client_id: String,
    symbol: String,
    side: String,
    position_side: String,
    order_type: String,
    orig_type: String,
    qty: Decimal,
    executed: Decimal,
    avg_price: Decimal,
    reduce_only: bool,
    close_position: bool,
    stop_price: Decimal,
    working_type: String,
    status: String,
    time: i64,
    update_time: i64,
}

#[derive(Clone)]
struct Trade {
    id: i64,
    order_id: i64,
    symbol: String,
    side: String,
    position_side: String,
    price: Decimal,
    qty: Decimal,
    realized: Decimal,
    commission: Decimal,
    time: i64,
}

#[derive(Clone)]
struct Algo {
    id: i64,
    client_id: String,
    symbol: String,
    side: String,
    position_side: String,
    order_type: String,
    trigger: Decimal,
    working_type: String,
    close_position: bool,
    quantity: Option<Decimal>,
    reduce_only: bool,
    price_protect: bool,
    status: String,
    actual_order_id: Option<i64>,
    actual_price: Decimal,
    executed: Decimal,
    create_time: i64,
    update_time: i64,
    trigger_time: i64,
    /// `rm` in ALGO_UPDATE: why it failed.
    reason: String,
}

enum WsCmd {
    Text(String),
    Close,
}

enum ConnKind {
    /// Stream names as subscribed (e.g. `btcusdt@markPrice@1s`); combined streams wrap frames in {"stream","data"}.
    Market {
        streams: Vec<String>,
        combined: bool,
    },
    /// `events`: the `events=` filter of the private route, if any.
    User {
        key: String,
        combined: bool,
        events: Option<Vec<String>>,
    },
}

struct Conn {
    kind: ConnKind,
    tx: mpsc::UnboundedSender<WsCmd>,
}

struct State {
    api_key: String,
    api_secret: String,
    offset_ms: i64,
    wallet: Decimal,
    dual_side: bool,
    marks: HashMap<String, Decimal>,
    positions: BTreeMap<String, Position>,
    leverage: HashMap<String, u32>,
    margin_type: HashMap<String, String>,
    /// Funding rate per symbol, as `r` and `lastFundingRate` carry it (0.0001 unless a test set another).
    funding_rates: HashMap<String, Decimal>,
    /// Isolated margin added per symbol with `POST /fapi/v1/positionMargin` (`iw`, `isolatedWallet`).
    isolated: HashMap<String, Decimal>,
    orders: Vec<Order>,
    trades: Vec<Trade>,
    algos: Vec<Algo>,
    next_order_id: i64,
    next_trade_id: i64,
    next_algo_id: i64,
    web_seq: u64,
    gen_seq: u64,
    faults: Vec<Fault>,
    requests: Vec<RequestRecord>,
    weight_minute: i64,
    weight_used: u32,
    order_times: VecDeque<i64>,
    listen_key: Option<String>,
    streams_refused: bool,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
}

impl State {
    fn new(api_key: String, api_secret: String) -> State {
        State {
            api_key,
            api_secret,
            offset_ms: 0,
            wallet: dec("10000"),
            dual_side: false,
            marks: SPECS
                .iter()
                .map(|s| (s.symbol.to_string(), dec(s.initial_mark)))
                .collect(),
            positions: BTreeMap::new(),
            leverage: HashMap::new(),
            margin_type: HashMap::new(),
            funding_rates: HashMap::new(),
            isolated: HashMap::new(),
            orders: Vec::new(),
            trades: Vec::new(),
            algos: Vec::new(),
            next_order_id: 8_389_765_500,
            next_trade_id: 512_000_000,
            next_algo_id: 4_000_000_100,
            web_seq: 0,
            gen_seq: 0,
            faults: Vec::new(),
            requests: Vec::new(),
            weight_minute: 0,
            weight_used: 0,
            order_times: VecDeque::new(),
            listen_key: None,
            streams_refused: false,
            conns: BTreeMap::new(),
            next_conn: 1,
        }
    }

    /// The server clock, in ms.
    fn now(&self) -> i64 {
        local_ms() + self.offset_ms
    }

    fn mark(&self, symbol: &str) -> Decimal {
        self.marks.get(symbol).copied().unwrap_or_default()
    }

    fn pos_amt(&self, symbol: &str) -> Decimal {
        self.positions
            .get(symbol)
            .map(|p| p.amt)
            .unwrap_or_default()
    }

    fn funding_rate(&self, symbol: &str) -> String {
        fmt_fixed(
            self.funding_rates
                .get(symbol)
                .copied()
                .unwrap_or_else(|| dec(DEFAULT_FUNDING_RATE)),
            8,
        )
    }

    fn isolated_of(&self, symbol: &str) -> Decimal {
        self.isolated.get(symbol).copied().unwrap_or_default()
    }

    fn leverage_of(&self, symbol: &str) -> u32 {
        self.leverage.get(symbol).copied().unwrap_or(20)
    }

    fn margin_type_of(&self, symbol: &str) -> String {
        self.margin_type
            .get(symbol)
            .cloned()
            .unwrap_or_else(|| "CROSSED".into())
    }

    fn alloc_order_id(&mut self) -> i64 {
        self.next_order_id += 1;
        self.next_order_id
    }

    fn alloc_algo_id(&mut self) -> i64 {
        self.next_algo_id += 1;
        self.next_algo_id
    }

    /// A client id Binance would generate when none is sent (22 characters of the allowed alphabet).
    fn gen_client_id(&mut self) -> String {
        self.gen_seq += 1;
        format!("fakeGen{:015}", self.gen_seq)
    }

    // ---- faults ---------------------------------------------------------------------------------------------------

    /// Takes one use of the first pending fault matching `pred`.
    fn take_fault(&mut self, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let i = self.faults.iter().position(pred)?;
        let taken = self.faults[i].clone();
        let spent = match &mut self.faults[i] {
            Fault::Delay { times, .. }
            | Fault::ServerError { times, .. }
            | Fault::RateLimit { times, .. }
            | Fault::RejectKey { times } => {
                *times -= 1;
                *times == 0
            }
            _ => true,
        };
        if spent {
            self.faults.remove(i);
        }
        Some(taken)
    }

    fn take_delay(&mut self, method: &str, path: &str, symbol: Option<&str>) -> Option<Duration> {
        let fault = self.take_fault(|f| match f {
            Fault::Delay {
                path: p, symbol: s, ..
            } => {
                path_matches(p, method, path)
                    && match (s, symbol) {
                        (None, _) => true,
                        (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                        (Some(_), None) => false,
                    }
            }
            _ => false,
        });
        match fault {
            Some(Fault::Delay { delay, .. }) => Some(delay),
            _ => None,
        }
    }

    // ---- rate limit counters --------------------------------------------------------------------------------------

    fn add_weight(&mut self, weight: u32, now: i64) -> u32 {
        let minute = now.div_euclid(60_000);
        if minute != self.weight_minute {
            self.weight_minute = minute;
            self.weight_used = 0;
        }
        self.weight_used += weight;
        self.weight_used
    }

    fn count_order(&mut self, now: i64) {
        self.order_times.push_back(now);
    }

    fn order_counts(&mut self, now: i64) -> (usize, usize) {
        while self.order_times.front().is_some_and(|t| now - t >= 60_000) {
            self.order_times.pop_front();
        }
        let ten = self
            .order_times
            .iter()
            .filter(|t| now - **t < 10_000)
            .count();
        (ten, self.order_times.len())
    }

    // ---- streams --------------------------------------------------------------------------------------------------

    fn drop_streams(&mut self) {
        for (_, conn) in std::mem::take(&mut self.conns) {
            let _ = conn.tx.send(WsCmd::Close);
        }
    }

    fn close_user_streams(&mut self) {
        let ids: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.kind, ConnKind::User { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(conn) = self.conns.remove(&id) {
                let _ = conn.tx.send(WsCmd::Close);
            }
        }
    }

    fn mark_price_event(&self, symbol: &str, now: i64) -> Value {
        let mark = fmt_fixed(self.mark(symbol), 8);
        // Funding every 8 hours: the next 00:00/08:00/16:00 UTC.
        let period = 8 * 3_600_000;
        let next_funding = (now.div_euclid(period) + 1) * period;
        json!({
            "e": "markPriceUpdate",
            "E": now,
            "s": symbol,
            "p": mark,
            "ap": mark,
            "i": mark,
            "P": mark,
            "r": self.funding_rate(symbol),
            "T": next_funding,
        })
    }

    /// Sends the symbol's mark price to every market connection subscribed to it.
    fn push_mark(&mut self, symbol: &str, now: i64) {
        let event = self.mark_price_event(symbol, now);
        let mut dead = Vec::new();
        for (id, conn) in &self.conns {
            if let ConnKind::Market { streams, combined } = &conn.kind {
                for stream in streams
                    .iter()
                    .filter(|s| mark_stream_symbol(s).as_deref() == Some(symbol))
                {
                    let frame = if *combined {
                        json!({"stream": stream, "data": event}).to_string()
                    } else {
                        event.to_string()
                    };
                    if conn.tx.send(WsCmd::Text(frame)).is_err() {
                        dead.push(*id);
                    }
                }
            }
        }
        for id in dead {
            self.conns.remove(&id);
        }
    }

    /// Sends a user data event to every user data connection that wants it.
    fn push_user(&mut self, event: Value) {
        let name = event["e"].as_str().unwrap_or_default().to_string();
        let mut dead = Vec::new();
        for (id, conn) in &self.conns {
            if let ConnKind::User {
                key,
                combined,
                events,
            } = &conn.kind
            {
                if events
                    .as_ref()
                    .is_some_and(|e| !e.iter().any(|n| n == &name))
                {
                    continue;
                }
                // Choice: on the combined private route frames are wrapped like market ones, the listenKey as the
                // stream name (the legacy combined user stream did so; the 2026 notice shows no frame).
                let frame = if *combined {
                    json!({"stream": key, "data": event}).to_string()
                } else {
                    event.to_string()
                };
                if conn.tx.send(WsCmd::Text(frame)).is_err() {
                    dead.push(*id);
                }
            }
        }
        for id in dead {
            self.conns.remove(&id);
        }
    }

    fn push_account_update(&mut self, symbol: &str, position_side: &str, now: i64) {
        self.push_account_update_because(symbol, position_side, "ORDER", now);
    }

    /// ACCOUNT_UPDATE for one position, `reason` as `a.m` (`ORDER`, `MARGIN_TRANSFER`, ...).
    fn push_account_update_because(
        &mut self,
        symbol: &str,
        position_side: &str,
        reason: &str,
        now: i64,
    ) {
        let pos = self.positions.get(symbol).cloned().unwrap_or_default();
        let mark = self.mark(symbol);
        let upnl = (mark - pos.entry) * pos.amt;
        let mt = if self.margin_type_of(symbol) == "ISOLATED" {
            "isolated"
        } else {
            "cross"
        };
        let pp = spec(symbol).map_or(2, |s| s.price_precision);
        let event = json!({
            "e": "ACCOUNT_UPDATE",
            "E": now,
            "T": now,
            "a": {
                "m": reason,
                "B": [{
                    "a": "USDT",
                    "wb": fmt_fixed(self.wallet + self.isolated.values().copied().sum::<Decimal>(), 8),
                    "cw": fmt_fixed(self.wallet, 8),
                    "bc": "0",
                }],
                "P": [{
                    "s": symbol,
                    "pa": fmt_min(pos.amt, 0),
                    "ep": fmt_min(pos.entry, pp),
                    "bep": fmt_min(break_even(pos.amt, pos.entry), pp),
                    "cr": fmt_fixed(pos.realized, 8),
                    "up": fmt_fixed(upnl, 8),
                    "mt": mt,
                    "iw": fmt_fixed(self.isolated_of(symbol), 8),
                    "ps": position_side,
                }],
            },
        });
        self.push_user(event);
    }

    fn push_order_update(
        &mut self,
        order_idx: usize,
        exec_type: &str,
        fill: Option<&Trade>,
        now: i64,
    ) {
        let o = &self.orders[order_idx];
        let (l, last_price, commission, trade_id, realized) = match fill {
            Some(t) => (t.qty, t.price, t.commission, t.id, t.realized),
            None => (
                Decimal::ZERO,
                Decimal::ZERO,
                Decimal::ZERO,
                0,
                Decimal::ZERO,
            ),
        };
        let event = json!({
            "e": "ORDER_TRADE_UPDATE",
            "E": now,
            "T": now,
            "o": {
                "s": o.symbol,
                "c": o.client_id,
                "S": o.side,
                "o": o.order_type,
                "f": "GTC",
                "q": fmt_min(o.qty, 0),
                "p": "0",
                "ap": fmt_min(o.avg_price, 0),
                "sp": fmt_min(o.stop_price, 0),
                "x": exec_type,
                "X": if exec_type == "NEW" { "NEW" } else { o.status.as_str() },
                "i": o.id,
                "l": fmt_min(l, 0),
                "z": fmt_min(o.executed, 0),
                "L": fmt_min(last_price, 0),
                "N": "USDT",
                "n": fmt_fixed(commission, 8),
                "T": now,
                "t": trade_id,
                "b": "0",
                "a": "0",
                "m": false,
                "R": o.reduce_only,
                "wt": o.working_type,
                "ot": o.orig_type,
                "ps": o.position_side,
                "cp": o.close_position,
                "rp": fmt_fixed(realized, 8),
                "pP": false,
                "si": 0,
                "ss": 0,
                "V": "EXPIRE_MAKER",
                "pm": "NONE",
                "gtd": 0,
                "er": if exec_type == "EXPIRED" { "9" } else { "0" },
            },
        });
        self.push_user(event);
    }

    fn push_algo_update(&mut self, idx: usize, now: i64) {
        let a = &self.algos[idx];
        let pp = spec(&a.symbol).map_or(2, |s| s.price_precision);
        let triggered = a.actual_order_id.is_some();
        let event = json!({
            "e": "ALGO_UPDATE",
            "T": now,
            "E": now,
            "o": {
                "caid": a.client_id,
                "aid": a.id,
                "at": "CONDITIONAL",
                "o": a.order_type,
                "s": a.symbol,
                "S": a.side,
                "ps": a.position_side,
                "f": "GTC",
                "q": fmt_min(a.quantity.unwrap_or_default(), 0),
                "X": a.status,
                "ai": a.actual_order_id.map(|i| i.to_string()).unwrap_or_default(),
                "ap": if triggered { fmt_min(a.actual_price, pp) } else { "0.00000".into() },
                "aq": if triggered { fmt_min(a.executed, 0) } else { "0.00000".into() },
                "act": if triggered { "MARKET" } else { "0" },
                "tp": fmt_min(a.trigger, 0),
                "p": "0",
                "V": "EXPIRE_MAKER",
                "wt": a.working_type,
                "pm": "NONE",
                "cp": a.close_position,
                "pP": a.price_protect,
                "R": a.reduce_only,
                "tt": a.trigger_time,
                "gtd": 0,
                "rm": a.reason,
            },
        });
        self.push_user(event);
    }

    // ---- execution ------------------------------------------------------------------------------------------------

    /// Unrealized PnL over every position, at the mark.
    fn total_upnl(&self) -> Decimal {
        self.positions
            .iter()
            .map(|(s, p)| (self.mark(s) - p.entry) * p.amt)
            .sum()
    }

    /// Initial margin of every position, at the mark.
    fn total_initial_margin(&self) -> Decimal {
        self.positions
            .iter()
            .map(|(s, p)| p.amt.abs() * self.mark(s) / Decimal::from(self.leverage_of(s)))
            .sum()
    }

    fn available_balance(&self) -> Decimal {
        (self.wallet + self.total_upnl() - self.total_initial_margin()).max(Decimal::ZERO)
    }

    /// Fills a MARKET order in full at `price` (reduce-only orders: at most the position) and records everything.
    /// Returns the order's index in `orders`.
    fn execute_market(&mut self, x: MarketExec, now: i64) -> usize {
        let sign = if x.side == "BUY" {
            Decimal::ONE
        } else {
            -Decimal::ONE
        };
        let before = self.pos_amt(&x.symbol);
        let exec_qty = if x.reduce_only {
            if before.is_sign_negative() != sign.is_sign_negative() && !before.is_zero() {
                x.qty.min(before.abs())
            } else {
                Decimal::ZERO
            }
        } else {
            x.qty
        };
        let id = x.order_id.unwrap_or_else(|| self.alloc_order_id());
        self.orders.push(Order {
            id,
            client_id: x.client_id,
            symbol: x.symbol.clone(),
            side: x.side.to_string(),
            position_side: x.position_side.clone(),
            order_type: "MARKET".into(),
            orig_type: x.orig_type,
            qty: x.qty,
            executed: Decimal::ZERO,
            avg_price: Decimal::ZERO,
            reduce_only: x.reduce_only,
            close_position: x.close_position,
            stop_price: x.stop_price,
            working_type: x.working_type,
            status: "NEW".into(),
            time: now,
            update_time: now,
        });
        let idx = self.orders.len() - 1;
        self.push_order_update(idx, "NEW", None, now);
        if exec_qty.is_zero() {
            self.orders[idx].status = "EXPIRED".into();
            self.push_order_update(idx, "EXPIRED", None, now);
            return idx;
        }

        // The position.
        let pos = self.positions.entry(x.symbol.clone()).or_default();
        let signed = exec_qty * sign;
        let mut realized = Decimal::ZERO;
        if pos.amt.is_zero() || pos.amt.is_sign_negative() == signed.is_sign_negative() {
            let new_abs = (pos.amt + signed).abs();
            pos.entry = (pos.entry * pos.amt.abs() + x.price * exec_qty) / new_abs;
            pos.amt += signed;
        } else {
            let closing = exec_qty.min(pos.amt.abs());
            let direction = if pos.amt.is_sign_negative() {
                -Decimal::ONE
            } else {
                Decimal::ONE
            };
            realized = (x.price - pos.entry) * closing * direction;
            pos.amt += signed;
            if pos.amt.is_zero() {
                pos.entry = Decimal::ZERO;
            } else if exec_qty > closing {
                pos.entry = x.price;
            }
        }
        pos.update_time = now;
        let fee = if x.charge {
            (x.price * exec_qty * dec(TAKER_FEE)).round_dp(8)
        } else {
            Decimal::ZERO
        };
        if x.charge {
            pos.realized += realized;
        } else {
            realized = Decimal::ZERO;
        }
        if pos.amt.is_zero() {
            let cr = pos.realized;
            // Keep the accumulated realized PnL but drop the empty position from positionRisk.
            self.positions.remove(&x.symbol);
            if !cr.is_zero() {
                self.positions.insert(
                    x.symbol.clone(),
                    Position {
                        realized: cr,
                        update_time: now,
                        ..Position::default()
                    },
                );
            }
        }
        self.wallet += realized - fee;
        if self.pos_amt(&x.symbol).is_zero() {
            // Choice: a closed position's isolated margin goes back to the wallet at once.
            let freed = self.isolated.remove(&x.symbol).unwrap_or_default();
            self.wallet += freed;
        }

        // The trade and the order.
        self.next_trade_id += 1;
        let trade = Trade {
            id: self.next_trade_id,
            order_id: id,
            symbol: x.symbol.clone(),
            side: x.side.to_string(),
            position_side: x.position_side.clone(),
            price: x.price,
            qty: exec_qty,
            realized,
            commission: fee,
            time: now,
        };
        self.trades.push(trade.clone());
        let order = &mut self.orders[idx];
        order.executed = exec_qty;
        order.avg_price = x.price;
        order.update_time = now;
        order.status = if exec_qty == x.qty {
            "FILLED".into()
        } else {
            // Choice: a reduce-only MARKET order larger than the position fills the position and the rest expires
            // (expiry reason 9, "Market order could not be filled completely, remaining quantity is canceled").
            "PARTIALLY_FILLED".into()
        };
        self.push_order_update(idx, "TRADE", Some(&trade), now);
        if exec_qty != x.qty {
            self.orders[idx].status = "EXPIRED".into();
            self.push_order_update(idx, "EXPIRED", None, now);
        }
        self.push_account_update(&x.symbol, &x.position_side, now);
        idx
    }

    /// Fires every NEW algo order of `symbol` that the current mark has crossed, oldest first.
    fn check_algos(&mut self, symbol: &str, now: i64) {
        let mark = self.mark(symbol);
        let due: Vec<usize> = self
            .algos
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                a.status == "NEW"
                    && a.symbol == symbol
                    && crossed(&a.order_type, &a.side, a.trigger, mark)
            })
            .map(|(i, _)| i)
            .collect();
        for idx in due {
            self.fire_algo(idx, now);
        }
    }

    fn fire_algo(&mut self, idx: usize, now: i64) {
        let a = self.algos[idx].clone();
        let pos = self.pos_amt(&a.symbol);
        let reducible = if a.side == "SELL" && pos > Decimal::ZERO {
            pos
        } else if a.side == "BUY" && pos < Decimal::ZERO {
            -pos
        } else {
            Decimal::ZERO
        };
        let (qty, reduce_only) = if a.close_position {
            (reducible, true)
        } else {
            (a.quantity.unwrap_or_default(), a.reduce_only)
        };
        self.algos[idx].trigger_time = now;
        self.algos[idx].update_time = now;
        if a.close_position && qty.is_zero() {
            // Choice: a close-all order that fires with nothing to close ends EXPIRED ("canceled by the system") and
            // nothing trades; the docs' EXPIRED is the system-led end of a conditional order.
            self.algos[idx].status = "EXPIRED".into();
            self.algos[idx].reason = "No position to close".into();
            self.push_algo_update(idx, now);
            return;
        }
        if reduce_only && reducible.is_zero() {
            // The reduce-only check is made when the order reaches the matching engine (REJECTED, "rm" as in the
            // docs' example).
            self.algos[idx].status = "REJECTED".into();
            self.algos[idx].reason = "Reduce Only reject".into();
            self.push_algo_update(idx, now);
            return;
        }
        let order_id = self.alloc_order_id();
        self.algos[idx].status = "TRIGGERED".into();
        self.algos[idx].actual_order_id = Some(order_id);
        self.push_algo_update(idx, now);
        let exec = MarketExec {
            symbol: a.symbol.clone(),
            side: if a.side == "BUY" { "BUY" } else { "SELL" },
            qty,
            price: self.mark(&a.symbol),
            reduce_only,
            close_position: a.close_position,
            // Choice: the docs do not say which client id the order placed by a triggered algo order carries; here
            // it carries the algo order's clientAlgoId (link the two by `actualOrderId` / `ai` to be safe).
            client_id: a.client_id.clone(),
            orig_type: a.order_type.clone(),
            stop_price: a.trigger,
            working_type: a.working_type.clone(),
            position_side: a.position_side.clone(),
            charge: true,
            order_id: Some(order_id),
        };
        let oidx = self.execute_market(exec, now);
        let (executed, avg) = (self.orders[oidx].executed, self.orders[oidx].avg_price);
        let algo = &mut self.algos[idx];
        algo.executed = executed;
        algo.actual_price = avg;
        algo.status = "FINISHED".into();
        algo.update_time = now;
        self.push_algo_update(idx, now);
    }

    // ---- REST -----------------------------------------------------------------------------------------------------

    /// Everything about one request but the waits: weight, faults, authentication, execution. Returns the reply and
    /// how long to hold it.
    fn process(&mut self, req: &RestRequest, idx: usize) -> (Reply, Option<Duration>) {
        let now = self.now();
        let ep = route(&req.method, &req.path);
        let has_symbol = param(&req.params, "symbol").is_some();
        let used = self.add_weight(ep.map_or(1, |e| e.weight(has_symbol)), now);
        let mut hold = None;

        let mut reply = 'reply: {
            if let Some(Fault::RateLimit {
                status,
                retry_after_secs,
                ..
            }) = self.take_fault(|f| matches!(f, Fault::RateLimit { .. }))
            {
                let msg = if status == 418 {
                    format!(
                        "Way too many requests; IP(127.0.0.1) banned until {}. Please use the websocket for live \
                         updates to avoid bans.",
                        now + retry_after_secs as i64 * 1000
                    )
                } else {
                    "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute. Please use the \
                     websocket for live updates to avoid polling the API."
                        .to_string()
                };
                let mut r = Reply::error(status, -1003, msg);
                r.headers
                    .push(("Retry-After", retry_after_secs.to_string()));
                break 'reply r;
            }
            if let Some(Fault::ServerError { status, .. }) = self.take_fault(|f| match f {
                Fault::ServerError { path, .. } => path_matches(path, &req.method, &req.path),
                _ => false,
            }) {
                break 'reply Reply::server_error(status);
            }
            let Some(ep) = ep else {
                break 'reply Reply::error(
                    404,
                    -1099,
                    "Not found, unauthenticated, or unauthorized.",
                );
            };
            match ep.security() {
                Security::None => {}
                Security::UserStream => {
                    if let Err(r) = self.check_api_key(req.api_key.as_deref(), false) {
                        break 'reply r;
                    }
                }
                Security::Signed => {
                    if let Err(r) = self.check_signed(req, now) {
                        break 'reply r;
                    }
                }
            }
            if ep == Ep::OrderPost {
                self.count_order(now);
            }
            // Taken only by a request that is executed.
            let post_fault = self.take_fault(|f| match f {
                Fault::TimeoutAfterExecute { path, .. }
                | Fault::UnknownAfterExecute { path, .. }
                | Fault::DuplicateAfterExecute { path } => {
                    path_matches(path, &req.method, &req.path)
                }
                _ => false,
            });
            let executed = self.dispatch(ep, &req.params, now);
            match post_fault {
                Some(Fault::TimeoutAfterExecute { hold: h, .. }) => {
                    hold = Some(h);
                    executed
                }
                Some(Fault::UnknownAfterExecute { code, .. }) => {
                    if code == -1006 {
                        Reply::error(
                            503,
                            -1006,
                            "An unexpected response was received from the message bus. Execution status unknown.",
                        )
                    } else {
                        Reply::error(
                            503,
                            -1007,
                            "Timeout waiting for response from backend server. Send status unknown; execution status \
                             unknown.",
                        )
                    }
                }
                Some(Fault::DuplicateAfterExecute { .. }) => {
                    Reply::error(400, -4116, "ClientOrderId is duplicated.")
                }
                _ => executed,
            }
        };

        reply
            .headers
            .push(("X-MBX-USED-WEIGHT-1M", used.to_string()));
        if req.path == "/fapi/v1/order" {
            let (ten, minute) = self.order_counts(now);
            reply
                .headers
                .push(("X-MBX-ORDER-COUNT-10S", ten.to_string()));
            reply
                .headers
                .push(("X-MBX-ORDER-COUNT-1M", minute.to_string()));
        }
        if let Some(record) = self.requests.get_mut(idx) {
            record.answered = reply.status;
        }
        (reply, hold)
    }

    fn check_api_key(&mut self, api_key: Option<&str>, signed: bool) -> Result<(), Reply> {
        let Some(key) = api_key.filter(|k| !k.is_empty()) else {
            // Choice: the docs give no HTTP status for -2014; a malformed request is a 4XX, so 400.
            return Err(Reply::error(400, -2014, "API-key format invalid."));
        };
        let rejected = signed
            && self
                .take_fault(|f| matches!(f, Fault::RejectKey { .. }))
                .is_some();
        if rejected || key != self.api_key {
            return Err(Reply::error(
                401,
                -2015,
                "Invalid API-key, IP, or permissions for action.",
            ));
        }
        Ok(())
    }

    /// SIGNED (TRADE and USER_DATA) endpoint security, as in "SIGNED Endpoint Examples for POST /fapi/v1/order".
    fn check_signed(&mut self, req: &RestRequest, now: i64) -> Result<(), Reply> {
        self.check_api_key(req.api_key.as_deref(), true)?;
        let timestamp = param(&req.params, "timestamp")
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| mandatory("timestamp"))?;
        let recv_window = match param(&req.params, "recvWindow") {
            None => 5000,
            // Choice: the USDⓈ-M docs set no maximum and list no -1131; the spot limit (60000) is kept and a value
            // past it is refused with the documented -1130 ("Data sent for parameter '%s' is not valid.").
            Some(w) => match w.parse::<i64>() {
                Ok(w) if (1..=60_000).contains(&w) => w,
                _ => return Err(invalid_param("recvWindow")),
            },
        };
        let signature = param(&req.params, "signature").ok_or_else(|| mandatory("signature"))?;
        // totalParams: the query string concatenated with the body (no '&' between them), `signature` left out.
        let total = format!(
            "{}{}",
            strip_signature(&req.raw_query),
            strip_signature(&req.raw_body)
        );
        if !hmac_sha256_hex(&self.api_secret, &total).eq_ignore_ascii_case(signature) {
            return Err(Reply::error(
                400,
                -1022,
                "Signature for this request is not valid.",
            ));
        }
        // if (timestamp < serverTime + 1000 && serverTime - timestamp <= recvWindow) process, else reject.
        if timestamp >= now + 1000 {
            return Err(Reply::error(
                400,
                -1021,
                "Timestamp for this request was 1000ms ahead of the server's time.",
            ));
        }
        if now - timestamp > recv_window {
            return Err(Reply::error(
                400,
                -1021,
                "Timestamp for this request is outside of the recvWindow.",
            ));
        }
        Ok(())
    }

    fn dispatch(&mut self, ep: Ep, p: &Params, now: i64) -> Reply {
        let result = match ep {
            Ep::Ping => Ok(json!({})),
            Ep::Time => Ok(json!({ "serverTime": now })),
            Ep::ExchangeInfo => Ok(self.exchange_info(now)),
            Ep::PremiumIndex => self.premium_index(p, now),
            Ep::DualGet => Ok(json!({ "dualSidePosition": self.dual_side })),
            Ep::LeverageBracket => self.leverage_brackets(p),
            Ep::DualPost => self.change_position_mode(p),
            Ep::Leverage => self.change_leverage(p, now),
            Ep::MarginType => self.change_margin_type(p),
            Ep::PositionMargin => self.modify_position_margin(p, now),
            Ep::OrderPost => self.new_order(p, now),
            Ep::OrderGet => self.query_order(p),
            Ep::OrderDelete => self.cancel_order(p),
            Ep::AllOpenOrdersDelete => {
                known_symbol(p).map(|_| json!({"code": 200, "msg": "The operation of cancel all open order is done."}))
            }
            Ep::OpenOrders => match param(p, "symbol") {
                Some(_) => known_symbol(p).map(|_| json!([])),
                None => Ok(json!([])),
            },
            Ep::UserTrades => self.user_trades(p),
            Ep::PositionRisk => self.position_risk(p),
            Ep::Balance => Ok(self.balance(now)),
            Ep::AlgoPost => self.new_algo(p, now),
            Ep::AlgoDelete => self.cancel_algo(p, now),
            Ep::AlgoGet => self.query_algo(p),
            Ep::OpenAlgo => self.open_algos(p),
            Ep::ListenKeyPost => self.start_user_stream(),
            Ep::ListenKeyPut => match &self.listen_key {
                Some(k) => Ok(json!({ "listenKey": k })),
                None => Err(Reply::error(
                    400,
                    -1125,
                    "This listenKey does not exist. Please use `POST /fapi/v1/listenKey` to recreate `listenKey`",
                )),
            },
            Ep::ListenKeyDelete => {
                self.listen_key = None;
                self.close_user_streams();
                Ok(json!({}))
            }
        };
        match result {
            Ok(body) => Reply::json(200, &body),
            Err(reply) => reply,
        }
    }

    /// Notional and Leverage Brackets: BTCUSDT's first tiers as Binance lists them (JSON numbers, `cum` the
    /// maintenance amount), the same for every listed symbol; one object with `symbol`, else an array.
    fn leverage_brackets(&self, p: &Params) -> Result<Value, Reply> {
        let tiers = json!([
            {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0,
             "maintMarginRatio": 0.004, "cum": 0.0},
            {"bracket": 2, "initialLeverage": 100, "notionalCap": 250000, "notionalFloor": 50000,
             "maintMarginRatio": 0.005, "cum": 50.0},
            {"bracket": 3, "initialLeverage": 50, "notionalCap": 3000000, "notionalFloor": 250000,
             "maintMarginRatio": 0.01, "cum": 1300.0},
        ]);
        let of = |symbol: &str| json!({"symbol": symbol, "brackets": tiers});
        match param(p, "symbol") {
            Some(_) => known_symbol(p).map(|s| of(s.symbol)),
            None => Ok(Value::from(
                SPECS.iter().map(|s| of(s.symbol)).collect::<Vec<_>>(),
            )),
        }
    }

    fn exchange_info(&self, now: i64) -> Value {
        let symbols: Vec<Value> = SPECS
            .iter()
            .map(|s| {
                json!({
                    "symbol": s.symbol,
                    "pair": s.symbol,
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4_133_404_800_000_i64,
                    "onboardDate": 1_569_398_400_000_i64,
                    "status": s.status,
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": s.base,
                    "quoteAsset": "USDT",
                    "marginAsset": "USDT",
                    "pricePrecision": s.price_precision,
                    "quantityPrecision": s.quantity_precision,
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "underlyingSubType": ["PoW"],
                    "settlePlan": 0,
                    "triggerProtect": "0.0500",
                    "liquidationFee": "0.012500",
                    "marketTakeBound": "0.05",
                    "maxMoveOrderLimit": 10000,
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": s.min_price, "maxPrice": s.max_price,
                         "tickSize": s.tick_size},
                        {"filterType": "LOT_SIZE", "minQty": s.lot[0], "maxQty": s.lot[1], "stepSize": s.lot[2]},
                        {"filterType": "MARKET_LOT_SIZE", "minQty": s.market_lot[0], "maxQty": s.market_lot[1],
                         "stepSize": s.market_lot[2]},
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": MAX_ALGO_ORDERS_PER_SYMBOL},
                        {"filterType": "MIN_NOTIONAL", "notional": s.min_notional},
                        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                         "multiplierDecimal": "4"},
                    ],
                    // The docs' example spells this key "OrderType"; the live API (and every client) uses
                    // "orderTypes".
                    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                                   "TRAILING_STOP_MARKET"],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
                })
            })
            .collect();
        json!({
            "timezone": "UTC",
            "serverTime": now,
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [
                {"asset": "USDT", "marginAvailable": true, "autoAssetExchange": "-10000"},
                {"asset": "BTC", "marginAvailable": true, "autoAssetExchange": "-0.10"},
                {"asset": "BNB", "marginAvailable": false, "autoAssetExchange": null},
            ],
            "symbols": symbols,
        })
    }

    fn premium_index(&self, p: &Params, now: i64) -> Result<Value, Reply> {
        let one = |s: &SymbolSpec| {
            let mark = fmt_fixed(self.mark(s.symbol), 8);
            json!({
                "symbol": s.symbol,
                "markPrice": mark,
                "indexPrice": mark,
                "estimatedSettlePrice": mark,
                "lastFundingRate": self.funding_rate(s.symbol),
                "interestRate": "0.00010000",
                "nextFundingTime": (now.div_euclid(28_800_000) + 1) * 28_800_000,
                "time": now,
            })
        };
        match param(p, "symbol") {
            Some(_) => known_symbol(p).map(one),
            None => Ok(Value::Array(SPECS.iter().map(one).collect())),
        }
    }

    fn change_position_mode(&mut self, p: &Params) -> Result<Value, Reply> {
        let on = match param(p, "dualSidePosition")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(invalid_param("dualSidePosition")),
            None => return Err(mandatory("dualSidePosition")),
        };
        if on == self.dual_side {
            return Err(Reply::error(400, -4059, "No need to change position side."));
        }
        if self.positions.values().any(|p| !p.amt.is_zero()) {
            return Err(Reply::error(
                400,
                -4068,
                "Position side cannot be changed if there exists position.",
            ));
        }
        self.dual_side = on;
        Ok(json!({"code": 200, "msg": "success"}))
    }

    fn change_leverage(&mut self, p: &Params, now: i64) -> Result<Value, Reply> {
        let s = known_symbol(p)?;
        let raw = param(p, "leverage").ok_or_else(|| mandatory("leverage"))?;
        let leverage = match raw.parse::<u32>() {
            Ok(l) if (1..=125).contains(&l) => l,
            _ => {
                return Err(Reply::error(
                    400,
                    -4028,
                    format!("Leverage {raw} is not valid"),
                ))
            }
        };
        self.leverage.insert(s.symbol.to_string(), leverage);
        let max_notional = match leverage {
            0..=20 => "10000000",
            21..=50 => "5000000",
            51..=100 => "1000000",
            _ => "300000",
        };
        // Documented "Event: Account Configuration Update previous Leverage Update".
        self.push_user(json!({
            "e": "ACCOUNT_CONFIG_UPDATE",
            "E": now,
            "T": now,
            "ac": {"s": s.symbol, "l": leverage},
        }));
        Ok(json!({"leverage": leverage, "maxNotionalValue": max_notional, "symbol": s.symbol}))
    }

    fn change_margin_type(&mut self, p: &Params) -> Result<Value, Reply> {
        let s = known_symbol(p)?;
        let wanted = match param(p, "marginType")
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("ISOLATED") => "ISOLATED",
            Some("CROSSED") => "CROSSED",
            Some(_) => return Err(invalid_param("marginType")),
            None => return Err(mandatory("marginType")),
        };
        if self.margin_type_of(s.symbol) == wanted {
            return Err(Reply::error(400, -4046, "No need to change margin type."));
        }
        if !self.pos_amt(s.symbol).is_zero() {
            return Err(Reply::error(
                400,
                -4048,
                "Margin type cannot be changed if there exists position.",
            ));
        }
        self.margin_type
            .insert(s.symbol.to_string(), wanted.to_string());
        Ok(json!({"code": 200, "msg": "success"}))
    }

    /// "Modify Isolated Position Margin (TRADE)". Error codes from Binance's USDⓈ-M error code list. Choice: the
    /// documentation gives no order of checks; amount, then margin type, then position, then the wallet.
    fn modify_position_margin(&mut self, p: &Params, now: i64) -> Result<Value, Reply> {
        let s = known_symbol(p)?;
        let position_side = self.position_side(p)?;
        let raw = param(p, "amount").ok_or_else(|| mandatory("amount"))?;
        let amount: Decimal = raw.parse().map_err(|_| invalid_param("amount"))?;
        let add = match param(p, "type") {
            Some("1") => true,
            Some("2") => false,
            Some(_) => return Err(invalid_param("type")),
            None => return Err(mandatory("type")),
        };
        if amount <= Decimal::ZERO {
            return Err(Reply::error(400, -4055, "Amount must be positive."));
        }
        if self.margin_type_of(s.symbol) != "ISOLATED" {
            return Err(Reply::error(
                400,
                -4049,
                "Add margin only support for isolated position.",
            ));
        }
        if self.pos_amt(s.symbol).is_zero() {
            return Err(Reply::error(
                400,
                -4054,
                "Cannot add position margin: position is 0.",
            ));
        }
        let isolated = self.isolated_of(s.symbol);
        if add {
            if amount > self.available_balance() {
                return Err(Reply::error(400, -4050, "Cross balance insufficient."));
            }
            self.wallet -= amount;
            self.isolated
                .insert(s.symbol.to_string(), isolated + amount);
        } else {
            if amount > isolated {
                return Err(Reply::error(400, -4051, "Isolated balance insufficient."));
            }
            self.wallet += amount;
            self.isolated
                .insert(s.symbol.to_string(), isolated - amount);
        }
        self.push_account_update_because(s.symbol, &position_side, "MARGIN_TRANSFER", now);
        // Binance answers the amount as a bare number (`100.0`).
        let number: Value =
            serde_json::from_str(&fmt_min(amount, 1)).map_err(|_| invalid_param("amount"))?;
        Ok(json!({
            "amount": number,
            "code": 200,
            "msg": "Successfully modify position margin.",
            "type": if add { 1 } else { 2 },
        }))
    }

    fn position_side(&self, p: &Params) -> Result<String, Reply> {
        let ps = match param(p, "positionSide").map(str::to_ascii_uppercase) {
            None => "BOTH".to_string(),
            Some(ps) if ["BOTH", "LONG", "SHORT"].contains(&ps.as_str()) => ps,
            Some(_) => return Err(Reply::error(400, -4060, "Invalid position side.")),
        };
        let fits = if self.dual_side {
            ps != "BOTH"
        } else {
            ps == "BOTH"
        };
        if !fits {
            return Err(Reply::error(
                400,
                -4061,
                "Order's position side does not match user's setting.",
            ));
        }
        Ok(ps)
    }

    fn new_order(&mut self, p: &Params, now: i64) -> Result<Value, Reply> {
        let s = known_symbol(p)?;
        let side = side_param(p)?;
        let order_type = param(p, "type")
            .ok_or_else(|| mandatory("type"))?
            .to_ascii_uppercase();
        match order_type.as_str() {
            "MARKET" => {}
            "STOP_MARKET" | "TAKE_PROFIT_MARKET" | "STOP" | "TAKE_PROFIT" | "TRAILING_STOP_MARKET" => {
                return Err(Reply::error(
                    400,
                    -4120,
                    "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
                ))
            }
            // Choice: LIMIT orders are not implemented (no order book); they are refused like an unknown type.
            _ => return Err(Reply::error(400, -1116, "Invalid orderType.")),
        }
        let position_side = self.position_side(p)?;
        let reduce_only = bool_param(p, "reduceOnly")?;
        if self.dual_side && param(p, "reduceOnly").is_some() {
            return Err(Reply::error(
                400,
                -1106,
                "Parameter 'reduceOnly' sent when not required.",
            ));
        }
        let resp_type = match param(p, "newOrderRespType")
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("ACK") => "ACK",
            Some("RESULT") => "RESULT",
            Some(_) => return Err(Reply::error(400, -1136, "Invalid newOrderRespType.")),
        };
        let client_id = match param(p, "newClientOrderId") {
            Some(id) => {
                check_client_id(id, "newClientOrderId")?;
                // Choice: Binance checks uniqueness "among open orders" only, and a MARKET order is never open. The
                // fake is stricter: an id used by ANY earlier order of the account is refused, so that a test can
                // model "the same order sent twice".
                if self.orders.iter().any(|o| o.client_id == id) {
                    return Err(Reply::error(400, -4116, "ClientOrderId is duplicated."));
                }
                id.to_string()
            }
            None => self.gen_client_id(),
        };
        let qty = quantity_param(p, s, &s.market_lot)?;
        let mark = self.mark(s.symbol);
        let pos = self.pos_amt(s.symbol);
        let sign = if side == "BUY" {
            Decimal::ONE
        } else {
            -Decimal::ONE
        };
        if s.status != "TRADING" && !reduce_only {
            return Err(Reply::error(
                400,
                -4140,
                "Invalid symbol status for opening position",
            ));
        }
        if reduce_only && (pos.is_zero() || pos.is_sign_negative() == sign.is_sign_negative()) {
            return Err(Reply::error(400, -2022, "ReduceOnly Order is rejected."));
        }
        if !reduce_only && qty * mark < dec(s.min_notional) {
            return Err(Reply::error(
                400,
                -4164,
                format!(
                    "Order's notional must be no smaller than {} (unless you choose reduce only)",
                    s.min_notional
                ),
            ));
        }
        // Margin: only what the order adds to the position has to be covered.
        let added = (pos + qty * sign).abs() - pos.abs();
        if added > Decimal::ZERO {
            let needed = added * mark / Decimal::from(self.leverage_of(s.symbol))
                + qty * mark * dec(TAKER_FEE);
            if needed > self.available_balance() {
                return Err(Reply::error(400, -2019, "Margin is insufficient."));
            }
        }
        let exec = MarketExec {
            symbol: s.symbol.to_string(),
            side,
            qty,
            price: mark,
            reduce_only,
            close_position: false,
            client_id,
            orig_type: "MARKET".into(),
            stop_price: Decimal::ZERO,
            working_type: "CONTRACT_PRICE".into(),
            position_side,
            charge: true,
            order_id: None,
        };
        let idx = self.execute_market(exec, now);
        let mut body = order_json(&self.orders[idx]);
        body["cumQty"] = body["executedQty"].clone();
        if resp_type == "ACK" {
            // ACK answers before the fill is known (the order is filled all the same).
            body["status"] = json!("NEW");
            body["executedQty"] = json!("0");
            body["cumQty"] = json!("0");
            body["cumQuote"] = json!("0");
            body["avgPrice"] = json!(fmt_fixed(Decimal::ZERO, s.price_precision));
            body["updateTime"] = json!(now);
        }
        if let Some(obj) = body.as_object_mut() {
            obj.remove("time");
        }
        Ok(body)
    }

    fn find_order(&self, p: &Params) -> Result<usize, Reply> {
        let s = known_symbol(p)?;
        let by_id = param(p, "orderId");
        let by_client = param(p, "origClientOrderId");
        if by_id.is_none() && by_client.is_none() {
            return Err(Reply::error(
                400,
                -1102,
                "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!",
            ));
        }
        let order_id = match by_id {
            Some(id) => Some(id.parse::<i64>().map_err(|_| mandatory("orderId"))?),
            None => None,
        };
        // With a client id shared by several orders (possible only through the triggered-algo rule), the newest wins.
        self.orders
            .iter()
            .rposition(|o| {
                o.symbol == s.symbol
                    && order_id.is_none_or(|id| o.id == id)
                    && by_client.is_none_or(|c| o.client_id == c)
            })
            .ok_or_else(|| Reply::error(400, -2013, "Order does not exist."))
    }

    fn query_order(&self, p: &Params) -> Result<Value, Reply> {
        let idx = self.find_order(p)?;
        Ok(order_json(&self.orders[idx]))
    }

    fn cancel_order(&self, p: &Params) -> Result<Value, Reply> {
        // Every order of the fake is filled at once, so there is never anything to cancel.
        match self.find_order(p) {
            Ok(_) | Err(_) => Err(Reply::error(400, -2011, "Unknown order sent.")),
        }
    }

    fn user_trades(&self, p: &Params) -> Result<Value, Reply> {
        let s = known_symbol(p)?;
        let order_id = param(p, "orderId").and_then(|v| v.parse::<i64>().ok());
        let from_id = param(p, "fromId").and_then(|v| v.parse::<i64>().ok());
        let start = param(p, "startTime").and_then(|v| v.parse::<i64>().ok());
        let end = param(p, "endTime").and_then(|v| v.parse::<i64>().ok());
        let limit = param(p, "limit")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(500)
            .clamp(1, 1000);
        let matching: Vec<&Trade> = self
            .trades
            .iter()
            .filter(|t| {
                t.symbol == s.symbol
                    && order_id.is_none_or(|id| t.order_id == id)
                    && from_id.is_none_or(|id| t.id >= id)
                    && start.is_none_or(|ms| t.time >= ms)
                    && end.is_none_or(|ms| t.time <= ms)
            })
            .collect();
        // Oldest first; with `fromId` the first `limit` from it, otherwise the most recent `limit`.
        let picked: Vec<&Trade> = if from_id.is_some() {
            matching.into_iter().take(limit).collect()
        } else {
            let skip = matching.len().saturating_sub(limit);
            matching.into_iter().skip(skip).collect()
        };
        let pp = s.price_precision;
        Ok(Value::Array(
            picked
                .into_iter()
                .map(|t| {
                    json!({
                        "symbol": t.symbol,
                        "id": t.id,
                        "orderId": t.order_id,
                        "side": t.side,
                        "price": fmt_min(t.price, pp),
                        "qty": fmt_min(t.qty, s.quantity_precision),
                        "realizedPnl": fmt_fixed(t.realized, 8),
                        "quoteQty": fmt_min(t.price * t.qty, pp),
                        // Choice: the docs' example shows a negative commission; the fake reports the fee paid as a
                        // positive amount (what the exchange charges), and the wallet goes down by it.
                        "commission": fmt_fixed(t.commission, 8),
                        "commissionAsset": "USDT",
                        "time": t.time,
                        "positionSide": t.position_side,
                        "buyer": t.side == "BUY",
                        "maker": false,
                    })
                })
                .collect(),
        ))
    }

    fn position_risk(&self, p: &Params) -> Result<Value, Reply> {
        let only = match param(p, "symbol") {
            Some(_) => Some(known_symbol(p)?.symbol),
            None => None,
        };
        let maint_rate = dec(MAINT_RATE);
        let mut out = Vec::new();
        for (symbol, pos) in &self.positions {
            if pos.amt.is_zero() || only.is_some_and(|o| o != symbol) {
                continue;
            }
            let s = spec(symbol).expect("fake binance: positions only on known symbols");
            let mark = self.mark(symbol);
            let notional = pos.amt * mark;
            let upnl = (mark - pos.entry) * pos.amt;
            let initial = notional.abs() / Decimal::from(self.leverage_of(symbol));
            let maint = notional.abs() * maint_rate;
            // Rough cross-margin liquidation price for this position alone: wallet + amt*(P - entry) = |amt|*P*mmr.
            let denom = pos.amt - pos.amt.abs() * maint_rate;
            let liq = if denom.is_zero() {
                Decimal::ZERO
            } else {
                ((pos.amt * pos.entry - self.wallet) / denom).max(Decimal::ZERO)
            };
            let position_side = if !self.dual_side {
                "BOTH"
            } else if pos.amt > Decimal::ZERO {
                "LONG"
            } else {
                "SHORT"
            };
            out.push(json!({
                "symbol": symbol,
                "positionSide": position_side,
                "positionAmt": fmt_min(pos.amt, s.quantity_precision),
                "entryPrice": fmt_min(pos.entry, 1),
                "breakEvenPrice": fmt_min(break_even(pos.amt, pos.entry), 1),
                "markPrice": fmt_fixed(mark, 8),
                "unRealizedProfit": fmt_fixed(upnl, 8),
                "liquidationPrice": fmt_min(liq, 1),
                "isolatedMargin": fmt_fixed(self.isolated_of(symbol) + if self.margin_type_of(symbol) == "ISOLATED" { upnl } else { Decimal::ZERO }, 8),
                "notional": fmt_fixed(notional, 8),
                "marginAsset": "USDT",
                "isolatedWallet": fmt_fixed(self.isolated_of(symbol), 8),
                "initialMargin": fmt_fixed(initial, 8),
                "maintMargin": fmt_fixed(maint, 8),
                "positionInitialMargin": fmt_fixed(initial, 8),
                "openOrderInitialMargin": "0",
                "adl": 0,
                "bidNotional": "0",
                "askNotional": "0",
                "updateTime": pos.update_time,
            }));
        }
        Ok(Value::Array(out))
    }

    fn balance(&self, now: i64) -> Value {
        let upnl = self.total_upnl();
        let available = self.available_balance();
        json!([{
            "accountAlias": "FakeSgsR",
            "asset": "USDT",
            "balance": fmt_fixed(self.wallet + self.isolated.values().copied().sum::<Decimal>(), 8),
            "crossWalletBalance": fmt_fixed(self.wallet, 8),
            "crossUnPnl": fmt_fixed(upnl, 8),
            "availableBalance": fmt_fixed(available, 8),
            "maxWithdrawAmount": fmt_fixed(available.min(self.wallet).max(Decimal::ZERO), 8),
            "marginAvailable": true,
            "updateTime": now,
        }])
    }

    fn new_algo(&mut self, p: &Params, now: i64) -> Result<Value, Reply> {
        match param(p, "algoType").map(str::to_ascii_uppercase).as_deref() {
            Some("CONDITIONAL") => {}
            Some(_) => return Err(invalid_param("algoType")),
            None => return Err(mandatory("algoType")),
        }
        let s = known_symbol(p)?;
        let side = side_param(p)?;
        let order_type = param(p, "type")
            .ok_or_else(|| mandatory("type"))?
            .to_ascii_uppercase();
        match order_type.as_str() {
            "STOP_MARKET" | "TAKE_PROFIT_MARKET" => {}
            // Choice: STOP, TAKE_PROFIT (limit orders once triggered) and TRAILING_STOP_MARKET are not implemented.
            _ => return Err(Reply::error(400, -1116, "Invalid orderType.")),
        }
        let position_side = self.position_side(p)?;
        let working_type = match param(p, "workingType")
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            // Documented default: CONTRACT_PRICE. The fake has one price only: both kinds trigger on the mark.
            None | Some("CONTRACT_PRICE") => "CONTRACT_PRICE",
            Some("MARK_PRICE") => "MARK_PRICE",
            Some(_) => return Err(Reply::error(400, -4031, "Invalid parameter working type")),
        };
        let trigger = price_param(p, "triggerPrice", s)?;
        let close_position = bool_param(p, "closePosition")?;
        let price_protect = bool_param(p, "priceProtect")?;
        let (quantity, reduce_only) = if close_position {
            if param(p, "quantity").is_some() {
                return Err(Reply::error(
                    400,
                    -4137,
                    "Quantity must be zero with closePosition equals true",
                ));
            }
            if param(p, "reduceOnly").is_some() {
                return Err(Reply::error(
                    400,
                    -1106,
                    "Parameter 'reduceOnly' sent when not required.",
                ));
            }
            (None, false)
        } else {
            // Choice: the order becomes a MARKET order when it fires, so MARKET_LOT_SIZE is the filter applied.
            let qty = quantity_param(p, s, &s.market_lot)?;
            if self.dual_side && param(p, "reduceOnly").is_some() {
                return Err(Reply::error(
                    400,
                    -1106,
                    "Parameter 'reduceOnly' sent when not required.",
                ));
            }
            (Some(qty), bool_param(p, "reduceOnly")?)
        };
        if s.status != "TRADING" && !(close_position || reduce_only) {
            return Err(Reply::error(
                400,
                -4140,
                "Invalid symbol status for opening position",
            ));
        }
        if let Some(qty) = quantity {
            if !reduce_only && qty * trigger < dec(s.min_notional) {
                return Err(Reply::error(
                    400,
                    -4164,
                    format!(
                        "Order's notional must be no smaller than {} (unless you choose reduce only)",
                        s.min_notional
                    ),
                ));
            }
        }
        let client_id = match param(p, "clientAlgoId") {
            Some(id) => {
                check_client_id(id, "clientAlgoId")?;
                // "A unique id among open orders": a NEW algo order with the same id is a duplicate.
                if self
                    .algos
                    .iter()
                    .any(|a| a.status == "NEW" && a.client_id == id)
                {
                    return Err(Reply::error(400, -4116, "ClientOrderId is duplicated."));
                }
                id.to_string()
            }
            None => self.gen_client_id(),
        };
        let open_on_symbol = self
            .algos
            .iter()
            .filter(|a| a.status == "NEW" && a.symbol == s.symbol)
            .count();
        if open_on_symbol >= MAX_ALGO_ORDERS_PER_SYMBOL {
            return Err(Reply::error(400, -4045, "Reach max stop order limit."));
        }
        if crossed(&order_type, side, trigger, self.mark(s.symbol)) {
            return Err(Reply::error(400, -2021, "Order would immediately trigger."));
        }
        let algo = Algo {
            id: self.alloc_algo_id(),
            client_id,
            symbol: s.symbol.to_string(),
            side: side.to_string(),
            position_side,
            order_type,
            trigger,
            working_type: working_type.to_string(),
            close_position,
            quantity,
            reduce_only,
            price_protect,
            status: "NEW".into(),
            actual_order_id: None,
            actual_price: Decimal::ZERO,
            executed: Decimal::ZERO,
            create_time: now,
            update_time: now,
            trigger_time: 0,
            reason: String::new(),
        };
        self.algos.push(algo);
        let idx = self.algos.len() - 1;
        self.push_algo_update(idx, now);
        // The docs show the same full object for ACK and RESULT.
        Ok(algo_json(&self.algos[idx]))
    }

    fn find_algo(&self, p: &Params) -> Result<Option<usize>, Reply> {
        let by_id = param(p, "algoId");
        let by_client = param(p, "clientAlgoId");
        if by_id.is_none() && by_client.is_none() {
            return Err(Reply::error(
                400,
                -1102,
                "Param 'algoId' or 'clientAlgoId' must be sent, but both were empty/null!",
            ));
        }
        let algo_id = match by_id {
            Some(id) => Some(id.parse::<i64>().map_err(|_| mandatory("algoId"))?),
            None => None,
        };
        let hit = |a: &Algo| {
            algo_id.is_none_or(|id| a.id == id) && by_client.is_none_or(|c| a.client_id == c)
        };
        // A client id can be reused once the earlier order is closed: the NEW one first, else the newest.
        Ok(self
            .algos
            .iter()
            .rposition(|a| a.status == "NEW" && hit(a))
            .or_else(|| self.algos.iter().rposition(hit)))
    }

    fn cancel_algo(&mut self, p: &Params, now: i64) -> Result<Value, Reply> {
        let idx = self
            .find_algo(p)?
            .filter(|i| self.algos[*i].status == "NEW")
            .ok_or_else(|| Reply::error(400, -2011, "Unknown order sent."))?;
        let algo = &mut self.algos[idx];
        algo.status = "CANCELED".into();
        algo.update_time = now;
        let body = json!({
            "algoId": algo.id,
            "clientAlgoId": algo.client_id,
            "code": "200",
            "msg": "success",
        });
        self.push_algo_update(idx, now);
        Ok(body)
    }

    fn query_algo(&self, p: &Params) -> Result<Value, Reply> {
        let idx = self
            .find_algo(p)?
            .ok_or_else(|| Reply::error(400, -2013, "Order does not exist."))?;
        Ok(algo_json(&self.algos[idx]))
    }

    fn open_algos(&self, p: &Params) -> Result<Value, Reply> {
        let only = match param(p, "symbol") {
            Some(_) => Some(known_symbol(p)?.symbol),
            None => None,
        };
        let algo_id = param(p, "algoId").and_then(|v| v.parse::<i64>().ok());
        Ok(Value::Array(
            self.algos
                .iter()
                .filter(|a| {
                    a.status == "NEW"
                        && only.is_none_or(|s| a.symbol == s)
                        && algo_id.is_none_or(|id| a.id == id)
                })
                .map(algo_json)
                .collect(),
        ))
    }

    fn start_user_stream(&mut self) -> Result<Value, Reply> {
        if self.streams_refused {
            return Err(Reply::error(503, -1008, "Service Unavailable."));
        }
        let key = match &self.listen_key {
            Some(k) => k.clone(),
            None => {
                let k = random_hex("listen-key");
                self.listen_key = Some(k.clone());
                k
            }
        };
        Ok(json!({ "listenKey": key }))
    }
}

struct MarketExec {
    symbol: String,
    side: &'static str,
    qty: Decimal,
    price: Decimal,
    reduce_only: bool,
    close_position: bool,
    client_id: String,
    orig_type: String,
    stop_price: Decimal,
    working_type: String,
    position_side: String,
    /// Charge the fee and put realized PnL on the wallet (false for trades "on the website").
    charge: bool,
    order_id: Option<i64>,
}

/// Has `mark` reached the trigger? (New Algo Order: STOP_MARKET BUY when price >= trigger, SELL when <= trigger;
/// TAKE_PROFIT_MARKET BUY when price <= trigger, SELL when >= trigger.)
fn crossed(order_type: &str, side: &str, trigger: Decimal, mark: Decimal) -> bool {
    let stop = order_type.starts_with("STOP");
    match (stop, side) {
        (true, "BUY") | (false, "SELL") => mark >= trigger,
        _ => mark <= trigger,
    }
}

fn break_even(amt: Decimal, entry: Decimal) -> Decimal {
    // Entry adjusted for the taker fee paid to open and the one to close.
    let fees = dec(TAKER_FEE) * Decimal::TWO;
    if amt > Decimal::ZERO {
        entry * (Decimal::ONE + fees)
    } else if amt < Decimal::ZERO {
        entry * (Decimal::ONE - fees)
    } else {
        Decimal::ZERO
    }
}

fn order_json(o: &Order) -> Value {
    let s = spec(&o.symbol);
    let pp = s.map_or(2, |s| s.price_precision);
    let qp = s.map_or(3, |s| s.quantity_precision);
    json!({
        "avgPrice": fmt_min(o.avg_price, pp),
        "clientOrderId": o.client_id,
        "cumQuote": fmt_min(o.avg_price * o.executed, pp),
        "executedQty": fmt_min(o.executed, qp),
        "orderId": o.id,
        "origQty": fmt_min(o.qty, qp),
        "origType": o.orig_type,
        "price": "0",
        "reduceOnly": o.reduce_only,
        "side": o.side,
        "positionSide": o.position_side,
        "status": o.status,
        "stopPrice": fmt_min(o.stop_price, 0),
        "closePosition": o.close_position,
        "symbol": o.symbol,
        "time": o.time,
        "timeInForce": "GTC",
        "type": o.order_type,
        "updateTime": o.update_time,
        "workingType": o.working_type,
        "priceProtect": false,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
    })
}

fn algo_json(a: &Algo) -> Value {
    let s = spec(&a.symbol);
    let pp = s.map_or(2, |s| s.price_precision);
    let qp = s.map_or(3, |s| s.quantity_precision);
    json!({
        "algoId": a.id,
        "clientAlgoId": a.client_id,
        "algoType": "CONDITIONAL",
        "orderType": a.order_type,
        "symbol": a.symbol,
        "side": a.side,
        "positionSide": a.position_side,
        "timeInForce": "GTC",
        "quantity": fmt_min(a.quantity.unwrap_or_default(), qp),
        "algoStatus": a.status,
        // As in the docs: a string, "" until the order has been placed in the matching engine.
        "actualOrderId": a.actual_order_id.map(|i| i.to_string()).unwrap_or_default(),
        "actualPrice": fmt_fixed(a.actual_price, 5.max(pp)),
        "triggerPrice": fmt_min(a.trigger, pp),
        "price": fmt_fixed(Decimal::ZERO, pp),
        "icebergQuantity": null,
        "tpTriggerPrice": "0.000",
        "tpPrice": "0.000",
        "slTriggerPrice": "0.000",
        "slPrice": "0.000",
        "tpOrderType": "",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": a.working_type,
        "priceMatch": "NONE",
        "closePosition": a.close_position,
        "priceProtect": a.price_protect,
        "reduceOnly": a.reduce_only,
        "activatePrice": "",
        "callbackRate": "",
        "createTime": a.create_time,
        "updateTime": a.update_time,
        "triggerTime": a.trigger_time,
        "goodTillDate": 0,
        // Not in the docs' example (some clients model them): the fill of the actual order. Prefer
        // GET /fapi/v1/order with `actualOrderId`.
        "executedQty": fmt_min(a.executed, qp),
        "avgPrice": fmt_min(a.actual_price, pp),
    })
}

// ------------------------------------------------------------------------------------------------------------------
// Parameters and validation
// ------------------------------------------------------------------------------------------------------------------

type Params = Vec<(String, String)>;

/// The first value of `name`: the query string comes first, and "if a parameter sent in both the query string and
/// request body, the query string parameter will be used".
fn param<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

fn mandatory(name: &str) -> Reply {
    Reply::error(
        400,
        -1102,
        format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
    )
}

fn invalid_param(name: &str) -> Reply {
    Reply::error(
        400,
        -1130,
        format!("Data sent for parameter '{name}' is not valid."),
    )
}

fn known_symbol(p: &Params) -> Result<&'static SymbolSpec, Reply> {
    let symbol = param(p, "symbol").ok_or_else(|| mandatory("symbol"))?;
    spec(symbol).ok_or_else(|| Reply::error(400, -1121, "Invalid symbol."))
}

fn side_param(p: &Params) -> Result<&'static str, Reply> {
    match param(p, "side").map(str::to_ascii_uppercase).as_deref() {
        Some("BUY") => Ok("BUY"),
        Some("SELL") => Ok("SELL"),
        Some(_) => Err(Reply::error(400, -1117, "Invalid side.")),
        None => Err(mandatory("side")),
    }
}

/// A "true"/"false" parameter (any case), false when absent.
fn bool_param(p: &Params, name: &str) -> Result<bool, Reply> {
    match param(p, name).map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(invalid_param(name)),
    }
}

fn check_client_id(id: &str, name: &str) -> Result<(), Reply> {
    if id.len() > 36 {
        return Err(Reply::error(
            400,
            -4015,
            "Client order id length should not be more than 36 chars",
        ));
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '_' | '-');
    if !id.chars().all(legal) {
        return Err(Reply::error(
            400,
            -1100,
            format!("Illegal characters found in parameter '{name}'; legal range is '{CLIENT_ID_RULE}'."),
        ));
    }
    Ok(())
}

/// `quantity` against the symbol's precision and a lot size filter ([minQty, maxQty, stepSize]).
fn quantity_param(p: &Params, s: &SymbolSpec, lot: &[&str; 3]) -> Result<Decimal, Reply> {
    let qty: Decimal = param(p, "quantity")
        .ok_or_else(|| mandatory("quantity"))?
        .parse()
        .map_err(|_| mandatory("quantity"))?;
    if qty <= Decimal::ZERO {
        return Err(Reply::error(400, -4003, "Quantity less than zero."));
    }
    if qty.normalize().scale() > s.quantity_precision {
        return Err(Reply::error(
            400,
            -1111,
            "Precision is over the maximum defined for this asset.",
        ));
    }
    let (min, max, step) = (dec(lot[0]), dec(lot[1]), dec(lot[2]));
    if qty < min {
        return Err(Reply::error(400, -4004, "Quantity less than min quantity."));
    }
    if qty > max {
        return Err(Reply::error(
            400,
            -4005,
            "Quantity greater than max quantity.",
        ));
    }
    if !((qty - min) % step).is_zero() {
        return Err(Reply::error(400, -4023, "Qty not increased by step size."));
    }
    Ok(qty)
}

/// A price parameter against the symbol's precision and PRICE_FILTER.
fn price_param(p: &Params, name: &str, s: &SymbolSpec) -> Result<Decimal, Reply> {
    let price: Decimal = param(p, name)
        .ok_or_else(|| mandatory(name))?
        .parse()
        .map_err(|_| mandatory(name))?;
    if price <= Decimal::ZERO {
        return Err(Reply::error(400, -4006, "Stop price less than zero."));
    }
    if price.normalize().scale() > s.price_precision {
        return Err(Reply::error(
            400,
            -1111,
            "Precision is over the maximum defined for this asset.",
        ));
    }
    let (min, max, tick) = (dec(s.min_price), dec(s.max_price), dec(s.tick_size));
    if price < min {
        return Err(Reply::error(400, -4013, "Price less than min price."));
    }
    if price > max {
        return Err(Reply::error(
            400,
            -4007,
            "Stop price greater than max price.",
        ));
    }
    // (price - minPrice) % tickSize == 0
    if !((price - min) % tick).is_zero() {
        return Err(Reply::error(
            400,
            -4014,
            "Price not increased by tick size.",
        ));
    }
    Ok(price)
}

// ------------------------------------------------------------------------------------------------------------------
// Routing
// ------------------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ep {
    Ping,
    Time,
    ExchangeInfo,
    PremiumIndex,
    DualGet,
    DualPost,
    LeverageBracket,
    Leverage,
    MarginType,
    PositionMargin,
    OrderPost,
    OrderGet,
    OrderDelete,
    AllOpenOrdersDelete,
    OpenOrders,
    UserTrades,
    PositionRisk,
    Balance,
    AlgoPost,
    AlgoDelete,
    AlgoGet,
    OpenAlgo,
    ListenKeyPost,
    ListenKeyPut,
    ListenKeyDelete,
}

enum Security {
    None,
    UserStream,
    Signed,
}

fn route(method: &str, path: &str) -> Option<Ep> {
    Some(match (method, path) {
        ("GET", "/fapi/v1/ping") => Ep::Ping,
        ("GET", "/fapi/v1/time") => Ep::Time,
        ("GET", "/fapi/v1/exchangeInfo") => Ep::ExchangeInfo,
        ("GET", "/fapi/v1/premiumIndex") => Ep::PremiumIndex,
        ("GET", "/fapi/v1/positionSide/dual") => Ep::DualGet,
        ("GET", "/fapi/v1/leverageBracket") => Ep::LeverageBracket,
        ("POST", "/fapi/v1/positionSide/dual") => Ep::DualPost,
        ("POST", "/fapi/v1/leverage") => Ep::Leverage,
        ("POST", "/fapi/v1/marginType") => Ep::MarginType,
        ("POST", "/fapi/v1/positionMargin") => Ep::PositionMargin,
        ("POST", "/fapi/v1/order") => Ep::OrderPost,
        ("GET", "/fapi/v1/order") => Ep::OrderGet,
        ("DELETE", "/fapi/v1/order") => Ep::OrderDelete,
        ("DELETE", "/fapi/v1/allOpenOrders") => Ep::AllOpenOrdersDelete,
        ("GET", "/fapi/v1/openOrders") => Ep::OpenOrders,
        ("GET", "/fapi/v1/userTrades") => Ep::UserTrades,
        ("GET", "/fapi/v3/positionRisk") => Ep::PositionRisk,
        ("GET", "/fapi/v3/balance") => Ep::Balance,
        ("POST", "/fapi/v1/algoOrder") => Ep::AlgoPost,
        ("DELETE", "/fapi/v1/algoOrder") => Ep::AlgoDelete,
        ("GET", "/fapi/v1/algoOrder") => Ep::AlgoGet,
        ("GET", "/fapi/v1/openAlgoOrders") => Ep::OpenAlgo,
        ("POST", "/fapi/v1/listenKey") => Ep::ListenKeyPost,
        ("PUT", "/fapi/v1/listenKey") => Ep::ListenKeyPut,
        ("DELETE", "/fapi/v1/listenKey") => Ep::ListenKeyDelete,
        _ => return None,
    })
}

impl Ep {
    fn security(self) -> Security {
        match self {
            Ep::Ping | Ep::Time | Ep::ExchangeInfo | Ep::PremiumIndex => Security::None,
            Ep::ListenKeyPost | Ep::ListenKeyPut | Ep::ListenKeyDelete => Security::UserStream,
            _ => Security::Signed,
        }
    }

    /// The documented request weight (IP limit, X-MBX-USED-WEIGHT-1M).
    fn weight(self, has_symbol: bool) -> u32 {
        match self {
            // New Order and New Algo Order: "0 on IP rate limit".
            Ep::OrderPost | Ep::AlgoPost => 0,
            Ep::DualGet => 30,
            Ep::UserTrades | Ep::PositionRisk | Ep::Balance => 5,
            Ep::OpenOrders | Ep::OpenAlgo if !has_symbol => 40,
            Ep::PremiumIndex if !has_symbol => 10,
            _ => 1,
        }
    }
}

fn path_matches(pattern: &str, method: &str, path: &str) -> bool {
    match pattern.split_once(' ') {
        Some((m, p)) => m.eq_ignore_ascii_case(method) && p == path,
        None => pattern == path,
    }
}

// ------------------------------------------------------------------------------------------------------------------
// REST server
// ------------------------------------------------------------------------------------------------------------------

struct RestRequest {
    method: String,
    path: String,
    raw_query: String,
    raw_body: String,
    params: Params,
    api_key: Option<String>,
}

struct Reply {
    status: u16,
    body: String,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    fn error(status: u16, code: i64, msg: impl Into<String>) -> Reply {
        Reply::json(status, &json!({"code": code, "msg": msg.into()}))
    }

    /// What a proxy in front of the exchange sends: an HTML page (a 503 comes with an empty body).
    fn server_error(status: u16) -> Reply {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let (body, content_type) = if status == 503 {
            (String::new(), "text/html")
        } else {
            (
                format!(
                    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} \
                     {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
                ),
                "text/html",
            )
        };
        Reply {
            status,
            body,
            content_type,
            headers: Vec::new(),
        }
    }
}

async fn rest_handler(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let raw_query = req.query_string().to_string();
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let mut params = parse_form(&raw_query);
    params.extend(parse_form(&raw_body));
    let request = RestRequest {
        method: req.method().as_str().to_string(),
        path: req.path().to_string(),
        raw_query,
        raw_body,
        params,
        api_key: req
            .headers()
            .get("X-MBX-APIKEY")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let symbol = param(&request.params, "symbol").map(str::to_string);

    let (idx, delay) = {
        let mut st = lock(&shared);
        st.requests.push(RequestRecord {
            method: request.method.clone(),
            path: request.path.clone(),
            params: request.params.clone(),
            answered: 0,
        });
        let idx = st.requests.len() - 1;
        (
            idx,
            st.take_delay(&request.method, &request.path, symbol.as_deref()),
        )
    };
    if let Some(delay) = delay {
        actix_web::rt::time::sleep(delay).await;
    }
    let (reply, hold) = lock(&shared).process(&request, idx);
    if let Some(hold) = hold {
        actix_web::rt::time::sleep(hold).await;
    }

    let status = actix_web::http::StatusCode::from_u16(reply.status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.content_type(reply.content_type);
    for (name, value) in reply.headers {
        response.insert_header((name, value));
    }
    response.body(reply.body)
}

/// `application/x-www-form-urlencoded` (and query string) decoding.
fn parse_form(raw: &str) -> Params {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The raw query string or body without its `signature=` part.
fn strip_signature(raw: &str) -> String {
    raw.split('&')
        .filter(|pair| !pair.starts_with("signature="))
        .collect::<Vec<_>>()
        .join("&")
}

/// HMAC-SHA256 of `payload` keyed with `secret`, lowercase hex.
pub fn hmac_sha256_hex(secret: &str, payload: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

// ------------------------------------------------------------------------------------------------------------------
// WebSocket server
// ------------------------------------------------------------------------------------------------------------------

async fn ws_accept_loop(listener: tokio::net::TcpListener, shared: Shared) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                actix_web::rt::spawn(ws_connection(stream, shared.clone()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Which route a WebSocket upgrade asked for.
fn ws_route(path: &str, query: &str, listen_key: Option<&str>) -> Result<ConnKind, (u16, String)> {
    let q = parse_form(query);
    let split_streams = |s: &str| -> Vec<String> {
        s.split('/')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    let user = |key: Option<&str>, combined: bool| -> Result<ConnKind, (u16, String)> {
        match (key, listen_key) {
            (Some(k), Some(active)) if k == active => Ok(ConnKind::User {
                key: k.to_string(),
                combined,
                events: param(&q, "events").map(split_streams),
            }),
            _ => Err((
                400,
                r#"{"code":-1125,"msg":"This listenKey does not exist."}"#.to_string(),
            )),
        }
    };
    if path == "/market/stream" || path == "/market/stream/" {
        return Ok(ConnKind::Market {
            streams: param(&q, "streams").map(split_streams).unwrap_or_default(),
            combined: true,
        });
    }
    if let Some(rest) = path.strip_prefix("/market/ws") {
        return Ok(ConnKind::Market {
            streams: split_streams(rest),
            combined: false,
        });
    }
    if path == "/private/ws" || path == "/private/ws/" {
        return user(param(&q, "listenKey"), false);
    }
    if let Some(key) = path.strip_prefix("/private/ws/") {
        return user(Some(key), false);
    }
    if path == "/private/stream" || path == "/private/stream/" {
        return user(param(&q, "listenKey"), true);
    }
    Err((404, "Not Found".to_string()))
}

/// `btcusdt@markPrice` or `btcusdt@markPrice@1s` -> `BTCUSDT`.
fn mark_stream_symbol(stream: &str) -> Option<String> {
    let mut parts = stream.split('@');
    let symbol = parts.next()?;
    (parts.next()? == "markPrice").then(|| symbol.to_ascii_uppercase())
}

// The handshake callback's error type is tungstenite's (an HTTP response), large by nature.
#[allow(clippy::result_large_err)]
async fn ws_connection(stream: tokio::net::TcpStream, shared: Shared) {
    let mut chosen: Option<ConnKind> = None;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let st = lock(&shared);
        let refused = if st.streams_refused {
            Err((503, "Service Unavailable".to_string()))
        } else {
            ws_route(
                req.uri().path(),
                req.uri().query().unwrap_or(""),
                st.listen_key.as_deref(),
            )
        };
        match refused {
            Ok(kind) => {
                chosen = Some(kind);
                Ok(resp)
            }
            Err((status, body)) => {
                let mut refusal = ErrorResponse::new(Some(body));
                *refusal.status_mut() =
                    http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
                Err(refusal)
            }
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let Some(kind) = chosen else {
        return;
    };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut st = lock(&shared);
        let now = st.now();
        // One markPriceUpdate per subscribed stream on connect.
        if let ConnKind::Market { streams, combined } = &kind {
            for s in streams {
                if let Some(symbol) = mark_stream_symbol(s).filter(|sym| spec(sym).is_some()) {
                    let event = st.mark_price_event(&symbol, now);
                    let frame = if *combined {
                        json!({"stream": s, "data": event})
                    } else {
                        event
                    };
                    let _ = tx.send(WsCmd::Text(frame.to_string()));
                }
            }
        }
        let id = st.next_conn;
        st.next_conn += 1;
        st.conns.insert(
            id,
            Conn {
                kind,
                tx: tx.clone(),
            },
        );
        id
    };
    drop(tx);

    let (mut sink, mut source) = ws.split();
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(WsCmd::Text(text)) => {
                    if sink.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Some(WsCmd::Close) | None => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
            incoming = source.next() => match incoming {
                // tungstenite queues the pong itself; flushing sends it now.
                Some(Ok(Message::Ping(_))) => {
                    if sink.flush().await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    let answer = handle_ws_request(&shared, id, text.as_str());
                    if let Some(answer) = answer {
                        if sink.send(Message::text(answer)).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    let _ = sink.close().await;
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    lock(&shared).conns.remove(&id);
}

/// The live subscription requests of the market streams: SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS.
fn handle_ws_request(shared: &Shared, id: u64, text: &str) -> Option<String> {
    let request: Value = serde_json::from_str(text).ok()?;
    let method = request["method"].as_str()?.to_string();
    let req_id = request["id"].clone();
    let names: Vec<String> = request["params"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut st = lock(shared);
    let now = st.now();
    let mut initial = Vec::new();
    let result = match st.conns.get_mut(&id).map(|c| &mut c.kind) {
        Some(ConnKind::Market { streams, .. }) => match method.as_str() {
            "SUBSCRIBE" => {
                for n in names {
                    if !streams.contains(&n) {
                        if let Some(symbol) = mark_stream_symbol(&n).filter(|s| spec(s).is_some()) {
                            initial.push(symbol);
                        }
                        streams.push(n);
                    }
                }
                Value::Null
            }
            "UNSUBSCRIBE" => {
                streams.retain(|s| !names.contains(s));
                Value::Null
            }
            "LIST_SUBSCRIPTIONS" => json!(streams),
            _ => {
                return Some(
                    json!({"error": {"code": 2, "msg": "Invalid request"}, "id": req_id})
                        .to_string(),
                )
            }
        },
        _ => return None,
    };
    for symbol in initial {
        st.push_mark(&symbol, now);
    }
    Some(json!({"result": result, "id": req_id}).to_string())
}

// ------------------------------------------------------------------------------------------------------------------
// Small helpers
// ------------------------------------------------------------------------------------------------------------------

fn local_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// 64 hex characters, different on every call (API keys, listenKeys).
fn random_hex(label: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    hasher.update(nanos.to_le_bytes());
    hasher.update(SEQ.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hex::encode(hasher.finalize())
}

/// Exactly `dp` decimals.
fn fmt_fixed(d: Decimal, dp: u32) -> String {
    let mut r = d.round_dp(dp);
    r.rescale(dp);
    if r.is_zero() {
        r.set_sign_positive(true);
    }
    r.to_string()
}

/// At most 8 decimals, at least `min_dp`, trailing zeros dropped past that.
fn fmt_min(d: Decimal, min_dp: u32) -> String {
    let mut r = d.round_dp(8).normalize();
    if r.scale() < min_dp {
        r.rescale(min_dp);
    }
    if r.is_zero() {
        r.set_sign_positive(true);
    }
    r.to_string()
}
