//! The ledger actor: the one owner of the account's state. It follows the event log, folds every durable event into
//! the `Ledger`, and publishes a read-only `View` after each batch; strategies, risk and the API read that view and
//! never the state itself. It also stores checkpoints, so a restart folds only what came after the last one.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use rust_decimal::Decimal;
use tokio::sync::watch;
use tracing::{error, warn};

use crate::event::{Offset, Stamped};
use crate::exits::ArmedExits;
use crate::ledger::Ledger;
use crate::limits::LimitsState;
use crate::log::{tail, EventLog, LogError};
use crate::messages::Checkpoint;
use crate::order::OrderRequest;
use crate::portfolio::Portfolio;
use crate::risk::TradingState;
use crate::supervise::guard;
use crate::types::{ClientOrderId, Symbol, Timestamp};

/// Events read per batch while following the log.
const BATCH: usize = 1024;

/// What readers see of the ledger, as of `upto`.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// The last event counted in.
    pub upto: Offset,
    pub portfolio: Portfolio,
    /// Signals acknowledged and not finished, and when the oldest of them arrived.
    pub pending: usize,
    pub oldest_pending: Option<Timestamp>,
    /// What the account limits are judged on.
    pub limits: LimitsState,
    /// The stop loss and take profit resting per symbol: a stop move keeps the level it does not give.
    pub exits: BTreeMap<Symbol, ArmedExits>,
    /// Limit entries resting on the venue, by client order id.
    pub resting: BTreeMap<ClientOrderId, OrderRequest>,
    /// The kill switch as the log last set it; `None`: never changed, the configuration's holds.
    pub trading_state: Option<TradingState>,
    /// The signal whose entry opened each open position.
    pub opened_by: BTreeMap<Symbol, crate::types::SignalId>,
}

impl View {
    pub fn of(ledger: &Ledger) -> View {
        let (pending, oldest_pending) = ledger.backlog();
        View {
            upto: ledger.upto,
            portfolio: ledger.portfolio.clone(),
            pending,
            oldest_pending,
            limits: ledger.limits.clone(),
            exits: ledger.exits.clone(),
            resting: ledger.resting.clone(),
            trading_state: ledger.trading_state,
            opened_by: ledger.opened_by.clone(),
        }
    }

    /// The initial margin the resting limit entries reserve, as a venue holds it for open orders: each one's
    /// notional at its limit price over its leverage. `except` (an order placed again after a restart) is left out.
    pub fn resting_margin(&self, except: &ClientOrderId) -> Decimal {
        self.resting
            .values()
            .filter(|o| &o.client_order_id != except)
            .map(|o| {
                let notional = o.reference_price.get().saturating_mul(o.quantity.get());
                crate::portfolio::initial_margin(notional, o.leverage)
            })
            .fold(Decimal::ZERO, Decimal::saturating_add)
    }
}

/// Readers' handle on the published view.
pub type ViewRx = watch::Receiver<Arc<View>>;

/// Waits until the view counts everything up to `offset` (a fill this reader caused), and returns it.
pub async fn view_after(view: &mut ViewRx, offset: Offset) -> Arc<View> {
    if let Ok(v) = view.wait_for(|v| v.upto >= offset).await {
        return v.clone();
    }
    // The ledger actor is gone (shutdown): the last view is all there is.
    let last = view.borrow().clone();
    last
}

pub struct LedgerActor {
    ledger: Ledger,
    log: Arc<dyn EventLog>,
    publish: watch::Sender<Arc<View>>,
    checkpoint_every: u64,
    since_checkpoint: u64,
}

impl LedgerActor {
    /// Starts from `ledger` (the last checkpoint with the log folded onto it) and publishes on the returned
    /// receiver.
    pub fn new(ledger: Ledger, log: Arc<dyn EventLog>, checkpoint_every: u64) -> (Self, ViewRx) {
        let (publish, view) = watch::channel(Arc::new(View::of(&ledger)));
        let actor = Self {
            ledger,
            log,
            publish,
            checkpoint_every,
            since_checkpoint: 0,
        };
        (actor, view)
    }

    fn checkpoint(&mut self) {
        self.log
            .checkpoint(self.ledger.upto, self.ledger.to_checkpoint());
        self.since_checkpoint = 0;
    }
}

impl Actor for LedgerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Also after a restart by the supervisor: it resumes right after what it has folded.
        ctx.add_stream(tail(self.log.clone(), self.ledger.upto.next(), BATCH));
    }
}

impl Supervised for LedgerActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        warn!(upto = %self.ledger.upto, "ledger actor restarted with its state");
    }
}

impl StreamHandler<Result<Vec<Stamped>, LogError>> for LedgerActor {
    fn handle(&mut self, batch: Result<Vec<Stamped>, LogError>, ctx: &mut Context<Self>) {
        let events = match batch {
            Ok(events) => events,
            Err(e) => {
                // Reading failed (I/O): the stream ends; restart to follow again from where the ledger is.
                error!(error = %e, "ledger could not read the log; restarting");
                ctx.stop();
                return;
            }
        };
        for stamped in &events {
            if let Err(panic) = guard(|| self.ledger.apply(stamped)) {
                // The fold never panics by construction (checked arithmetic); if it did, one event is skipped
                // rather than the ledger stopping for good.
                error!(offset = %stamped.offset, %panic, "an event could not be folded into the ledger");
            }
        }
        self.since_checkpoint += events.len() as u64;
        self.publish.send_replace(Arc::new(View::of(&self.ledger)));
        if self.since_checkpoint >= self.checkpoint_every {
            self.checkpoint();
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The log stopped (shutdown): nothing more to follow.
    }
}

impl Handler<Checkpoint> for LedgerActor {
    type Result = MessageResult<Checkpoint>;

    fn handle(&mut self, _msg: Checkpoint, _ctx: &mut Context<Self>) -> Self::Result {
        if self.since_checkpoint > 0 {
            self.checkpoint();
        }
        MessageResult(self.ledger.upto)
    }
}
