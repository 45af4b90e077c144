//! The trait an exchange connection implements; the exchange actor is its only caller.

use thiserror::Error;

use crate::order::{Fill, OrderRequest};
use crate::risk::Approved;
use crate::types::{Price, Symbol, Timestamp};

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

/// One exchange account. Calls may block: the exchange actor runs on an arbiter of its own.
pub trait Gateway: Send + 'static {
    /// A short name for logs and the API, e.g. `paper`.
    fn name(&self) -> &str;

    /// Places a market order and reports its fill. The same client order id must never fill twice.
    fn submit(
        &mut self,
        order: &Approved<OrderRequest>,
        at: Timestamp,
    ) -> Result<Fill, GatewayError>;

    /// Tells the gateway the symbol's last price; returns the fills of resting orders it triggered.
    fn on_price(&mut self, symbol: &Symbol, price: Price, at: Timestamp) -> Vec<Fill>;
}
