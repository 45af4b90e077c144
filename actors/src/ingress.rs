//! The ingress actor: where an authenticated webhook enters the graph. It admits the signal (or sheds it), appends
//! its acceptance to the log, and hands it to its symbol's strategy, all in one place so that the log's order is the
//! order each strategy sees. The HTTP edge answers the sender once the receipt says the signal is durable.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::Semaphore;

use crate::event::Event;
use crate::log::{EventLog, Receipt};
use crate::messages::{Admit, AdmitError, SignalReceived};
use crate::router::Strategies;

/// The bound on accepted-but-unfinished signals, readable from anywhere.
#[derive(Clone, Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl Admission {
    pub fn new(limit: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Signals admitted and not finished.
    pub fn in_use(&self) -> usize {
        self.limit - self.slots.available_permits()
    }

    /// A slot, if one is free.
    pub fn try_take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

pub struct IngressActor {
    log: Arc<dyn EventLog>,
    strategies: Strategies,
    admission: Admission,
}

impl IngressActor {
    pub fn new(log: Arc<dyn EventLog>, strategies: Strategies, admission: Admission) -> Self {
        Self {
            log,
            strategies,
            admission,
        }
    }
}

impl Actor for IngressActor {
    type Context = Context<Self>;
}

impl Supervised for IngressActor {}

impl Handler<Admit> for IngressActor {
    type Result = MessageResult<Admit>;

    fn handle(&mut self, msg: Admit, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.admit(msg))
    }
}

impl IngressActor {
    fn admit(&mut self, msg: Admit) -> Result<Receipt, AdmitError> {
        let Admit {
            signal,
            delivery,
            arrived,
        } = msg;
        // Nothing is recorded past the bound: a sender is never told "accepted" for what cannot be processed soon.
        let slot = self.admission.try_take().ok_or(AdmitError::Busy {
            pending: self.admission.in_use(),
        })?;
        let strategy =
            self.strategies
                .get(&signal.symbol)
                .ok_or_else(|| AdmitError::NoStrategy {
                    symbol: signal.symbol.clone(),
                })?;
        let receipt = self.log.try_append(vec![Event::SignalAccepted {
            signal: signal.clone(),
            delivery,
        }])?;
        // The mailbox holds at least as many signals as there are slots, so this cannot be full; the strategy acts
        // only once the receipt says the signal is durable.
        let handed = strategy.try_send(SignalReceived {
            signal,
            accepted: receipt.clone(),
            admission: Some(slot),
            recovered: None,
            arrived: Some(arrived),
        });
        if let Err(e) = handed {
            // Recorded but not handed over: it is processed at the next start, like any unfinished signal.
            tracing::error!(error = %e, "an accepted signal could not be handed to its strategy");
        }
        Ok(receipt)
    }
}
