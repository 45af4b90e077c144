//! The exchange actor: the one caller of the account's `Gateway`; it keeps the portfolio in step with the fills.

use std::sync::Arc;

use actix::prelude::*;
use tracing::{error, info, warn};

use crate::gateway::{Gateway, GatewayError};
use crate::messages::{Execute, PriceUpdate};
use crate::order::Fill;
use crate::portfolio::SharedPortfolio;
use crate::recorder::Recorder;
use crate::supervise::guard;
use crate::types::Timestamp;

pub struct ExchangeActor {
    gateway: Box<dyn Gateway>,
    portfolio: SharedPortfolio,
    recorder: Arc<dyn Recorder>,
}

impl ExchangeActor {
    pub fn new(
        gateway: Box<dyn Gateway>,
        portfolio: SharedPortfolio,
        recorder: Arc<dyn Recorder>,
    ) -> Self {
        Self {
            gateway,
            portfolio,
            recorder,
        }
    }

    fn book(&self, fill: &Fill) {
        self.portfolio
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply_fill(fill);
    }
}

impl Actor for ExchangeActor {
    type Context = Context<Self>;
}

impl Supervised for ExchangeActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        warn!(gateway = self.gateway.name(), "exchange actor restarted");
    }
}

impl Handler<Execute> for ExchangeActor {
    type Result = Result<Fill, GatewayError>;

    fn handle(&mut self, msg: Execute, ctx: &mut Context<Self>) -> Self::Result {
        let outcome = guard(|| self.gateway.submit(&msg.order, Timestamp::now()));
        let fill = match outcome {
            Ok(result) => result?,
            Err(panic) => {
                error!(%panic, "gateway panicked; restarting the exchange actor");
                ctx.stop();
                return Err(GatewayError::Unavailable(format!(
                    "gateway failed: {panic}"
                )));
            }
        };
        self.book(&fill);
        info!(symbol = %fill.symbol, client_order_id = %fill.client_order_id, side = ?fill.side,
              quantity = %fill.quantity, price = %fill.price, "order filled");
        Ok(fill)
    }
}

impl Handler<PriceUpdate> for ExchangeActor {
    type Result = Vec<Fill>;

    fn handle(&mut self, msg: PriceUpdate, ctx: &mut Context<Self>) -> Self::Result {
        self.portfolio
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .mark(&msg.symbol, msg.price);
        let fills = match guard(|| {
            self.gateway
                .on_price(&msg.symbol, msg.price, Timestamp::now())
        }) {
            Ok(fills) => fills,
            Err(panic) => {
                error!(%panic, "gateway panicked; restarting the exchange actor");
                ctx.stop();
                return Vec::new();
            }
        };
        for fill in &fills {
            self.book(fill);
            info!(symbol = %fill.symbol, client_order_id = %fill.client_order_id, reason = ?fill.reason,
                  price = %fill.price, "resting order filled");
            self.recorder.exit_filled(fill);
        }
        fills
    }
}
