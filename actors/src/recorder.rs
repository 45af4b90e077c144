//! Where the actors report what happened, for the operator's API (and, later, the journal).

use crate::order::{Fill, SignalOutcome};
use crate::signal::Signal;

/// Receives every finished signal and every fill. Implemented outside this crate (in memory, on disk).
pub trait Recorder: Send + Sync + 'static {
    /// A signal was acted on (or not) and this is how it ended.
    fn signal_finished(&self, signal: &Signal, outcome: &SignalOutcome);

    /// A resting order (stop-loss, take-profit) filled without a signal asking for it.
    fn exit_filled(&self, fill: &Fill);
}
