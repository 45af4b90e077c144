//! Binance USD-M futures behind the execution port: one account, one-way position mode, MARKET orders with the
//! journal's client order ids, and stop losses and take profits resting on the exchange as algo orders. Every call
//! whose outcome is unknown (a timeout, a 5xx, -1006, -1007, a duplicate id) is settled by looking the order up by
//! its client id, never by sending it again blindly. Fills of resting legs come from the user data stream, or from
//! polling REST while the stream is down. Funding rates, mark prices, positions and margin calls are queued as
//! observations for the event log (`observe`); isolated margin is added on request (`margin`).

mod brackets;
mod client;
mod margin;
mod observe;
mod orders;
mod reconcile;
pub mod rules;
mod streams;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use reqwest::Method;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use sentinel_actors::exits::ArmedExits;
use sentinel_actors::ledger::Ledger;
use sentinel_actors::order::{Fill, FillReason, OrderRequest};
use sentinel_actors::portfolio::Position;
use sentinel_actors::risk::Approved;
use sentinel_actors::types::{ClientOrderId, Price, Symbol, Timestamp};
use sentinel_actors::venue::{
    Balance, Execution, ExecutionReport, ExecutionVenue, Marks, OpenOrder, RejectReason,
    RuleViolation, VenueError, VenueFuture, VenuePosition,
};

use crate::config::{BinanceConfig, MarketData};
pub use client::{sign, Client};
use client::{CallError, Urgency};
pub use reconcile::Reconciliation;
use rules::ExchangeRules;

/// What the venue reports on its own, queued for the exchange actor at most this many.
const REPORTS: usize = 1024;
/// Exchange rules are read again this often (Binance changes filters and lists symbols).
const RULES_REFRESH: Duration = Duration::from_secs(24 * 60 * 60);

/// How the venue learns what happens on the exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedMode {
    #[default]
    Connecting,
    /// The WebSocket stream is open.
    Stream,
    /// The stream is down: REST is polled instead.
    Polling,
}

/// What the venue knows of the account between calls.
#[derive(Debug, Default)]
struct Book {
    /// Positions as the venue last told us, and as our fills moved them since.
    positions: HashMap<Symbol, Position>,
    /// Leverage set on the exchange, per symbol, since start.
    leverage: HashMap<Symbol, u32>,
    /// Symbols whose margin type was set since start.
    margin_set: HashSet<Symbol>,
    /// The stop loss and take profit resting for each position, as algo orders with these client ids.
    legs: HashMap<Symbol, ArmedExits>,
    /// Orders sent whose outcome could not be learned yet: looked up until it is, and reported.
    unresolved: HashMap<ClientOrderId, (Symbol, FillReason)>,
    /// Legs that fired and are being settled: out of `legs`, so only one settler reports them.
    taken: HashMap<Symbol, ArmedExits>,
}

impl Book {
    /// Books a fill on the symbol's position (the same arithmetic as the ledger's, so both measure levels from the
    /// same average entry); the position after it, and its average entry.
    fn apply(&mut self, fill: &Fill) -> (Decimal, Decimal) {
        let position = self.positions.entry(fill.symbol.clone()).or_default();
        position.apply(fill, None);
        (position.quantity, position.entry_price)
    }
}

#[derive(Clone, Debug, Default, Serialize)]
struct Feeds {
    user_data: FeedMode,
    market: FeedMode,
}

pub(crate) struct Inner {
    client: Arc<Client>,
    config: BinanceConfig,
    rules: RwLock<Arc<ExchangeRules>>,
    book: Mutex<Book>,
    feeds: Mutex<Feeds>,
    reconciliation: Mutex<Option<Reconciliation>>,
    reports: mpsc::Sender<ExecutionReport>,
    /// Symbols whose mark prices are followed.
    symbols: Vec<Symbol>,
    /// Their mark prices, published read-only.
    marks: watch::Sender<Marks>,
    /// Funding rates, mark prices, positions and margin calls, queued for the event log.
    observer: observe::Observer,
}

/// The Binance USD-M futures account.
pub struct BinanceFutures {
    inner: Arc<Inner>,
    /// Binance's maintenance margin brackets per symbol, read at start.
    pub brackets: HashMap<Symbol, Arc<[sentinel_actors::portfolio::Bracket]>>,
    reports: Mutex<Option<mpsc::Receiver<ExecutionReport>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for BinanceFutures {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Turns a call's failure into the port's terms.
fn venue_error(error: CallError) -> VenueError {
    match error {
        CallError::Unknown(detail) => VenueError::Unknown { detail },
        CallError::NotSent(detail) => VenueError::Unavailable { detail },
        CallError::Refused { code, msg, .. } => {
            VenueError::rejected(RejectReason::Venue { code, message: msg })
        }
        CallError::Paused { until_ms, why } => VenueError::rejected(RejectReason::Paused {
            until_ms: until_ms.max(0) as u64,
            why,
        }),
        CallError::Halted(why) => VenueError::rejected(RejectReason::Halted { why }),
    }
}

impl BinanceFutures {
    /// Connects: reads the exchange rules and the clock, checks the position mode (one-way only), reconciles the
    /// account with `ledger`, then follows the streams. Fails, and the daemon does not start, on anything that
    /// would make trading unsafe.
    pub async fn connect(
        config: &BinanceConfig,
        symbols: Vec<Symbol>,
        ledger: &Ledger,
    ) -> anyhow::Result<Self> {
        let endpoints = &config.endpoints;
        let client = Client::for_config(config)?;
        client.sync_clock().await.map_err(|e| {
            anyhow::anyhow!("Binance at {} cannot be reached: {e}", endpoints.rest_url)
        })?;
        let rules = load_rules(&client).await?;
        for symbol in &symbols {
            if let Err(violation) = rules.symbol(symbol) {
                warn!(%symbol, %violation, "a configured symbol cannot be traded on Binance; its orders will be refused");
            }
        }
        let dual = client
            .signed(
                Method::GET,
                "/fapi/v1/positionSide/dual",
                &[],
                Urgency::Exit,
            )
            .await
            .map_err(|e| anyhow::anyhow!("Binance refused to show the position mode: {e}"))?;
        if wire::flag(&dual, "dualSidePosition") {
            anyhow::bail!(
                "the Binance account is in hedge mode (dualSidePosition); Sentinel trades in one-way mode only. \
                 Switch it in the futures settings (Position Mode: One-way) with no open positions or orders, \
                 then start again"
            );
        }
        let brackets = brackets::load(&client, &symbols).await;
        let (sender, receiver) = mpsc::channel(REPORTS);
        let inner = Inner::new(client, config.clone(), rules, sender, symbols);
        streams::poll_marks(&inner, None).await;
        let reconciliation = reconcile::read(&inner, ledger).await?;
        reconciliation.log();
        *lock(&inner.reconciliation) = Some(reconciliation);
        let tasks = vec![
            tokio::spawn(streams::user_data(inner.clone())),
            tokio::spawn(streams::market(inner.clone())),
            tokio::spawn(streams::poll(inner.clone())),
            tokio::spawn(refresh_rules(inner.clone())),
        ];
        info!(rest = %endpoints.rest_url, ws = %endpoints.ws_url, "connected to Binance USD-M futures");
        Ok(Self {
            inner,
            brackets,
            reports: Mutex::new(Some(receiver)),
            tasks,
        })
    }

    /// What start-up found on the exchange and in the journal, for the log to record.
    pub fn reconciliation(&self) -> Option<Reconciliation> {
        lock(&self.inner.reconciliation).clone()
    }
}

async fn load_rules(client: &Client) -> anyhow::Result<ExchangeRules> {
    let info = client
        .public(Method::GET, "/fapi/v1/exchangeInfo", &[])
        .await
        .map_err(|e| anyhow::anyhow!("Binance's exchangeInfo cannot be read: {e}"))?;
    let body = serde_json::to_vec(&info)?;
    let rules =
        ExchangeRules::parse(&body).map_err(|e| anyhow::anyhow!("Binance's exchangeInfo: {e}"))?;
    client.set_limits(rules.limits());
    Ok(rules)
}

async fn refresh_rules(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(RULES_REFRESH).await;
        match load_rules(&inner.client).await {
            Ok(rules) => {
                *inner.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
                info!("Binance exchange rules refreshed");
            }
            Err(e) => {
                warn!(error = %e, "Binance exchange rules could not be refreshed; keeping the old ones")
            }
        }
    }
}

impl Inner {
    fn new(
        client: Arc<Client>,
        config: BinanceConfig,
        rules: ExchangeRules,
        reports: mpsc::Sender<ExecutionReport>,
        symbols: Vec<Symbol>,
    ) -> Arc<Self> {
        let observer = observe::Observer::new(symbols.clone(), config.mark_price_events);
        Arc::new(Self {
            client,
            config,
            rules: RwLock::new(Arc::new(rules)),
            book: Mutex::new(Book::default()),
            feeds: Mutex::new(Feeds::default()),
            reconciliation: Mutex::new(None),
            reports,
            symbols,
            marks: watch::channel(Marks::new()).0,
            observer,
        })
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }

    fn rules(&self) -> Arc<ExchangeRules> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn mark(&self, symbol: &Symbol) -> Option<Decimal> {
        self.marks.borrow().get(symbol).map(|p| p.get())
    }

    fn set_mark(&self, symbol: Symbol, price: Price) {
        self.marks.send_modify(|marks| {
            marks.insert(symbol, price);
        });
    }

    fn set_feed(&self, user_data: Option<FeedMode>, market: Option<FeedMode>) {
        let mut feeds = lock(&self.feeds);
        if let Some(mode) = user_data {
            if feeds.user_data != mode {
                info!(mode = ?mode, "Binance user data feed");
                feeds.user_data = mode;
            }
        }
        if let Some(mode) = market {
            if feeds.market != mode {
                info!(mode = ?mode, "Binance market data feed");
                feeds.market = mode;
            }
        }
    }

    fn feeds(&self) -> Feeds {
        lock(&self.feeds).clone()
    }

    /// Hands a report to the exchange actor; a full queue waits (the reports are fills: none may be dropped).
    async fn report(&self, report: ExecutionReport) {
        if self.reports.send(report).await.is_err() {
            warn!("the exchange actor is gone; a venue report was not delivered");
        }
    }
}

impl ExecutionVenue for BinanceFutures {
    fn name(&self) -> &'static str {
        super::BINANCE_FUTURES
    }

    fn submit(&self, order: Approved<OrderRequest>, _at: Timestamp) -> VenueFuture<Execution> {
        let inner = self.inner.clone();
        Box::pin(async move { orders::submit(&inner, order.get()).await })
    }

    fn cancel(&self, symbol: Symbol, client_order_id: ClientOrderId) -> VenueFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move { orders::cancel_leg(&inner, &symbol, &client_order_id).await })
    }

    fn move_exits(&self, symbol: Symbol, exits: ArmedExits) -> VenueFuture<ArmedExits> {
        let inner = self.inner.clone();
        Box::pin(async move { orders::move_exits(&inner, &symbol, exits).await })
    }

    fn query(&self, symbol: Symbol, client_order_id: ClientOrderId) -> VenueFuture<Option<Fill>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            match orders::look_up(&inner, &symbol, &client_order_id, FillReason::Signal).await {
                Ok(orders::Found::Filled(fill)) => Ok(Some(fill)),
                Ok(_) => Ok(None),
                Err(e) => Err(venue_error(e)),
            }
        })
    }

    fn open_orders(&self, symbol: Option<Symbol>) -> VenueFuture<Vec<OpenOrder>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            orders::open_legs(&inner, symbol.as_ref())
                .await
                .map_err(venue_error)
        })
    }

    fn positions(&self) -> VenueFuture<Vec<VenuePosition>> {
        let inner = self.inner.clone();
        Box::pin(async move { reconcile::positions(&inner).await.map_err(venue_error) })
    }

    fn balance(&self) -> VenueFuture<Balance> {
        let inner = self.inner.clone();
        Box::pin(async move { reconcile::balance(&inner).await.map_err(venue_error) })
    }

    /// Nothing: Binance has its own market data, and its stops fire on the exchange.
    fn mark(&self, _symbol: &Symbol, _price: Price, _at: Timestamp) -> Vec<ExecutionReport> {
        Vec::new()
    }

    fn reports(&self) -> Option<mpsc::Receiver<ExecutionReport>> {
        lock(&self.reports).take()
    }

    fn marks(&self) -> Option<watch::Receiver<Marks>> {
        Some(self.inner.marks.subscribe())
    }

    fn observations(&self) -> Option<mpsc::Receiver<sentinel_actors::event::Observation>> {
        self.inner.observer.take()
    }

    fn add_margin(&self, symbol: Symbol, amount: Decimal) -> VenueFuture<Decimal> {
        let inner = self.inner.clone();
        Box::pin(async move { margin::add(&inner, &symbol, amount).await })
    }

    /// `Null`: the exchange is itself the record.
    fn state(&self) -> Value {
        Value::Null
    }

    fn status(&self) -> Value {
        let feeds = self.inner.feeds();
        let standing = self.inner.client.standing();
        let book = self.inner.book();
        let legs: Vec<Value> = book
            .legs
            .iter()
            .map(|(symbol, legs)| {
                json!({
                    "symbol": symbol,
                    "stop_loss": legs.stop_loss.as_ref().map(|(p, id)| json!({"trigger": p, "client_algo_id": id})),
                    "take_profit": legs.take_profit.as_ref().map(|(p, id)| json!({"trigger": p, "client_algo_id": id})),
                })
            })
            .collect();
        json!({
            "feeds": feeds,
            "standing": standing,
            "resting_legs": legs,
            "unresolved_orders": book.unresolved.keys().collect::<Vec<_>>(),
            "reconciliation": lock(&self.inner.reconciliation).as_ref().map(Reconciliation::summary),
        })
    }
}

/// Paper trading on Binance's live mark prices and with its exchange rules: a dry run.
pub struct LiveMarket {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for LiveMarket {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl LiveMarket {
    /// Reads the rules from `endpoints` and follows the mark prices of `symbols`; every new mark is sent on `marks`.
    pub async fn connect(
        endpoints: &MarketData,
        symbols: Vec<Symbol>,
        marks: mpsc::Sender<(Symbol, Price)>,
    ) -> anyhow::Result<Self> {
        let config = BinanceConfig {
            endpoints: endpoints.clone(),
            api_key: crate::secret::Secret::new(Vec::new()),
            api_secret: crate::secret::Secret::new(Vec::new()),
            recv_window: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            margin_type: None,
            poll_interval: Duration::from_secs(1),
            mark_price_events: None,
        };
        let client = Client::for_config(&config)?;
        let rules = load_rules(&client).await?;
        let (sender, _unused) = mpsc::channel(1);
        let inner = Inner::new(client, config, rules, sender, symbols);
        streams::poll_marks(&inner, Some(&marks)).await;
        let tasks = vec![
            tokio::spawn(streams::market_to(inner.clone(), Some(marks))),
            tokio::spawn(refresh_rules(inner.clone())),
        ];
        Ok(Self { inner, tasks })
    }

    /// The quantity Binance would take for a market order, or why it would refuse it.
    pub fn market_quantity(
        &self,
        order: &OrderRequest,
        price: Decimal,
    ) -> Result<Decimal, RuleViolation> {
        self.inner.rules().symbol(&order.symbol)?.market_quantity(
            order.quantity.get(),
            price,
            order.reduce_only,
        )
    }

    pub fn mark(&self, symbol: &Symbol) -> Option<Decimal> {
        self.inner.mark(symbol)
    }

    pub fn marks(&self) -> watch::Receiver<Marks> {
        self.inner.marks.subscribe()
    }

    /// The market's funding rates (and marks, if asked for), as observations under `binance-futures`: taken once.
    pub fn observations(&self) -> Option<mpsc::Receiver<sentinel_actors::event::Observation>> {
        self.inner.observer.take()
    }

    pub fn status(&self) -> Value {
        json!({ "market_data": "binance-futures", "feeds": self.inner.feeds() })
    }
}
