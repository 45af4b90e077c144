//! Idempotency: a delivery whose id was already accepted is answered `duplicate` and processed no second time.
//!
//! Keys are `(source, id)`: the sender's delivery id (`webhook-id`, a payload `id`/`signal_id`) kept for
//! `id_retention`, or for senders without ids a digest of the body, kept for the shorter `body_window` (an identical
//! alert later on is a new signal). The first insert of a key wins atomically (one shard lock of a DashMap), so of
//! 50 identical deliveries arriving at once exactly one is accepted. Entries are plain data, so the journal can
//! persist and restore them.

use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use sentinel_actors::types::{SignalId, Timestamp};
use sha2::{Digest, Sha256};

/// What identifies a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeliveryKey {
    /// The sender's own id for the delivery.
    Id { source: String, id: String },
    /// SHA-256 of the body, for senders that send no id.
    Body { source: String, digest: [u8; 32] },
}

impl DeliveryKey {
    pub fn body(source: &str, body: &[u8]) -> Self {
        DeliveryKey::Body {
            source: source.to_string(),
            digest: Sha256::digest(body).into(),
        }
    }

    /// `id:<source>:<id>` or `body:<source>:<sha256 hex>`, as the journal stores it. Source names hold no `:`.
    pub fn to_text(&self) -> String {
        match self {
            DeliveryKey::Id { source, id } => format!("id:{source}:{id}"),
            DeliveryKey::Body { source, digest } => {
                format!("body:{source}:{}", hex::encode(digest))
            }
        }
    }

    pub fn from_text(text: &str) -> Option<DeliveryKey> {
        let (kind, rest) = text.split_once(':')?;
        let (source, value) = rest.split_once(':')?;
        let source = source.to_string();
        match kind {
            "id" => Some(DeliveryKey::Id {
                source,
                id: value.to_string(),
            }),
            "body" => {
                let digest = hex::decode(value).ok()?.try_into().ok()?;
                Some(DeliveryKey::Body { source, digest })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub signal_id: SignalId,
    pub at: Timestamp,
}

pub struct Deduper {
    seen: DashMap<DeliveryKey, Accepted>,
    id_retention: Duration,
    body_window: Duration,
}

impl Deduper {
    pub fn new(id_retention: Duration, body_window: Duration) -> Self {
        Self {
            seen: DashMap::new(),
            id_retention,
            body_window,
        }
    }

    fn ttl(&self, key: &DeliveryKey) -> i64 {
        let ttl = match key {
            DeliveryKey::Id { .. } => self.id_retention,
            DeliveryKey::Body { .. } => self.body_window,
        };
        ttl.as_millis() as i64
    }

    /// Records `key` as accepted with `signal_id`, unless it already was (and has not expired): then returns the
    /// first acceptance.
    pub fn first_or_insert(
        &self,
        key: DeliveryKey,
        signal_id: SignalId,
        now: Timestamp,
    ) -> Option<Accepted> {
        let ttl = self.ttl(&key);
        match self.seen.entry(key) {
            Entry::Occupied(mut seen) if now.0 - seen.get().at.0 >= ttl => {
                seen.insert(Accepted { signal_id, at: now });
                None
            }
            Entry::Occupied(seen) => Some(seen.get().clone()),
            Entry::Vacant(slot) => {
                slot.insert(Accepted { signal_id, at: now });
                None
            }
        }
    }

    /// Puts back a key the journal recorded (at start-up).
    pub fn restore(&self, key: DeliveryKey, signal_id: SignalId, at: Timestamp) {
        self.seen.insert(key, Accepted { signal_id, at });
    }

    /// Forgets a key (its delivery could not be accepted after all), so a retry is not taken for a duplicate.
    pub fn forget(&self, key: &DeliveryKey) {
        self.seen.remove(key);
    }

    /// Drops expired entries.
    pub fn prune(&self, now: Timestamp) {
        self.seen
            .retain(|key, accepted| now.0 - accepted.at.0 < self.ttl(key));
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn id(s: &str) -> SignalId {
        SignalId::new(s).unwrap()
    }

    fn key(i: &str) -> DeliveryKey {
        DeliveryKey::Id {
            source: "s".into(),
            id: i.into(),
        }
    }

    #[test]
    fn second_delivery_is_a_duplicate_of_the_first() {
        let d = Deduper::new(Duration::from_secs(60), Duration::from_secs(5));
        assert_eq!(d.first_or_insert(key("a"), id("one"), Timestamp(0)), None);
        assert_eq!(
            d.first_or_insert(key("a"), id("two"), Timestamp(1000))
                .unwrap()
                .signal_id,
            id("one")
        );
        assert_eq!(
            d.first_or_insert(key("b"), id("three"), Timestamp(1000)),
            None
        );
        let other_source = DeliveryKey::Id {
            source: "t".into(),
            id: "a".into(),
        };
        assert_eq!(
            d.first_or_insert(other_source, id("four"), Timestamp(1000)),
            None
        );
    }

    #[test]
    fn keys_round_trip_through_text() {
        for key in [key("a:b:c"), DeliveryKey::body("tv", b"{}")] {
            assert_eq!(DeliveryKey::from_text(&key.to_text()), Some(key));
        }
        assert_eq!(DeliveryKey::from_text("nonsense"), None);
    }

    #[test]
    fn body_digests_expire_after_the_window() {
        let d = Deduper::new(Duration::from_secs(60), Duration::from_secs(5));
        let body = DeliveryKey::body("tv", b"{}");
        assert_eq!(
            d.first_or_insert(body.clone(), id("one"), Timestamp(0)),
            None
        );
        assert!(d
            .first_or_insert(body.clone(), id("two"), Timestamp(4_999))
            .is_some());
        assert_eq!(d.first_or_insert(body, id("three"), Timestamp(5_000)), None);
        d.prune(Timestamp(61_000));
        assert!(d.is_empty());
    }

    #[test]
    fn concurrent_identical_deliveries_accept_exactly_one() {
        let d = Arc::new(Deduper::new(
            Duration::from_secs(60),
            Duration::from_secs(5),
        ));
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let d = d.clone();
                std::thread::spawn(move || {
                    d.first_or_insert(key("same"), id(&format!("s{i}")), Timestamp(0))
                        .is_none()
                })
            })
            .collect();
        let accepted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&first| first)
            .count();
        assert_eq!(accepted, 1);
    }
}
