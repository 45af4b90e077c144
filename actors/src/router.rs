//! The router: owns one supervised strategy actor per configured symbol and hands each signal to its symbol's actor.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use thiserror::Error;

use crate::messages::{PriceUpdate, Propose, SignalReceived};
use crate::portfolio::SharedPortfolio;
use crate::recorder::Recorder;
use crate::signal::Signal;
use crate::strategy::{StrategyActor, StrategyBook, SymbolSettings};
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
    /// Starts one supervised strategy actor per symbol on `arbiter`.
    pub fn start(
        arbiter: &ArbiterHandle,
        symbols: Vec<SymbolSettings>,
        portfolio: SharedPortfolio,
        risk: Recipient<Propose>,
        prices: Recipient<PriceUpdate>,
        recorder: Arc<dyn Recorder>,
    ) -> Self {
        let strategies = symbols
            .into_iter()
            .map(|settings| {
                let symbol = settings.symbol.clone();
                let (portfolio, risk, prices, recorder) = (
                    portfolio.clone(),
                    risk.clone(),
                    prices.clone(),
                    recorder.clone(),
                );
                let addr = Supervisor::start_in_arbiter(arbiter, move |_| {
                    StrategyActor::new(
                        StrategyBook::new(settings),
                        portfolio,
                        risk,
                        prices,
                        recorder,
                    )
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
        let addr = self
            .strategies
            .get(&signal.symbol)
            .ok_or_else(|| DispatchError::UnknownSymbol(signal.symbol.clone()))?;
        let symbol = signal.symbol.clone();
        addr.try_send(SignalReceived { signal })
            .map_err(|_| DispatchError::Closed(symbol))
    }
}
