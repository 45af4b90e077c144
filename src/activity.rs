//! Recent signals and orders, in memory, for the HTTP API.

use std::collections::VecDeque;
use std::sync::Mutex;

use sentinel_actors::order::{Fill, OrderOutcome, SignalOutcome};
use sentinel_actors::recorder::Recorder;
use sentinel_actors::signal::Signal;
use serde::Serialize;

/// A signal and, once it is done, how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct SignalRecord {
    pub signal: Signal,
    /// `pending` until the strategy is done with it.
    pub status: &'static str,
    pub outcome: Option<SignalOutcome>,
}

/// An order a signal produced, or a resting exit that filled.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum OrderRecord {
    Signal(OrderOutcome),
    Exit { status: &'static str, fill: Fill },
}

/// Bounded in-memory history: the oldest records make room for new ones.
pub struct Activity {
    capacity: usize,
    signals: Mutex<VecDeque<SignalRecord>>,
    orders: Mutex<VecDeque<OrderRecord>>,
}

impl Activity {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            signals: Mutex::new(VecDeque::with_capacity(capacity)),
            orders: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// A signal was accepted and queued.
    pub fn accepted(&self, signal: &Signal) {
        push(
            &self.signals,
            self.capacity,
            SignalRecord {
                signal: signal.clone(),
                status: "pending",
                outcome: None,
            },
        );
    }

    /// The newest signals first.
    pub fn signals(&self, limit: usize) -> Vec<SignalRecord> {
        lock(&self.signals)
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// The newest orders first.
    pub fn orders(&self, limit: usize) -> Vec<OrderRecord> {
        lock(&self.orders)
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn push<T>(m: &Mutex<VecDeque<T>>, capacity: usize, item: T) {
    let mut q = lock(m);
    if q.len() == capacity {
        q.pop_front();
    }
    q.push_back(item);
}

impl Recorder for Activity {
    fn signal_finished(&self, signal: &Signal, outcome: &SignalOutcome) {
        let orders = match outcome {
            SignalOutcome::Filled { orders }
            | SignalOutcome::Partial { orders }
            | SignalOutcome::Denied { orders, .. }
            | SignalOutcome::Rejected { orders } => orders.as_slice(),
            SignalOutcome::Ignored { .. } | SignalOutcome::Failed { .. } => &[],
        };
        for order in orders {
            push(
                &self.orders,
                self.capacity,
                OrderRecord::Signal(order.clone()),
            );
        }
        let mut signals = lock(&self.signals);
        match signals.iter_mut().rev().find(|r| r.signal.id == signal.id) {
            Some(record) => {
                record.status = outcome.status();
                record.outcome = Some(outcome.clone());
            }
            None => {
                drop(signals);
                push(
                    &self.signals,
                    self.capacity,
                    SignalRecord {
                        signal: signal.clone(),
                        status: outcome.status(),
                        outcome: Some(outcome.clone()),
                    },
                );
            }
        }
    }

    fn exit_filled(&self, fill: &Fill) {
        push(
            &self.orders,
            self.capacity,
            OrderRecord::Exit {
                status: "filled",
                fill: fill.clone(),
            },
        );
    }
}
