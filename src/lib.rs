//! Sentinel: a daemon that turns authenticated trading-signal webhooks into risk-checked exchange orders.
//!
//! `run` starts the actors (see `sentinel_actors`) and the HTTP edge; everything is driven by a `Config`.

pub mod adapters;
pub mod auth;
pub mod chat;
pub mod config;
pub mod control;
pub mod daemon;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod notify;
pub mod payload;
pub mod protect;
pub mod rules;
pub mod secret;
pub mod tls;

pub use config::Config;
pub use daemon::{run, run_with_reloads, Listeners};
