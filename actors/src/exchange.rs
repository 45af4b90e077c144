//! The exchange actor: the one caller of the account's venue. It places approved orders, many at once (a slow call
//! for one symbol never holds up another's), and records every fill in the log before it says the order filled.

use std::sync::{Arc, Mutex};

use std::pin::Pin;

use actix::fut::wrap_future;
use actix::prelude::*;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::event::{Event, ExitCause, Offset};
use crate::exits::ArmedExits;
use crate::ledger_actor::ViewRx;
use crate::log::{Clock, EventLog, Receipt};
use crate::messages::{
    CancelResting, Execute, Executed, FindFill, MoveExits, PriceUpdate, Triggered,
};
use crate::order::{Fill, OrderRequest};
use crate::types::SignalId;
use crate::venue::{Execution, ExecutionReport, ExecutionVenue, RejectReason, VenueError};

/// A reply still on its way, with access to the actor when it gets there.
type Reply<T> = Pin<Box<dyn ActorFuture<ExchangeActor, Output = T>>>;

pub struct ExchangeActor {
    venue: Arc<dyn ExecutionVenue>,
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    /// Set when a fill could not be recorded: from then on no new order is placed (fail closed), since a fill the
    /// log does not know could be placed again after a restart.
    unrecorded_fill: bool,
    /// What the venue reports on its own, between the actor's lives: a restart drops the context's streams, and the
    /// lease hands the receiver back for the next life.
    reports: Arc<Mutex<Option<mpsc::Receiver<ExecutionReport>>>>,
    /// The ledger's view, to name the signal that opened a position a stop closes.
    view: Option<ViewRx>,
}

/// The venue's report receiver, lent to one life of the actor and handed back when that life's stream is dropped.
struct Lease {
    rx: Option<mpsc::Receiver<ExecutionReport>>,
    home: Arc<Mutex<Option<mpsc::Receiver<ExecutionReport>>>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            *self.home.lock().unwrap_or_else(|p| p.into_inner()) = Some(rx);
        }
    }
}

impl ExchangeActor {
    pub fn new(
        venue: Arc<dyn ExecutionVenue>,
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let reports = Arc::new(Mutex::new(venue.reports()));
        Self {
            venue,
            log,
            clock,
            unrecorded_fill: false,
            reports,
            view: None,
        }
    }

    /// Names the opening signal of the positions its exits close, from `view`.
    pub fn with_view(mut self, view: ViewRx) -> Self {
        self.view = Some(view);
        self
    }

    /// Appends a fill; the answer waits for it to be durable, so nobody counts a fill that is not in the log.
    fn record(&self, order: Option<OrderRequest>, fill: Fill) -> Receipt {
        info!(symbol = %fill.symbol, client_order_id = %fill.client_order_id, side = ?fill.side,
              quantity = %fill.quantity, price = %fill.price, reason = ?fill.reason, "filled");
        self.log.append(vec![Event::filled(order, fill)])
    }

    /// Records a stop, target or liquidation fill, naming the signal that opened the position (from the view,
    /// which has not counted this fill yet) and the tick that fired it.
    fn record_exit(&self, fill: Fill, tick: Option<SignalId>) -> Receipt {
        let opened_by = self
            .view
            .as_ref()
            .and_then(|view| view.borrow().opened_by.get(&fill.symbol).cloned());
        info!(symbol = %fill.symbol, client_order_id = %fill.client_order_id, side = ?fill.side,
              quantity = %fill.quantity, price = %fill.price, reason = ?fill.reason,
              opened_by = ?opened_by.as_ref().map(|s| s.as_str()), tick = ?tick.as_ref().map(|s| s.as_str()),
              "filled");
        let cause = ExitCause { opened_by, tick };
        self.log.append(vec![Event::Filled {
            order: None,
            fill,
            cause: Some(cause),
        }])
    }

    /// Journals what the venue did on its own (`tick`: the signal whose price made it); a fill's receipt, to wait
    /// for.
    fn report(&self, report: ExecutionReport, tick: Option<SignalId>) -> Option<Receipt> {
        match report {
            ExecutionReport::Filled(fill) => Some(self.record_exit(fill, tick)),
            ExecutionReport::EntryFilled { order, fill } => Some(self.record(Some(*order), fill)),
            ExecutionReport::Cancelled {
                symbol,
                client_order_id,
                reason,
            } => {
                info!(%symbol, %client_order_id, ?reason, "resting order cancelled on the venue");
                let _ = self.log.append(vec![Event::Cancelled {
                    symbol,
                    client_order_id,
                    reason,
                }]);
                None
            }
        }
    }

    /// Waits for a fill's record; a failure stops new orders.
    fn recorded(receipt: Receipt) -> impl ActorFuture<Self, Output = Option<Offset>> {
        wrap_future::<_, Self>(async move { receipt.durable().await }).map(|result, act: &mut Self, _| match result {
                Ok(offset) => Some(offset),
                Err(e) => {
                    error!(error = %e, "a fill could not be recorded; no new orders until a restart");
                    act.unrecorded_fill = true;
                    None
                }
            })
    }
}

impl Actor for ExchangeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A venue with its own market data reports what its resting orders did on its own.
        let taken = self
            .reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(rx) = taken {
            let mut lease = Lease {
                rx: Some(rx),
                home: self.reports.clone(),
            };
            ctx.add_stream(futures_util::stream::poll_fn(move |cx| {
                match lease.rx.as_mut() {
                    Some(rx) => rx.poll_recv(cx),
                    None => std::task::Poll::Ready(None),
                }
            }));
        }
    }
}

impl Supervised for ExchangeActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        warn!(venue = self.venue.name(), "exchange actor restarted");
    }
}

impl Handler<Execute> for ExchangeActor {
    // Not atomic: while one venue call is in flight, others (other symbols') go ahead.
    type Result = ResponseActFuture<Self, Result<Executed, VenueError>>;

    fn handle(&mut self, msg: Execute, _ctx: &mut Context<Self>) -> Self::Result {
        if self.unrecorded_fill {
            let error = VenueError::Unavailable {
                detail: "a fill could not be recorded: no new orders until the daemon restarts with a working log"
                    .into(),
            };
            return Box::pin(actix::fut::ready(Err(error)));
        }
        let order = msg.order.get().clone();
        // Not waited for: the fill, which is, comes after it in the log.
        let _ = self.log.append(vec![Event::OrderSent {
            order: order.clone(),
        }]);
        let submitted = self.venue.submit(msg.order, self.clock.now());
        Box::pin(wrap_future::<_, Self>(submitted).then(move |result, act: &mut Self, _| {
            let fut: Reply<Result<Executed, VenueError>> = match result {
                Ok(Execution::New(fill)) => {
                    let receipt = act.record(Some(order), fill.clone());
                    Box::pin(Self::recorded(receipt).map(move |offset, _, _| match offset {
                        Some(offset) => Ok(Executed::Filled(fill, Some(offset))),
                        None => Err(VenueError::Unknown {
                            detail: "the order filled but its fill could not be recorded".into(),
                        }),
                    }))
                }
                Ok(Execution::AlreadyFilled(fill)) => {
                    info!(client_order_id = %fill.client_order_id, "order had already filled; not placed again");
                    Box::pin(actix::fut::ready(Ok(Executed::Filled(fill, None))))
                }
                Ok(Execution::Resting) => {
                    info!(symbol = %order.symbol, client_order_id = %order.client_order_id,
                          limit = ?order.limit.map(|l| l.price), "limit entry resting");
                    // Waited for, as a fill is: the ledger and a restart must know what rests.
                    let receipt = act.log.append(vec![Event::OrderResting { order }]);
                    Box::pin(wrap_future::<_, Self>(async move { receipt.durable().await }).map(
                        |durable, _, _| match durable {
                            Ok(offset) => Ok(Executed::Resting(offset)),
                            Err(e) => Err(VenueError::Unknown {
                                detail: format!("the order rests but could not be recorded: {e}"),
                            }),
                        },
                    ))
                }
                Err(error) => {
                    warn!(symbol = %order.symbol, client_order_id = %order.client_order_id, %error, "order not filled");
                    let _ = act.log.append(vec![Event::Rejected {
                        order,
                        error: error.clone(),
                    }]);
                    Box::pin(actix::fut::ready(Err(error)))
                }
            };
            fut
        }))
    }
}

impl Handler<PriceUpdate> for ExchangeActor {
    type Result = ResponseActFuture<Self, Option<Triggered>>;

    fn handle(&mut self, msg: PriceUpdate, _ctx: &mut Context<Self>) -> Self::Result {
        let reports = self.venue.mark(&msg.symbol, msg.price, self.clock.now());
        let mut last = None;
        let mut fills = Vec::new();
        for report in reports {
            match &report {
                ExecutionReport::Filled(fill) | ExecutionReport::EntryFilled { fill, .. } => {
                    fills.push(fill.clone())
                }
                ExecutionReport::Cancelled { .. } => {}
            }
            last = self.report(report, msg.tick.clone()).or(last);
        }
        match last {
            // Appends are durable in order: the last one's durability covers them all.
            Some(receipt) => Box::pin(
                Self::recorded(receipt)
                    .map(|offset, _, _| offset.map(|offset| Triggered { offset, fills })),
            ),
            None => Box::pin(actix::fut::ready(None)),
        }
    }
}

impl Handler<FindFill> for ExchangeActor {
    type Result = ResponseActFuture<Self, Option<(Fill, Offset)>>;

    fn handle(&mut self, msg: FindFill, _ctx: &mut Context<Self>) -> Self::Result {
        let order = msg.order;
        let asked = self
            .venue
            .query(order.symbol.clone(), order.client_order_id.clone());
        Box::pin(wrap_future::<_, Self>(asked).then(move |found, act: &mut Self, _| {
            let fut: Reply<Option<(Fill, Offset)>> = match found {
                    Ok(Some(fill)) => {
                        let receipt = act.record(Some(order), fill.clone());
                        Box::pin(Self::recorded(receipt).map(move |offset, _, _| {
                            offset.map(|offset| (fill, offset))
                        }))
                    }
                    Ok(None) => Box::pin(actix::fut::ready(None)),
                    Err(e) => {
                        // Unknown is treated as not filled: the order is then placed, and the venue refuses a
                        // second order with the same client order id.
                        warn!(client_order_id = %order.client_order_id, error = %e, "could not ask the venue about an order");
                        Box::pin(actix::fut::ready(None))
                    }
                };
            fut
        }))
    }
}

impl Handler<MoveExits> for ExchangeActor {
    type Result = ResponseActFuture<Self, Result<(ArmedExits, Offset), VenueError>>;

    fn handle(&mut self, msg: MoveExits, _ctx: &mut Context<Self>) -> Self::Result {
        let MoveExits {
            symbol,
            signal_id,
            exits,
        } = msg;
        let moved = self.venue.move_exits(symbol.clone(), exits);
        Box::pin(wrap_future::<_, Self>(moved).then(move |result, act: &mut Self, _| {
            let fut: Reply<Result<(ArmedExits, Offset), VenueError>> = match result {
                Ok(exits) => {
                    info!(%symbol, %signal_id, stop_loss = ?exits.stop_loss.as_ref().map(|l| l.0),
                          take_profit = ?exits.take_profit.as_ref().map(|l| l.0), "exits moved");
                    // Waited for, as a fill is: the ledger and a restart must know which legs rest.
                    let receipt = act.log.append(vec![Event::ExitsMoved {
                        symbol,
                        signal_id,
                        exits: exits.clone(),
                    }]);
                    Box::pin(wrap_future::<_, Self>(async move { receipt.durable().await }).map(
                        move |durable, _, _| match durable {
                            Ok(offset) => Ok((exits, offset)),
                            Err(e) => Err(VenueError::Unknown {
                                detail: format!("the exits moved but could not be recorded: {e}"),
                            }),
                        },
                    ))
                }
                Err(error) => {
                    warn!(%symbol, %signal_id, %error, "exits not moved");
                    Box::pin(actix::fut::ready(Err(error)))
                }
            };
            fut
        }))
    }
}

impl StreamHandler<ExecutionReport> for ExchangeActor {
    fn handle(&mut self, report: ExecutionReport, ctx: &mut Context<Self>) {
        if let Some(receipt) = self.report(report, None) {
            ctx.spawn(Self::recorded(receipt).map(|_, _, _| ()));
        }
    }
}

impl Handler<CancelResting> for ExchangeActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: CancelResting, _ctx: &mut Context<Self>) -> Self::Result {
        let CancelResting { orders, reason } = msg;
        let venue = Arc::clone(&self.venue);
        let log = Arc::clone(&self.log);
        Box::pin(wrap_future::<_, Self>(async move {
            for (symbol, client_order_id) in orders {
                match venue.cancel(symbol.clone(), client_order_id.clone()).await {
                    Ok(()) => {
                        info!(%symbol, %client_order_id, ?reason, "resting entry cancelled");
                        let _ = log.append(vec![Event::Cancelled {
                            symbol,
                            client_order_id,
                            reason,
                        }]);
                    }
                    // It filled or was cancelled meanwhile: its own event says so.
                    Err(VenueError::Rejected {
                        reason: RejectReason::UnknownOrder { .. },
                    }) => {}
                    Err(error) => {
                        warn!(%symbol, %client_order_id, %error, "resting entry not cancelled");
                    }
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use tokio::sync::watch;

    use super::*;
    use crate::log::{LogError, SystemClock};
    use crate::order::{FillReason, OrderRequest};
    use crate::risk::Approved;
    use crate::types::{ClientOrderId, Price, Quantity, Side, Symbol, Timestamp};
    use crate::venue::{Balance, OpenOrder, VenueFuture, VenuePosition};

    #[derive(Default)]
    struct Memory(Mutex<Vec<Event>>);

    impl EventLog for Memory {
        fn append(&self, events: Vec<Event>) -> Receipt {
            let mut all = self.0.lock().unwrap();
            all.extend(events);
            Receipt::durable_at(Offset(all.len() as u64))
        }
        fn try_append(&self, events: Vec<Event>) -> Result<Receipt, LogError> {
            Ok(self.append(events))
        }
        fn read(&self, _from: Offset, _max: usize) -> Result<Vec<crate::event::Stamped>, LogError> {
            Ok(Vec::new())
        }
        fn head(&self) -> watch::Receiver<Offset> {
            watch::channel(Offset::START).1
        }
        fn checkpoint(&self, _upto: Offset, _state: String) {}
        fn last_checkpoint(&self) -> Result<Option<(Offset, serde_json::Value)>, LogError> {
            Ok(None)
        }
    }

    /// A venue that only reports.
    struct Reporting(Mutex<Option<mpsc::Receiver<ExecutionReport>>>);

    fn nothing<T: Send + 'static>() -> VenueFuture<T> {
        Box::pin(async {
            Err(VenueError::Unavailable {
                detail: "test venue".into(),
            })
        })
    }

    impl ExecutionVenue for Reporting {
        fn name(&self) -> &'static str {
            "reporting"
        }
        fn submit(&self, _: Approved<OrderRequest>, _: Timestamp) -> VenueFuture<Execution> {
            nothing()
        }
        fn cancel(&self, _: Symbol, _: ClientOrderId) -> VenueFuture<()> {
            nothing()
        }
        fn move_exits(&self, _: Symbol, _: ArmedExits) -> VenueFuture<ArmedExits> {
            nothing()
        }
        fn query(&self, _: Symbol, _: ClientOrderId) -> VenueFuture<Option<Fill>> {
            nothing()
        }
        fn open_orders(&self, _: Option<Symbol>) -> VenueFuture<Vec<OpenOrder>> {
            nothing()
        }
        fn positions(&self) -> VenueFuture<Vec<VenuePosition>> {
            nothing()
        }
        fn balance(&self) -> VenueFuture<Balance> {
            nothing()
        }
        fn mark(&self, _: &Symbol, _: Price, _: Timestamp) -> Vec<ExecutionReport> {
            Vec::new()
        }
        fn reports(&self) -> Option<mpsc::Receiver<ExecutionReport>> {
            self.0.lock().unwrap().take()
        }
        fn state(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
    }

    /// Stops the actor, as a failure does: its supervisor starts it again.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Fail;

    impl Handler<Fail> for ExchangeActor {
        type Result = ();
        fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    fn stop_fill(id: &str) -> ExecutionReport {
        ExecutionReport::Filled(Fill {
            client_order_id: ClientOrderId::try_from(id.to_string()).unwrap(),
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side: Side::Sell,
            quantity: Quantity::from_str("0.01").unwrap(),
            price: Price::from_str("49000").unwrap(),
            fee: Default::default(),
            reason: FillReason::StopLoss,
            at: Timestamp(1),
        })
    }

    async fn recorded(log: &Memory, count: usize) {
        for _ in 0..500 {
            if log.0.lock().unwrap().len() >= count {
                return;
            }
            actix::clock::sleep(Duration::from_millis(2)).await;
        }
        panic!("{count} events were not recorded");
    }

    #[actix::test]
    async fn the_venues_reports_are_still_followed_after_a_restart() {
        let (tx, rx) = mpsc::channel(8);
        let venue: Arc<dyn ExecutionVenue> = Arc::new(Reporting(Mutex::new(Some(rx))));
        let log = Arc::new(Memory::default());
        let actor_log: Arc<dyn EventLog> = log.clone();
        let addr =
            Supervisor::start(move |_| ExchangeActor::new(venue, actor_log, Arc::new(SystemClock)));
        tx.send(stop_fill("before")).await.unwrap();
        recorded(&log, 1).await;
        addr.send(Fail).await.unwrap();
        // The next life takes the same receiver: a stop that fires now is still recorded.
        tx.send(stop_fill("after"))
            .await
            .expect("the receiver outlived the restart");
        recorded(&log, 2).await;
    }
}
