//! Sentinel's domain types, its events, the messages between its actors, and the actors: ingress, strategy, risk,
//! exchange, ledger.
//!
//! No HTTP, SQL or network code lives here: I/O comes in through two ports, the event log (`log::EventLog`) and the
//! execution venue (`venue::ExecutionVenue`), which `src/` implements.

pub mod amount;
pub mod event;
pub mod exchange;
pub mod exits;
pub mod ingress;
pub mod latency;
pub mod ledger;
pub mod ledger_actor;
pub mod limits;
pub mod log;
pub mod messages;
pub mod order;
pub mod portfolio;
pub mod resting;
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
