//! The router: owns one supervised strategy actor per configured symbol and hands each signal to its symbol's actor.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use thiserror::Error;

use crate::messages::{FindFill, PriceUpdate, Propose, SignalReceived};
use crate::order::OrderRequest;
use crate::portfolio::SharedPortfolio;
use crate::recorder::Recorder;
use crate::signal::Signal;
use crate::strategy::{StrategyActor, StrategyBook};
use crate::types::Symbol;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DispatchError {
    #[error("no strategy runs for {0}")]
    UnknownSymbol(Symbol),
    #[error("the strategy for {0} is not accepting signals")]
    Closed(Symbol),
}

/// Cheap to clone and safe to share between HTTP workers: it holds only actor addresses.
#[derive(Clone)]
pub struct Router {
    strategies: Arc<HashMap<Symbol, Addr<StrategyActor>>>,
}

impl Router {
    /// Starts one supervised strategy actor per symbol on `arbiter`, each with its book (settings and the state the
    /// journal restored).
    pub fn start(
        arbiter: &ArbiterHandle,
        books: Vec<StrategyBook>,
        portfolio: SharedPortfolio,
        risk: Recipient<Propose>,
        prices: Recipient<PriceUpdate>,
        fills: Recipient<FindFill>,
        recorder: Arc<dyn Recorder>,
    ) -> Self {
        let strategies = books
            .into_iter()
            .map(|book| {
                let symbol = book.symbol().clone();
                let (portfolio, risk, prices, fills, recorder) = (
                    portfolio.clone(),
                    risk.clone(),
                    prices.clone(),
                    fills.clone(),
                    recorder.clone(),
                );
                let addr = Supervisor::start_in_arbiter(arbiter, move |_| {
                    StrategyActor::new(book, portfolio, risk, prices, fills, recorder)
                });
                (symbol, addr)
            })
            .collect();
        Self {
            strategies: Arc::new(strategies),
        }
    }

    /// Queues `signal` behind the earlier signals of its symbol.
    pub fn dispatch(&self, signal: Signal) -> Result<(), DispatchError> {
        self.dispatch_decided(signal, None)
    }

    /// Queues a signal recovered after a restart, with the orders decided for it before the crash, if any.
    pub fn dispatch_decided(
        &self,
        signal: Signal,
        decided: Option<Vec<OrderRequest>>,
    ) -> Result<(), DispatchError> {
        let addr = self
            .strategies
            .get(&signal.symbol)
            .ok_or_else(|| DispatchError::UnknownSymbol(signal.symbol.clone()))?;
        if !addr.connected() {
            return Err(DispatchError::Closed(signal.symbol.clone()));
        }
        // Queued whatever the mailbox's capacity: a signal that reached here is durable and must not be dropped,
        // and the ingress's rate limits bound how many can arrive.
        addr.do_send(SignalReceived { signal, decided });
        Ok(())
    }
}
