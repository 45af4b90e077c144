//! The strategies: one supervised actor per configured symbol, and the way to a symbol's actor.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::ledger_actor::ViewRx;
use crate::messages::SignalReceived;
use crate::strategy::{Downstream, StrategyActor, StrategyBook};
use crate::types::Symbol;

/// Cheap to clone: it holds only actor addresses.
#[derive(Clone)]
pub struct Strategies {
    actors: Arc<HashMap<Symbol, Addr<StrategyActor>>>,
}

impl Strategies {
    /// Starts one supervised strategy actor per symbol on `arbiter`, each with its book (settings and the state the
    /// log restored) and a mailbox of `mailbox` signals.
    pub fn start(
        arbiter: &ArbiterHandle,
        books: Vec<StrategyBook>,
        view: ViewRx,
        downstream: Downstream,
        mailbox: usize,
    ) -> Self {
        let actors = books
            .into_iter()
            .map(|book| {
                let symbol = book.symbol().clone();
                let (view, downstream) = (view.clone(), downstream.clone());
                let addr = Supervisor::start_in_arbiter(arbiter, move |_| {
                    StrategyActor::new(book, view, downstream, mailbox)
                });
                (symbol, addr)
            })
            .collect();
        Self {
            actors: Arc::new(actors),
        }
    }

    /// Hands a symbol's new settings to its strategy (a configuration reload), waiting for room in its mailbox;
    /// false when the symbol has no running strategy.
    pub async fn update(&self, settings: crate::strategy::SymbolSettings) -> bool {
        match self.get(&settings.symbol) {
            Some(addr) => addr
                .send(crate::messages::UpdateSettings(settings))
                .await
                .is_ok(),
            None => false,
        }
    }

    pub fn get(&self, symbol: &Symbol) -> Option<&Addr<StrategyActor>> {
        self.actors.get(symbol).filter(|addr| addr.connected())
    }

    /// Hands a signal recovered at start-up to its strategy, past the mailbox's bound: there are at most as many as
    /// were admitted before the restart.
    pub fn recover(&self, msg: SignalReceived) -> bool {
        match self.get(&msg.signal.symbol) {
            Some(addr) => {
                addr.do_send(msg);
                true
            }
            None => false,
        }
    }
}
