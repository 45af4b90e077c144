//! Sentinel's domain types, the messages between its actors, and the actors: router, strategy, risk, exchange.
//!
//! No HTTP, SQL or network code lives here: I/O comes in through the `Gateway` and `Recorder` traits.

pub mod amount;
pub mod event;
pub mod exchange;
pub mod exits;
pub mod gateway;
pub mod ledger;
pub mod log;
pub mod messages;
pub mod order;
#[cfg(test)]
mod overflow_props;
pub mod paper;
pub mod portfolio;
pub mod recorder;
pub mod risk;
pub mod risk_actor;
pub mod router;
pub mod signal;
pub mod strategy;
pub mod supervise;
pub mod types;
pub mod venue;

/// With the `fault-injection` feature, a signal whose comment is this makes its strategy panic (tests only).
#[cfg(feature = "fault-injection")]
pub const FAULT_INJECTION_PANIC: &str = "sentinel:fault-injection:panic";
