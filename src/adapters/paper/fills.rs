//! The fills the paper venue remembers by client order id, so that a retried or recovered order is answered with its
//! first fill instead of filling twice; bounded, oldest forgotten first.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use sentinel_actors::order::Fill;
use sentinel_actors::types::ClientOrderId;

/// How many fills are remembered. A retry comes seconds after its first try, and a signal recovered after a restart
/// has its fills put back from the ledger (see `Book::restore`), so idempotency only has to span the orders in
/// flight; this many is far more than that, at a few hundred bytes a fill (about 16 MiB when full).
pub const REMEMBERED_FILLS: usize = 65_536;

/// Fills by client order id, with the order they came in so the oldest can be forgotten.
#[derive(Debug)]
pub struct FillMemory {
    capacity: usize,
    by_id: HashMap<ClientOrderId, Fill>,
    /// Oldest first; holds exactly the keys of `by_id`.
    arrival: VecDeque<ClientOrderId>,
}

impl FillMemory {
    /// Remembers at most `capacity` fills (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            by_id: HashMap::new(),
            arrival: VecDeque::new(),
        }
    }

    pub fn get(&self, id: &ClientOrderId) -> Option<&Fill> {
        self.by_id.get(id)
    }

    /// Remembers a fill, forgetting the oldest beyond the capacity. An id already known keeps its first fill: that
    /// is the one a retry must be answered with.
    pub fn remember(&mut self, fill: Fill) {
        let Entry::Vacant(slot) = self.by_id.entry(fill.client_order_id.clone()) else {
            return;
        };
        self.arrival.push_back(slot.key().clone());
        slot.insert(fill);
        while self.arrival.len() > self.capacity {
            if let Some(oldest) = self.arrival.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_actors::order::FillReason;
    use sentinel_actors::types::{Price, Quantity, Side, SignalId, Symbol, Timestamp};
    use std::str::FromStr;

    fn fill(signal: &str, price: &str) -> Fill {
        Fill {
            client_order_id: ClientOrderId::derive(&SignalId::new(signal).unwrap(), 0),
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side: Side::Buy,
            quantity: Quantity::from_str("1").unwrap(),
            price: Price::from_str(price).unwrap(),
            fee: Default::default(),
            reason: FillReason::Signal,
            at: Timestamp(0),
        }
    }

    #[test]
    fn forgets_the_oldest_beyond_the_capacity() {
        let mut memory = FillMemory::new(3);
        for (i, signal) in ["a", "b", "c", "d"].into_iter().enumerate() {
            memory.remember(fill(signal, &(i + 1).to_string()));
        }
        assert_eq!(memory.len(), 3);
        assert!(
            memory.get(&fill("a", "1").client_order_id).is_none(),
            "the oldest is gone"
        );
        for signal in ["b", "c", "d"] {
            assert!(memory.get(&fill(signal, "1").client_order_id).is_some());
        }
    }

    #[test]
    fn a_known_id_keeps_its_first_fill_and_its_place() {
        let mut memory = FillMemory::new(2);
        memory.remember(fill("a", "1"));
        memory.remember(fill("b", "2"));
        memory.remember(fill("a", "3"));
        let a = &fill("a", "1").client_order_id;
        assert_eq!(memory.get(a).map(|f| f.price), Price::from_str("1").ok());
        memory.remember(fill("c", "4"));
        assert!(
            memory.get(a).is_none(),
            "still the oldest, so forgotten first"
        );
        assert_eq!(memory.len(), 2);
    }
}
