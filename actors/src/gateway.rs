//! The trait an exchange connection implements; the exchange actor is its only caller.

use thiserror::Error;

use crate::order::{Fill, OrderRequest};
use crate::risk::Approved;
use crate::types::{ClientOrderId, Price, Symbol, Timestamp};

/// Why an exchange did not fill an order, and whether trying again could help.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum GatewayError {
    /// The exchange refused the order itself (bad size, no position to reduce, ...): retrying cannot help.
    #[error("exchange rejected the order: {0}")]
    Rejected(String),
    /// The exchange could not be reached or answered with a transient error: the same order (same client order id)
    /// may be retried.
    #[error("exchange unavailable: {0}")]
    Unavailable(String),
}

impl GatewayError {
    pub fn is_recoverable(&self) -> bool {
        matches!(self, GatewayError::Unavailable(_))
    }
}

/// What a submit did.
#[derive(Clone, Debug, PartialEq)]
pub enum Execution {
    /// The order filled now.
    New(Fill),
    /// An order with this client order id had already filled (a retry after a crash or timeout): this is that
    /// fill, and nothing new happened.
    AlreadyFilled(Fill),
}

/// One exchange account. Calls may block: the exchange actor runs on an arbiter of its own.
pub trait Gateway: Send + 'static {
    /// A short name for logs and the API, e.g. `paper`.
    fn name(&self) -> &str;

    /// Places a market order and reports its fill. Idempotent by client order id: the same id never fills twice.
    fn submit(
        &mut self,
        order: &Approved<OrderRequest>,
        at: Timestamp,
    ) -> Result<Execution, GatewayError>;

    /// Tells the gateway the symbol's last price; returns the fills of resting orders it triggered.
    fn on_price(&mut self, symbol: &Symbol, price: Price, at: Timestamp) -> Vec<Fill>;

    /// The fill of the order with this client order id, if it filled (a real exchange is asked by id).
    fn find_fill(&self, client_order_id: &ClientOrderId) -> Option<Fill>;

    /// The gateway's own state for a snapshot (`Null` when the exchange itself is the record).
    fn snapshot(&self) -> serde_json::Value;

    /// Restores a snapshot taken by `snapshot`.
    fn restore_snapshot(&mut self, state: serde_json::Value) -> Result<(), String>;

    /// At start-up: replays a recorded fill made after the snapshot (`replay`), or only remembers an older one so
    /// that its client order id is known to have filled.
    fn restore_fill(&mut self, order: Option<&OrderRequest>, fill: &Fill, replay: bool);
}
