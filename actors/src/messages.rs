//! Every message between the actors, with its sender, receiver and reply.

use actix::Message;

use crate::gateway::GatewayError;
use crate::order::{Fill, OrderOutcome, OrderRequest};
use crate::recorder::RecordError;
use crate::risk::{Approved, TradingState};
use crate::signal::Signal;
use crate::types::{ClientOrderId, Price, Symbol};

/// Router -> strategy actor of `signal.symbol`: an accepted signal to act on, in arrival order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SignalReceived {
    pub signal: Signal,
    /// After a restart: the orders already decided for this signal before the crash, to place (again, idempotently
    /// by client order id) instead of deciding anew.
    pub decided: Option<Vec<OrderRequest>>,
}

/// Strategy actor -> risk actor: one order to check and, if approved, to place. Replies with what became of it.
#[derive(Debug, Message)]
#[rtype(result = "OrderOutcome")]
pub struct Propose {
    pub order: OrderRequest,
}

/// Risk actor -> exchange actor: an approved order to place.
#[derive(Debug, Message)]
#[rtype(result = "Result<Fill, GatewayError>")]
pub struct Execute {
    pub order: Approved<OrderRequest>,
}

/// Strategy actor -> exchange actor: the symbol's last price. Replies with the fills of resting orders it triggered.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Fill>")]
pub struct PriceUpdate {
    pub symbol: Symbol,
    pub price: Price,
}

/// Operator (HTTP API) -> risk actor: switch the account's trading state. Replies once the change is durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RecordError>")]
pub struct SetTradingState {
    pub state: TradingState,
}

/// HTTP API -> risk actor: the account's trading state.
#[derive(Debug, Message)]
#[rtype(result = "TradingState")]
pub struct GetTradingState;

/// Strategy actor -> exchange actor, after a restart: did an order with this client order id already fill? Asked
/// before a recovered order goes to risk, whose checks assume the order is new.
#[derive(Debug, Message)]
#[rtype(result = "Option<Fill>")]
pub struct FindFill {
    pub client_order_id: ClientOrderId,
}

/// Daemon -> exchange actor, at a clean shutdown: write a snapshot now, so the next start replays nothing.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct TakeSnapshot;
