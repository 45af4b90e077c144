//! The risk actor: checks each proposed order and hands approved ones to the exchange actor.

use std::sync::Arc;

use actix::prelude::*;
use tracing::{error, info};

use crate::messages::{Execute, GetTradingState, Propose, SetTradingState};
use crate::order::OrderOutcome;
use crate::portfolio::SharedPortfolio;
use crate::recorder::{RecordError, Recorder};
use crate::risk::{Exposure, RiskEngine, TradingState};
use crate::supervise::guard;

pub struct RiskActor {
    engine: RiskEngine,
    portfolio: SharedPortfolio,
    exchange: Recipient<Execute>,
    recorder: Arc<dyn Recorder>,
}

impl RiskActor {
    pub fn new(
        engine: RiskEngine,
        portfolio: SharedPortfolio,
        exchange: Recipient<Execute>,
        recorder: Arc<dyn Recorder>,
    ) -> Self {
        Self {
            engine,
            portfolio,
            exchange,
            recorder,
        }
    }
}

impl Actor for RiskActor {
    type Context = Context<Self>;
}

impl Supervised for RiskActor {}

impl Handler<Propose> for RiskActor {
    type Result = ResponseFuture<OrderOutcome>;

    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) -> Self::Result {
        let order = msg.order;
        let checked = match guard(|| {
            let exposure = Exposure::of(
                &self.portfolio.read().unwrap_or_else(|e| e.into_inner()),
                &order.symbol,
            );
            self.engine.check(order.clone(), exposure)
        }) {
            Ok(checked) => checked,
            Err(panic) => {
                error!(%panic, "risk check panicked; restarting the risk actor");
                ctx.stop();
                let error = format!("risk check failed: {panic}");
                return Box::pin(async move { OrderOutcome::Rejected { order, error } });
            }
        };
        self.recorder.risk_checked(&order, checked.as_ref().err());
        match checked {
            Err(reason) => {
                info!(symbol = %order.symbol, client_order_id = %order.client_order_id, %reason, "order denied");
                Box::pin(async move { OrderOutcome::Denied { order, reason } })
            }
            Ok(approved) => {
                let sent = self.exchange.send(Execute { order: approved });
                Box::pin(async move {
                    match sent.await {
                        Ok(Ok(fill)) => OrderOutcome::Filled { order, fill },
                        Ok(Err(e)) => OrderOutcome::Rejected {
                            order,
                            error: e.to_string(),
                        },
                        Err(e) => OrderOutcome::Rejected {
                            order,
                            error: format!("exchange actor unavailable: {e}"),
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
    type Result = AtomicResponse<Self, Result<(), RecordError>>;

    fn handle(&mut self, msg: SetTradingState, _ctx: &mut Context<Self>) -> Self::Result {
        let state = msg.state;
        let tightening = state != TradingState::Active;
        if tightening {
            info!(from = %self.engine.state(), to = %state, "trading state changed");
            self.engine.set_state(state);
        }
        let recorded = self.recorder.trading_state_changed(state);
        AtomicResponse::new(Box::pin(recorded.into_actor(self).map(
            move |result, act, _| {
                if result.is_ok() && !tightening {
                    info!(from = %act.engine.state(), to = %state, "trading state changed");
                    act.engine.set_state(state);
                }
                result
            },
        )))
    }
}

impl Handler<GetTradingState> for RiskActor {
    type Result = MessageResult<GetTradingState>;

    fn handle(&mut self, _msg: GetTradingState, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.engine.state())
    }
}
