//! The supervised actor that runs one symbol's `StrategyBook`, one signal at a time, in log order.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::event::{Event, Offset};
use crate::exits::ArmedExits;
use crate::latency::{Latencies, Span};
use crate::ledger_actor::{view_after, ViewRx};
use crate::log::EventLog;
use crate::messages::{
    FindFill, MoveExits, Placed, PriceUpdate, Propose, Recovered, SignalReceived, UpdateSettings,
};
use crate::order::{Failure, IgnoreReason, OrderOutcome, OrderRequest, SignalOutcome};
use crate::signal::Signal;
use crate::strategy::book::{Decision, MarketView, StrategyBook};
use crate::supervise::guard;
use crate::types::Price;
use crate::venue::Marks;

/// Where a signal goes after its strategy.
#[derive(Clone)]
pub struct Downstream {
    pub risk: Recipient<Propose>,
    pub prices: Recipient<PriceUpdate>,
    pub fills: Recipient<FindFill>,
    pub exits: Recipient<MoveExits>,
    pub log: Arc<dyn EventLog>,
    pub latencies: Arc<Latencies>,
    /// The venue's market prices, when it has its own: fresher than the last signal's price.
    pub marks: Option<watch::Receiver<Marks>>,
}

/// What a decided signal goes on to do.
enum Work {
    Orders(Vec<OrderRequest>),
    MoveExits(ArmedExits),
}

pub struct StrategyActor {
    book: StrategyBook,
    view: ViewRx,
    downstream: Downstream,
    /// Signals queued at most: the ingress admits no more than this many unfinished signals in all.
    mailbox: usize,
    /// How often this actor was restarted after a panic.
    restarts: u32,
}

impl StrategyActor {
    pub fn new(book: StrategyBook, view: ViewRx, downstream: Downstream, mailbox: usize) -> Self {
        Self {
            book,
            view,
            downstream,
            mailbox,
            restarts: 0,
        }
    }

    fn market(&self) -> MarketView {
        let view = self.view.borrow();
        let symbol = self.book.symbol();
        let position = view.portfolio.position_quantity(symbol);
        MarketView {
            position,
            equity: view.portfolio.equity(),
            entry_price: view
                .portfolio
                .positions
                .get(symbol)
                .filter(|_| !position.is_zero())
                .and_then(|p| Price::new(p.entry_price).ok()),
            exits: view.exits.get(symbol).cloned(),
            last_price: self
                .downstream
                .marks
                .as_ref()
                .and_then(|marks| marks.borrow().get(symbol).copied())
                .or_else(|| view.portfolio.last_price(symbol)),
        }
    }

    /// Decides on a signal: the orders to place, or how it ended. A panic restarts the actor.
    fn decide(&mut self, signal: &Signal, ctx: &mut Context<Self>) -> Result<Work, SignalOutcome> {
        let was_paused = self.book.is_paused();
        // Reading the view is inside the guard too: a panic there must not take the actor and its mailbox down.
        match guard(|| {
            let market = self.market();
            self.book.on_signal(signal, &market)
        }) {
            Ok(Decision::Orders(orders)) => Ok(Work::Orders(orders)),
            Ok(Decision::MoveExits(exits)) => Ok(Work::MoveExits(exits)),
            Ok(Decision::Deny(reason)) => {
                info!(symbol = %signal.symbol, signal_id = %signal.id, %reason, "signal denied");
                Err(SignalOutcome::Denied {
                    reason,
                    orders: Vec::new(),
                })
            }
            Ok(Decision::Ignore(reason)) => {
                if self.book.is_paused() != was_paused {
                    let _ = self
                        .downstream
                        .log
                        .append(vec![Event::StrategyStateChanged {
                            symbol: self.book.symbol().clone(),
                            paused: self.book.is_paused(),
                        }]);
                }
                Err(SignalOutcome::Ignored { reason })
            }
            Err(panic) => {
                error!(symbol = %signal.symbol, signal_id = %signal.id, %panic, "strategy panicked; restarting it");
                ctx.stop();
                Err(SignalOutcome::Failed {
                    error: Failure::StrategyPanicked { message: panic },
                })
            }
        }
    }
}

impl Actor for StrategyActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl Supervised for StrategyActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts += 1;
        warn!(symbol = %self.book.symbol(), restarts = self.restarts, "strategy actor restarted with its state");
    }
}

impl Handler<SignalReceived> for StrategyActor {
    // Atomic: the next signal of this symbol waits until this one's orders are done.
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: SignalReceived, _ctx: &mut Context<Self>) -> Self::Result {
        let SignalReceived {
            signal,
            accepted,
            admission,
            recovered,
            arrived,
        } = msg;
        let downstream = self.downstream.clone();
        let mut view = self.view.clone();
        let price = signal.price;
        let symbol = signal.symbol.clone();
        let tick = signal.id.clone();
        let fut = async move {
            // A signal whose acceptance was not recorded was refused to its sender: it never happened.
            if let Err(e) = accepted.durable().await {
                warn!(%symbol, error = %e, "signal not recorded; not acted on");
                return (false, Vec::new());
            }
            // The price first: a stop it crosses fires before the signal is decided on the position after it.
            let mut fired = Vec::new();
            if let Some(price) = price {
                let update = downstream.prices.send(PriceUpdate {
                    symbol: symbol.clone(),
                    price,
                    tick: Some(tick),
                });
                match update.await {
                    Ok(Some(triggered)) => {
                        view_after(&mut view, triggered.offset).await;
                        fired = triggered.fills;
                    }
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "price update did not reach the exchange actor"),
                }
            }
            (true, fired)
        }
        .into_actor(self)
        .then(move |(accepted, fired), act, ctx| {
            let signal_id = signal.id.clone();
            let decided = if !accepted {
                None
            } else {
                let was_recovered = recovered.is_some();
                Some(match recovered {
                    // After a restart, orders decided before it are placed again: the log and the venue know
                    // their client order ids, so those that filled are not filled twice.
                    Some(Recovered {
                        decided: Some(orders),
                        fills,
                    }) => Ok((Work::Orders(orders), fills, true, false)),
                    // A stop move records no decision: a restart decides it again on the ledger's exits, which
                    // gives the same legs (their ids come from the signal), and moving to them again changes
                    // nothing.
                    recovered => act.decide(&signal, ctx).map(|work| {
                        let fills = recovered.map(|r| r.fills).unwrap_or_default();
                        (work, fills, was_recovered, true)
                    }),
                })
            };
            let downstream = act.downstream.clone();
            let view = act.view.clone();
            async move {
                let Some(decided) = decided else { return };
                let outcome = match decided {
                    // A tick that fired a stop, a target or a limit entry says so.
                    Err(SignalOutcome::Ignored {
                        reason: IgnoreReason::PriceUpdate,
                    }) if !fired.is_empty() => SignalOutcome::Triggered { fills: fired },
                    Err(outcome) => outcome,
                    Ok((Work::MoveExits(exits), ..)) => {
                        move_exits(&downstream, view, &signal, exits).await
                    }
                    Ok((Work::Orders(orders), fills, recovered, record)) => {
                        if record {
                            let _ = downstream.log.append(vec![Event::Decided {
                                signal_id: signal.id.clone(),
                                symbol: signal.symbol.clone(),
                                orders: orders.clone(),
                            }]);
                        }
                        place(&downstream, view, orders, fills, recovered, arrived).await
                    }
                };
                // A tick or a no-op is routine; what traded or was refused is worth a line.
                if matches!(outcome, SignalOutcome::Ignored { .. }) {
                    debug!(symbol = %signal.symbol, %signal_id, status = outcome.status(), "signal done");
                } else {
                    info!(symbol = %signal.symbol, %signal_id, status = outcome.status(), "signal done");
                }
                let _ = downstream.log.append(vec![Event::SignalFinished {
                    signal_id,
                    symbol: signal.symbol.clone(),
                    outcome,
                }]);
                // Its admission slot is free once its outcome is queued.
                drop(admission);
            }
            .into_actor(act)
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

/// Has the venue move the symbol's exits and waits for the ledger to count the move, so the next signal sees the
/// legs resting.
async fn move_exits(
    downstream: &Downstream,
    mut view: ViewRx,
    signal: &Signal,
    exits: ArmedExits,
) -> SignalOutcome {
    let asked = MoveExits {
        symbol: signal.symbol.clone(),
        signal_id: signal.id.clone(),
        exits,
    };
    match downstream.exits.send(asked).await {
        Ok(Ok((exits, offset))) => {
            view_after(&mut view, offset).await;
            SignalOutcome::ExitsMoved { exits }
        }
        Ok(Err(error)) => SignalOutcome::Failed {
            error: Failure::ExitsNotMoved { error },
        },
        Err(_) => SignalOutcome::Failed {
            error: Failure::ActorUnavailable {
                actor: "exchange".into(),
            },
        },
    }
}

/// Places a signal's orders one after the other; stops at the first that does not fill, since later legs (the open
/// after a close) assume it did. Before each leg, waits for the ledger to count the fills so far, so risk checks
/// the position as it is.
async fn place(
    downstream: &Downstream,
    mut view: ViewRx,
    orders: Vec<OrderRequest>,
    fills: Vec<crate::order::Fill>,
    recovered: bool,
    arrived: Option<Instant>,
) -> SignalOutcome {
    let mut outcomes = Vec::with_capacity(orders.len());
    let mut counted = Offset::START;
    for order in orders {
        view_after(&mut view, counted).await;
        // A recovered order may have filled before the restart: then it is done, and risk, which judges orders
        // against the current position, must not see it as new.
        let known = fills
            .iter()
            .find(|f| f.client_order_id == order.client_order_id)
            .cloned();
        let placed = match known {
            Some(fill) => Placed {
                outcome: OrderOutcome::Filled { order, fill },
                recorded: None,
            },
            None => {
                let found = if recovered {
                    let asked = FindFill {
                        order: order.clone(),
                    };
                    downstream.fills.send(asked).await.ok().flatten()
                } else {
                    None
                };
                match found {
                    Some((fill, offset)) => Placed {
                        outcome: OrderOutcome::Filled { order, fill },
                        recorded: Some(offset),
                    },
                    None => {
                        let first = outcomes.is_empty();
                        match propose(downstream, order, arrived.filter(|_| first)).await {
                            Some(placed) => placed,
                            None => {
                                return SignalOutcome::Failed {
                                    error: Failure::ActorUnavailable {
                                        actor: "risk".into(),
                                    },
                                }
                            }
                        }
                    }
                }
            }
        };
        if let Some(offset) = placed.recorded {
            counted = counted.max(offset);
        }
        let filled = matches!(placed.outcome, OrderOutcome::Filled { .. });
        outcomes.push(placed.outcome);
        if !filled {
            break;
        }
    }
    // The next signal of this symbol is decided on a view that counts these fills.
    view_after(&mut view, counted).await;
    SignalOutcome::from_orders(outcomes)
}

/// Hands one order to risk (and through it to the venue); with `arrived`, records how long the signal took to its
/// order and to its fill. `None` if risk is gone.
async fn propose(
    downstream: &Downstream,
    order: OrderRequest,
    arrived: Option<Instant>,
) -> Option<Placed> {
    if let Some(arrived) = arrived {
        downstream
            .latencies
            .record(Span::SignalToOrder, arrived.elapsed());
    }
    let placed = downstream.risk.send(Propose { order }).await.ok()?;
    if let (Some(arrived), OrderOutcome::Filled { .. }) = (arrived, &placed.outcome) {
        downstream
            .latencies
            .record(Span::SignalToFill, arrived.elapsed());
    }
    Some(placed)
}

impl Handler<UpdateSettings> for StrategyActor {
    type Result = ();

    fn handle(&mut self, msg: UpdateSettings, _ctx: &mut Context<Self>) {
        if self.book.set_settings(msg.0) {
            info!(symbol = %self.book.symbol(), "strategy settings reloaded");
        }
    }
}
