//! The supervised actor that runs one symbol's `StrategyBook`, one signal at a time.

use std::sync::Arc;

use actix::prelude::*;
use tracing::{error, info, warn};

use crate::messages::{FindFill, PriceUpdate, Propose, SignalReceived};
use crate::order::{OrderOutcome, OrderRequest, SignalOutcome};
use crate::portfolio::SharedPortfolio;
use crate::recorder::Recorder;
use crate::signal::Signal;
use crate::strategy::book::{Decision, MarketView, StrategyBook};
use crate::supervise::guard;

pub struct StrategyActor {
    book: StrategyBook,
    portfolio: SharedPortfolio,
    risk: Recipient<Propose>,
    prices: Recipient<PriceUpdate>,
    fills: Recipient<FindFill>,
    recorder: Arc<dyn Recorder>,
    /// How often this actor was restarted after a panic.
    restarts: u32,
}

impl StrategyActor {
    pub fn new(
        book: StrategyBook,
        portfolio: SharedPortfolio,
        risk: Recipient<Propose>,
        prices: Recipient<PriceUpdate>,
        fills: Recipient<FindFill>,
        recorder: Arc<dyn Recorder>,
    ) -> Self {
        Self {
            book,
            portfolio,
            risk,
            prices,
            fills,
            recorder,
            restarts: 0,
        }
    }

    fn view(&self) -> MarketView {
        let portfolio = self.portfolio.read().unwrap_or_else(|e| e.into_inner());
        let symbol = self.book.symbol();
        MarketView {
            position: portfolio.position_quantity(symbol),
            equity: portfolio.equity(),
            last_price: portfolio.last_price(symbol),
        }
    }

    /// Decides on a signal; a panic is recorded as the signal's outcome and restarts the actor. Reading the
    /// portfolio is inside the guard too: a panic there must not take the actor and its mailbox down.
    fn decide(&mut self, signal: &Signal, ctx: &mut Context<Self>) -> Option<Vec<OrderRequest>> {
        let was_paused = self.book.is_paused();
        match guard(|| {
            let view = self.view();
            self.book.on_signal(signal, &view)
        }) {
            Ok(Decision::Orders(orders)) => Some(orders),
            Ok(Decision::Deny(reason)) => {
                info!(symbol = %signal.symbol, signal_id = %signal.id, %reason, "signal denied");
                let outcome = SignalOutcome::Denied {
                    reason,
                    orders: Vec::new(),
                };
                self.recorder.signal_finished(signal, &outcome);
                None
            }
            Ok(Decision::Ignore(reason)) => {
                if self.book.is_paused() != was_paused {
                    self.recorder
                        .strategy_state_changed(self.book.symbol(), self.book.is_paused());
                }
                self.recorder
                    .signal_finished(signal, &SignalOutcome::Ignored { reason });
                None
            }
            Err(panic) => {
                error!(symbol = %signal.symbol, signal_id = %signal.id, %panic, "strategy panicked; restarting it");
                self.recorder.signal_finished(
                    signal,
                    &SignalOutcome::Failed {
                        error: format!("strategy failed and was restarted: {panic}"),
                    },
                );
                ctx.stop();
                None
            }
        }
    }
}

impl Actor for StrategyActor {
    type Context = Context<Self>;
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
        let SignalReceived { signal, decided } = msg;
        let price_update = signal.price.map(|price| {
            self.prices.send(PriceUpdate {
                symbol: signal.symbol.clone(),
                price,
            })
        });
        let fut = async move {
            if let Some(update) = price_update {
                if let Err(e) = update.await {
                    warn!(error = %e, "price update did not reach the exchange actor");
                }
            }
        }
        .into_actor(self)
        .then(move |_, act, ctx| {
            // After a restart, the orders decided before the crash are placed again: the exchange knows their
            // client order ids, so those that filled are not filled twice.
            let (orders, already_durable) = match decided {
                Some(orders) => (Some(orders), true),
                None => (act.decide(&signal, ctx), false),
            };
            let (risk, fills) = (act.risk.clone(), act.fills.clone());
            let recorder = act.recorder.clone();
            async move {
                let Some(orders) = orders else { return };
                if !already_durable {
                    if let Err(e) = recorder.decided(&signal, &orders).await {
                        error!(signal_id = %signal.id, error = %e, "decision not durable; nothing ordered");
                        let outcome = SignalOutcome::Failed { error: e.to_string() };
                        recorder.signal_finished(&signal, &outcome);
                        return;
                    }
                }
                let outcome = place(&risk, &fills, orders, already_durable).await;
                info!(symbol = %signal.symbol, signal_id = %signal.id, status = outcome.status(), "signal done");
                recorder.signal_finished(&signal, &outcome);
            }
            .into_actor(act)
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

/// Proposes a signal's orders one after the other; stops at the first that does not fill, since later legs (the
/// open after a close) assume it did.
async fn place(
    risk: &Recipient<Propose>,
    fills: &Recipient<FindFill>,
    orders: Vec<OrderRequest>,
    recovered: bool,
) -> SignalOutcome {
    let mut outcomes = Vec::with_capacity(orders.len());
    for order in orders {
        // A recovered order may have filled before the crash: then it is done, and risk, which judges orders
        // against the current position, must not see it as new.
        let known = if recovered {
            let asked = FindFill {
                client_order_id: order.client_order_id.clone(),
            };
            fills.send(asked).await.ok().flatten()
        } else {
            None
        };
        let outcome = match known {
            Some(fill) => OrderOutcome::Filled { order, fill },
            None => match risk
                .send(Propose {
                    order: order.clone(),
                })
                .await
            {
                Ok(outcome) => outcome,
                Err(e) => OrderOutcome::Rejected {
                    order,
                    error: format!("risk actor unavailable: {e}"),
                },
            },
        };
        let filled = matches!(outcome, OrderOutcome::Filled { .. });
        outcomes.push(outcome);
        if !filled {
            break;
        }
    }
    SignalOutcome::from_orders(outcomes)
}
