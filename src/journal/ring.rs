//! The newest committed events, in memory: consumers that follow the head of the log (the ledger, after every
//! batch) read from here and never touch SQLite.

use std::collections::VecDeque;
use std::sync::RwLock;

use sentinel_actors::event::{Offset, Stamped};

/// Holds at most `capacity` events with consecutive offsets, the newest last. Only the writer pushes, and only after
/// the commit that made the events durable.
pub(super) struct Ring {
    events: RwLock<VecDeque<Stamped>>,
    capacity: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            events: RwLock::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity,
        }
    }

    /// Appends one commit's events (consecutive, after the ones held), dropping the oldest beyond capacity.
    pub fn push(&self, committed: Vec<Stamped>) {
        if self.capacity == 0 || committed.is_empty() {
            return;
        }
        let mut events = self.events.write().unwrap_or_else(|e| e.into_inner());
        // Consecutive offsets are what makes `read` an index computation; a gap (which the writer never makes)
        // starts the ring over rather than answer wrongly.
        let follows = match (events.back(), committed.first()) {
            (Some(last), Some(first)) => first.offset == last.offset.next(),
            _ => true,
        };
        if !follows {
            events.clear();
        }
        let skip = committed.len().saturating_sub(self.capacity);
        events.extend(committed.into_iter().skip(skip));
        let excess = events.len().saturating_sub(self.capacity);
        events.drain(..excess);
    }

    /// Up to `max` events from `from` on, if the ring reaches back that far (`None`: read SQLite).
    pub fn read(&self, from: Offset, max: usize) -> Option<Vec<Stamped>> {
        let events = self.events.read().unwrap_or_else(|e| e.into_inner());
        let first = events.front()?.offset;
        if from < first {
            return None;
        }
        let start = usize::try_from(from.0 - first.0).unwrap_or(usize::MAX);
        Some(events.iter().skip(start).take(max).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_actors::event::Event;
    use sentinel_actors::risk::TradingState;
    use sentinel_actors::types::Timestamp;

    fn stamped(offsets: std::ops::RangeInclusive<u64>) -> Vec<Stamped> {
        offsets
            .map(|n| Stamped {
                offset: Offset(n),
                at: Timestamp(n as i64),
                event: Event::TradingStateChanged {
                    state: TradingState::Active,
                },
            })
            .collect()
    }

    fn offsets(events: Option<Vec<Stamped>>) -> Option<Vec<u64>> {
        events.map(|e| e.iter().map(|s| s.offset.0).collect())
    }

    #[test]
    fn keeps_the_newest_and_sends_older_reads_elsewhere() {
        let ring = Ring::new(4);
        assert_eq!(offsets(ring.read(Offset(1), 10)), None, "empty");
        ring.push(stamped(1..=3));
        ring.push(stamped(4..=6));
        assert_eq!(offsets(ring.read(Offset(2), 10)), None, "dropped");
        assert_eq!(offsets(ring.read(Offset(3), 2)), Some(vec![3, 4]));
        assert_eq!(offsets(ring.read(Offset(5), 10)), Some(vec![5, 6]));
        assert_eq!(offsets(ring.read(Offset(7), 10)), Some(vec![]), "head");
        ring.push(stamped(7..=20));
        assert_eq!(
            offsets(ring.read(Offset(17), 10)),
            Some(vec![17, 18, 19, 20])
        );
    }
}
