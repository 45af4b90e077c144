//! The ingress protections around authentication: who may connect, how often, and what was already accepted.

pub mod counters;
pub mod dedupe;
pub mod limits;
pub mod network;
