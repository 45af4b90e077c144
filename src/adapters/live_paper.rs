//! Paper trading on a live market (a dry run): the paper book fills at Binance's mark price, with Binance's lot
//! steps, minimum notional and symbol status, and its stops and targets fire as the live mark crosses them. Prices in
//! signals are not used: the market's are.

use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use sentinel_actors::exits::ArmedExits;
use sentinel_actors::order::{Fill, OrderRequest};
use sentinel_actors::risk::Approved;
use sentinel_actors::signal::ExitLevel;
use sentinel_actors::types::{ClientOrderId, Price, Quantity, Symbol, Timestamp};
use sentinel_actors::venue::{
    Balance, Execution, ExecutionReport, ExecutionVenue, Marks, OpenOrder, RejectReason,
    VenueError, VenueFuture, VenuePosition,
};

use super::binance_futures::LiveMarket;
use super::paper::PaperVenue;
use crate::config::MarketData;

/// Marks and fills queued between the market feed and the exchange actor, at most.
const QUEUE: usize = 1024;

pub struct LivePaper {
    paper: Arc<PaperVenue>,
    market: LiveMarket,
    reports: Mutex<Option<mpsc::Receiver<ExecutionReport>>>,
    feeder: tokio::task::JoinHandle<()>,
}

impl Drop for LivePaper {
    fn drop(&mut self) {
        self.feeder.abort();
    }
}

impl LivePaper {
    pub async fn connect(
        market: &MarketData,
        symbols: Vec<Symbol>,
        paper: PaperVenue,
    ) -> anyhow::Result<Self> {
        let (marks_tx, mut marks) = mpsc::channel::<(Symbol, Price)>(QUEUE);
        let (reports_tx, reports) = mpsc::channel(QUEUE);
        let market = LiveMarket::connect(market, symbols, marks_tx).await?;
        let paper = Arc::new(paper);
        let book = paper.clone();
        // Every live mark moves the book; what it fires is reported like any venue's own fills.
        let feeder = tokio::spawn(async move {
            while let Some((symbol, price)) = marks.recv().await {
                for report in book.mark(&symbol, price, Timestamp::now()) {
                    if reports_tx.send(report).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Self {
            paper,
            market,
            reports: Mutex::new(Some(reports)),
            feeder,
        })
    }
}

impl ExecutionVenue for LivePaper {
    fn name(&self) -> &'static str {
        super::PAPER
    }

    fn submit(&self, order: Approved<OrderRequest>, at: Timestamp) -> VenueFuture<Execution> {
        let symbol = order.get().symbol.clone();
        // A trailing stop here would follow live marks the journal never sees, so after a restart the ledger would
        // restore it looser than it was: refused until those moves are journaled.
        if matches!(
            order.get().protection.stop_loss,
            Some(ExitLevel::Trailing(_))
        ) {
            return Box::pin(async {
                Err(VenueError::rejected(RejectReason::TrailingStopUnsupported))
            });
        }
        let Some(mark) = self.market.mark(&symbol) else {
            return Box::pin(
                async move { Err(VenueError::rejected(RejectReason::NoPrice { symbol })) },
            );
        };
        let quantity = self
            .market
            .market_quantity(order.get(), mark)
            .map_err(|violation| VenueError::rejected(RejectReason::Rule { violation }))
            .and_then(|q| {
                Quantity::new(q).map_err(|e| VenueError::Unavailable {
                    detail: e.to_string(),
                })
            });
        match quantity.map(|q| order.narrowed(q)) {
            Ok(Some(order)) => self.paper.submit(order, at),
            Ok(None) => Box::pin(async {
                Err(VenueError::Unavailable {
                    detail: "the rounded quantity exceeds the approved one".into(),
                })
            }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn cancel(&self, symbol: Symbol, client_order_id: ClientOrderId) -> VenueFuture<()> {
        self.paper.cancel(symbol, client_order_id)
    }

    /// The live market's funding rates, so funding rules can be tried on paper.
    fn observations(&self) -> Option<mpsc::Receiver<sentinel_actors::event::Observation>> {
        self.market.observations()
    }

    fn move_exits(&self, symbol: Symbol, exits: ArmedExits) -> VenueFuture<ArmedExits> {
        self.paper.move_exits(symbol, exits)
    }

    fn query(&self, symbol: Symbol, client_order_id: ClientOrderId) -> VenueFuture<Option<Fill>> {
        self.paper.query(symbol, client_order_id)
    }

    fn open_orders(&self, symbol: Option<Symbol>) -> VenueFuture<Vec<OpenOrder>> {
        self.paper.open_orders(symbol)
    }

    fn positions(&self) -> VenueFuture<Vec<VenuePosition>> {
        self.paper.positions()
    }

    fn balance(&self) -> VenueFuture<Balance> {
        self.paper.balance()
    }

    /// Signal prices do not move a live book.
    fn mark(&self, symbol: &Symbol, price: Price, _at: Timestamp) -> Vec<ExecutionReport> {
        if let Some(live) = self.market.mark(symbol) {
            let gap = (price.get() - live).abs();
            if live > Decimal::ZERO && gap / live > Decimal::new(5, 2) {
                warn!(%symbol, signal = %price, live = %live, "a signal's price is more than 5% from the live mark");
            }
        }
        Vec::new()
    }

    fn marks(&self) -> Option<watch::Receiver<Marks>> {
        Some(self.market.marks())
    }

    fn reports(&self) -> Option<mpsc::Receiver<ExecutionReport>> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn state(&self) -> Value {
        Value::Null
    }

    fn status(&self) -> Value {
        self.market.status()
    }
}
