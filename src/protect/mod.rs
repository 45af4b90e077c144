//! The ingress protections around authentication: who may connect, how often and how many at once, how often a
//! client may be refused, and what was already accepted.

pub mod connections;
pub mod counters;
pub mod dedupe;
pub mod failures;
pub mod limits;
pub mod network;
