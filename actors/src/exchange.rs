//! The exchange actor: the one caller of the account's `Gateway`; it records each fill durably and keeps the
//! portfolio in step with the fills.

use std::sync::Arc;

use actix::prelude::*;
use tracing::{error, info, warn};

use crate::gateway::{Execution, Gateway, GatewayError};
use crate::messages::{Execute, FindFill, PriceUpdate, TakeSnapshot};
use crate::order::{Fill, OrderRequest};
use crate::portfolio::SharedPortfolio;
use crate::recorder::Recorder;
use crate::supervise::guard;
use crate::types::Timestamp;

/// New fills between two snapshots: bounds what a restart has to replay.
pub const SNAPSHOT_EVERY: u32 = 1_000;

pub struct ExchangeActor {
    gateway: Box<dyn Gateway>,
    portfolio: SharedPortfolio,
    recorder: Arc<dyn Recorder>,
    fills_since_snapshot: u32,
    /// Set when a fill could not be recorded: from then on no new order is placed (fail closed), since a fill the
    /// journal does not know could be placed again after a restart.
    unrecorded_fill: bool,
}

impl ExchangeActor {
    /// `gateway` and `portfolio` must already hold what the journal recorded (see the daemon's recovery).
    pub fn new(
        gateway: Box<dyn Gateway>,
        portfolio: SharedPortfolio,
        recorder: Arc<dyn Recorder>,
    ) -> Self {
        Self {
            gateway,
            portfolio,
            recorder,
            fills_since_snapshot: 0,
            unrecorded_fill: false,
        }
    }

    /// Records a new fill durably, then counts it in the portfolio, so nobody sees a position that is not on disk.
    fn book(&mut self, order: Option<&OrderRequest>, fill: &Fill) {
        let after = {
            let portfolio = self.portfolio.read().unwrap_or_else(|e| e.into_inner());
            let mut position = portfolio
                .positions
                .get(&fill.symbol)
                .cloned()
                .unwrap_or_default();
            position.apply(fill);
            position
        };
        if let Err(e) = self.recorder.filled(order, fill, &after) {
            // The fill happened, so the portfolio counts it; but nothing more is placed until a restart.
            error!(client_order_id = %fill.client_order_id, error = %e, "fill could not be journaled; no new orders");
            self.unrecorded_fill = true;
        }
        self.portfolio
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply_fill(fill);
        self.fills_since_snapshot += 1;
        if self.fills_since_snapshot >= SNAPSHOT_EVERY {
            self.snapshot();
        }
    }

    fn snapshot(&mut self) {
        let portfolio = self
            .portfolio
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let state =
            serde_json::json!({ "portfolio": portfolio, "gateway": self.gateway.snapshot() });
        self.recorder.snapshot(state);
        self.fills_since_snapshot = 0;
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
        let order = msg.order;
        if self.unrecorded_fill {
            return Err(GatewayError::Unavailable(
                "a fill could not be journaled: no new orders until the daemon restarts with a working journal".into(),
            ));
        }
        match guard(|| self.gateway.submit(&order, Timestamp::now())) {
            Ok(Ok(Execution::New(fill))) => {
                self.book(Some(order.get()), &fill);
                info!(symbol = %fill.symbol, client_order_id = %fill.client_order_id, side = ?fill.side,
                      quantity = %fill.quantity, price = %fill.price, "order filled");
                Ok(fill)
            }
            Ok(Ok(Execution::AlreadyFilled(fill))) => {
                info!(client_order_id = %fill.client_order_id, "order had already filled; not placed again");
                Ok(fill)
            }
            Ok(Err(e)) => {
                self.recorder.rejected(order.get(), &e.to_string());
                Err(e)
            }
            Err(panic) => {
                error!(%panic, "gateway panicked; restarting the exchange actor");
                ctx.stop();
                Err(GatewayError::Unavailable(format!(
                    "gateway failed: {panic}"
                )))
            }
        }
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
            self.book(None, fill);
            info!(symbol = %fill.symbol, client_order_id = %fill.client_order_id, reason = ?fill.reason,
                  price = %fill.price, "resting order filled");
        }
        fills
    }
}

impl Handler<FindFill> for ExchangeActor {
    type Result = Option<Fill>;

    fn handle(&mut self, msg: FindFill, _ctx: &mut Context<Self>) -> Self::Result {
        self.gateway.find_fill(&msg.client_order_id)
    }
}

impl Handler<TakeSnapshot> for ExchangeActor {
    type Result = ();

    fn handle(&mut self, _msg: TakeSnapshot, _ctx: &mut Context<Self>) {
        if self.fills_since_snapshot > 0 {
            self.snapshot();
        }
    }
}
