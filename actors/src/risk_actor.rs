//! The risk actor: checks each proposed order against the published ledger view and hands approved ones to the
//! exchange actor. It owns the trading state (the kill switch).

use std::sync::Arc;

use actix::prelude::*;
use tracing::{error, info};

use crate::event::{Event, Verdict};
use crate::ledger_actor::ViewRx;
use crate::log::{EventLog, LogError};
use crate::messages::{Execute, GetTradingState, Placed, Propose, SetTradingState};
use crate::order::OrderOutcome;
use crate::risk::{Exposure, RiskEngine, TradingState};
use crate::supervise::guard;
use crate::venue::VenueError;

pub struct RiskActor {
    engine: RiskEngine,
    view: ViewRx,
    exchange: Recipient<Execute>,
    log: Arc<dyn EventLog>,
}

impl RiskActor {
    pub fn new(
        engine: RiskEngine,
        view: ViewRx,
        exchange: Recipient<Execute>,
        log: Arc<dyn EventLog>,
    ) -> Self {
        Self {
            engine,
            view,
            exchange,
            log,
        }
    }
}

impl Actor for RiskActor {
    type Context = Context<Self>;
}

impl Supervised for RiskActor {}

impl Handler<Propose> for RiskActor {
    // Not atomic: a slow venue call for one symbol does not hold up the checks of another's orders.
    type Result = ResponseFuture<Placed>;

    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) -> Self::Result {
        let order = msg.order;
        let checked = guard(|| {
            let exposure = Exposure::of(&self.view.borrow().portfolio, &order.symbol);
            self.engine.check(order.clone(), exposure)
        });
        let checked = match checked {
            Ok(checked) => checked,
            Err(panic) => {
                error!(%panic, "risk check panicked; restarting the risk actor");
                ctx.stop();
                let error = VenueError::Unavailable {
                    detail: "the risk check failed; the risk actor restarted".into(),
                };
                return Box::pin(async move {
                    Placed {
                        outcome: OrderOutcome::Rejected { order, error },
                        recorded: None,
                    }
                });
            }
        };
        let verdict = match &checked {
            Ok(_) => Verdict::Approved,
            Err(reason) => Verdict::Denied {
                reason: reason.clone(),
            },
        };
        // Not waited for: what the order led to, which is, comes after it in the log.
        let _ = self.log.append(vec![Event::RiskChecked {
            order: order.clone(),
            verdict,
        }]);
        match checked {
            Err(reason) => {
                info!(symbol = %order.symbol, client_order_id = %order.client_order_id, %reason, "order denied");
                Box::pin(async move {
                    Placed {
                        outcome: OrderOutcome::Denied { order, reason },
                        recorded: None,
                    }
                })
            }
            Ok(approved) => {
                let sent = self.exchange.send(Execute { order: approved });
                Box::pin(async move {
                    match sent.await {
                        Ok(Ok((fill, recorded))) => Placed {
                            outcome: OrderOutcome::Filled { order, fill },
                            recorded,
                        },
                        Ok(Err(error)) => Placed {
                            outcome: OrderOutcome::Rejected { order, error },
                            recorded: None,
                        },
                        Err(e) => Placed {
                            outcome: OrderOutcome::Rejected {
                                order,
                                error: VenueError::Unavailable {
                                    detail: format!("exchange actor unavailable: {e}"),
                                },
                            },
                            recorded: None,
                        },
                    }
                })
            }
        }
    }
}

impl Handler<SetTradingState> for RiskActor {
    /// Resolves once the new state is durable, so a kill switch that was answered stays on after a restart.
    /// Tightening (reducing, halted) takes effect at once, even before it is recorded; loosening back to active
    /// only once it is recorded, so a restart can never come back looser than what the operator was told.
    type Result = AtomicResponse<Self, Result<(), LogError>>;

    fn handle(&mut self, msg: SetTradingState, _ctx: &mut Context<Self>) -> Self::Result {
        let state = msg.state;
        let tightening = state != TradingState::Active;
        if tightening {
            info!(from = %self.engine.state(), to = %state, "trading state changed");
            self.engine.set_state(state);
        }
        let receipt = self.log.append(vec![Event::TradingStateChanged { state }]);
        AtomicResponse::new(Box::pin(
            async move { receipt.durable().await.map(|_| ()) }
                .into_actor(self)
                .map(move |result, act, _| {
                    if result.is_ok() && !tightening {
                        info!(from = %act.engine.state(), to = %state, "trading state changed");
                        act.engine.set_state(state);
                    }
                    result
                }),
        ))
    }
}

impl Handler<GetTradingState> for RiskActor {
    type Result = MessageResult<GetTradingState>;

    fn handle(&mut self, _msg: GetTradingState, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.engine.state())
    }
}
