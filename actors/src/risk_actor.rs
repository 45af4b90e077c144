//! The risk actor: checks each proposed order against the published ledger view and hands approved ones to the
//! exchange actor. It owns the trading state (the kill switch).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rust_decimal::Decimal;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::event::{Event, Verdict};
use crate::ledger_actor::{view_after, View, ViewRx};
use crate::limits::{grows, Judged, Limits, OrderStamp, WINDOW_MS};
use crate::log::{Clock, EventLog, LogError, SystemClock};
use crate::messages::{
    Execute, Executed, GetTradingState, Placed, Propose, Reconfigure, SetTradingState,
};
use crate::order::{OrderOutcome, OrderRequest};
use crate::risk::{Approved, DenyReason, Exposure, RiskEngine, TradingState};
use crate::supervise::guard;
use crate::types::{ClientOrderId, Timestamp};
use crate::venue::{Marks, VenueError};

/// How long risk waits for the ledger to fold an order's signal before judging the order without it (a signal
/// folded from a checkpoint written before the limits existed).
const SIGNAL_WAIT: Duration = Duration::from_secs(2);
/// How often the daily-loss and drawdown limits are looked at when no order comes (a loss from a stop, the next UTC
/// day's release).
const TRIP_EVERY: Duration = Duration::from_secs(1);

pub struct RiskActor {
    engine: RiskEngine,
    view: ViewRx,
    exchange: Recipient<Execute>,
    log: Arc<dyn EventLog>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    /// The venue's own prices, when it streams them: the price-sanity check's reference.
    marks: Option<watch::Receiver<Marks>>,
    /// Orders approved that the ledger had not folded when they were: counted by the orders-per-minute limits until
    /// it has.
    unfolded: Vec<OrderStamp>,
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
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            marks: None,
            unfolded: Vec::new(),
        }
    }

    /// The account limits to check, the clock they are judged by, and the venue's prices if it has its own.
    pub fn with_limits(
        mut self,
        limits: Limits,
        clock: Arc<dyn Clock>,
        marks: Option<watch::Receiver<Marks>>,
    ) -> Self {
        self.limits = limits;
        self.clock = clock;
        self.marks = marks;
        self
    }

    /// Moves the trading state where the daily-loss and drawdown limits say it should be, and records it.
    fn enforce(&mut self, now: Timestamp) {
        let view = self.view.borrow().clone();
        let current = self.engine.state();
        let Some(state) = self
            .limits
            .trip(&view.limits, &view.portfolio, now, current)
        else {
            return;
        };
        warn!(from = %current, to = %state, "an account limit changed the trading state");
        self.engine.set_state(state);
        // Not waited for: tightening holds at once; a release that is lost leaves the account reducing, the safe side.
        let _ = self.log.append(vec![Event::TradingStateChanged { state }]);
    }

    /// Runs every check on `order`: the symbol's rules and the trading state, then, for an order that opens or grows
    /// a position, the account limits.
    fn judge(&mut self, order: &OrderRequest) -> Result<Approved<OrderRequest>, DenyReason> {
        let now = self.clock.now();
        self.enforce(now);
        let view = self.view.borrow().clone();
        let mut exposure = Exposure::of(&view.portfolio, &order.symbol);
        // Resting limit entries hold their margin until they fill or are cancelled.
        exposure.available_margin = exposure
            .available_margin
            .saturating_sub(view.resting_margin(&order.client_order_id));
        let state = self.engine.state();
        let approved = match self.engine.check(order.clone(), exposure) {
            Ok(approved) => approved,
            Err(DenyReason::ReducingOnly) if state == TradingState::Reducing => {
                return Err(self
                    .daily_loss_reason(&view, now)
                    .unwrap_or(DenyReason::ReducingOnly));
            }
            Err(DenyReason::Halted) => {
                return Err(
                    match self.limits.drawdown_reached(&view.limits, &view.portfolio) {
                        Some((drawdown, limit)) => DenyReason::DrawdownReached { drawdown, limit },
                        None => DenyReason::Halted,
                    },
                );
            }
            Err(reason) => return Err(reason),
        };
        // Approvals the view has not folded yet count towards the per-minute limits; without those limits nothing
        // needs them, and under load the set would be thousands long.
        let per_minute = self.limits.max_orders_per_minute.is_some()
            || self.limits.max_orders_per_minute_per_symbol.is_some();
        if grows(exposure.position, order) {
            if per_minute {
                let folded: HashSet<&ClientOrderId> = view
                    .limits
                    .orders
                    .iter()
                    .map(|f| &f.client_order_id)
                    .collect();
                self.unfolded.retain(|o| {
                    o.at.0 > now.0.saturating_sub(WINDOW_MS) && !folded.contains(&o.client_order_id)
                });
            }
            let venue_mark = self
                .marks
                .as_ref()
                .and_then(|marks| marks.borrow().get(&order.symbol).copied());
            let judged = Judged {
                now,
                state: &view.limits,
                portfolio: &view.portfolio,
                signal: view.limits.signals.get(&order.signal_id),
                venue_mark,
                unfolded: &self.unfolded,
            };
            self.limits.check(order, &judged)?;
        }
        if per_minute {
            self.unfolded.push(OrderStamp {
                at: now,
                symbol: order.symbol.clone(),
                client_order_id: order.client_order_id.clone(),
            });
        }
        Ok(approved)
    }

    /// The daily-loss denial, when the account is reducing because today's loss reached its limit.
    fn daily_loss_reason(&self, view: &View, now: Timestamp) -> Option<DenyReason> {
        if let Some((loss, limit)) =
            self.limits
                .daily_loss_reached(&view.limits, &view.portfolio, now)
        {
            return Some(DenyReason::DailyLossReached { loss, limit });
        }
        let since = view.limits.reducing_since.as_ref()?;
        if since.day != now.0.div_euclid(86_400_000) {
            return None;
        }
        let limit = self.limits.max_daily_loss?.of(since.start_equity)?;
        (since.loss > Decimal::ZERO && since.loss >= limit).then_some(
            DenyReason::DailyLossReached {
                loss: since.loss,
                limit,
            },
        )
    }

    /// Checks `order` and, if approved, places it.
    fn place(
        &mut self,
        order: OrderRequest,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Placed> {
        let checked = match guard(|| self.judge(&order)) {
            Ok(checked) => checked,
            Err(panic) => {
                error!(%panic, "risk check panicked; restarting the risk actor");
                ctx.stop();
                let error = VenueError::Unavailable {
                    detail: "the risk check failed; the risk actor restarted".into(),
                };
                return Box::pin(fut::ready(Placed {
                    outcome: OrderOutcome::Rejected { order, error },
                    recorded: None,
                }));
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
                Box::pin(fut::ready(Placed {
                    outcome: OrderOutcome::Denied { order, reason },
                    recorded: None,
                }))
            }
            Ok(approved) => {
                let sent = self.exchange.send(Execute { order: approved });
                Box::pin(
                    async move {
                        match sent.await {
                            Ok(Ok(Executed::Filled(fill, recorded))) => Placed {
                                outcome: OrderOutcome::Filled { order, fill },
                                recorded,
                            },
                            Ok(Ok(Executed::Resting(offset))) => Placed {
                                outcome: OrderOutcome::Resting { order },
                                recorded: Some(offset),
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
                    }
                    .into_actor(self),
                )
            }
        }
    }
}

impl Actor for RiskActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Also after a restart by the supervisor.
        if self.limits.max_daily_loss.is_some() || self.limits.max_drawdown.is_some() {
            ctx.run_interval(TRIP_EVERY, |act, _| {
                let now = act.clock.now();
                act.enforce(now);
            });
        }
    }
}

impl Supervised for RiskActor {}

impl Handler<Propose> for RiskActor {
    // Not atomic: a slow venue call for one symbol does not hold up the checks of another's orders.
    type Result = ResponseActFuture<Self, Placed>;

    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) -> Self::Result {
        let order = msg.order;
        let folded = self
            .view
            .borrow()
            .limits
            .signals
            .contains_key(&order.signal_id);
        if !self.limits.needs_signal() || folded {
            return self.place(order, ctx);
        }
        // The signal is durable (its strategy waited for that), but the ledger may not have folded it yet.
        let mut view = self.view.clone();
        let id = order.signal_id.clone();
        let folded = async move {
            let _ = actix::clock::timeout(
                SIGNAL_WAIT,
                view.wait_for(|v| v.limits.signals.contains_key(&id)),
            )
            .await;
        };
        Box::pin(
            folded
                .into_actor(self)
                .then(move |(), act, ctx| act.place(order, ctx)),
        )
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
        let mut view = self.view.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let offset = receipt.durable().await?;
                // Loosening waits for the ledger to count it too: the limits' trips (today's loss, the peak) are
                // cleared by it, or they would trip again at once.
                if !tightening {
                    view_after(&mut view, offset).await;
                }
                Ok(())
            }
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

impl Handler<Reconfigure> for RiskActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, _ctx: &mut Context<Self>) {
        let state = self.engine.state();
        self.engine = RiskEngine::new(msg.rules, state);
        self.limits = msg.limits;
        info!("risk rules and account limits reloaded");
    }
}
