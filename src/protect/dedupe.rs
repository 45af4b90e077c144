//! Idempotency: a delivery whose id was already accepted is answered `duplicate` and processed no second time.
//!
//! Keys are `(source, id)`: the sender's delivery id (`webhook-id`, a payload `id`/`signal_id`) kept for
//! `id_retention`, or for senders without ids a digest of the body, kept for the shorter `body_window` (an identical
//! alert later on is a new signal). The first insert of a key wins atomically (one shard lock of a DashMap), so of
//! 50 identical deliveries arriving at once exactly one is accepted. Entries are plain data, so the journal can
//! persist and restore them.

use std::collections::HashMap;
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use sentinel_actors::types::{SignalId, Timestamp};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

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

/// Where the first delivery of a key stands: a duplicate is only answered once the first is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Pending,
    Durable,
    Failed,
}

/// The first acceptance of a key.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub signal_id: SignalId,
    pub at: Timestamp,
    durability: watch::Receiver<Durability>,
}

impl Accepted {
    /// Waits until the first delivery is on disk (`true`) or could not be stored (`false`, the sender should retry).
    /// A duplicate answered before this would acknowledge a signal that might never be processed.
    pub async fn durable(&self) -> bool {
        let mut rx = self.durability.clone();
        let settled = rx.wait_for(|d| *d != Durability::Pending).await;
        settled.is_ok_and(|d| *d == Durability::Durable)
    }
}

/// The right to record a new delivery; settle it with `Deduper::settle`. Dropped unsettled, it counts as failed.
#[derive(Debug)]
pub struct Claim {
    key: DeliveryKey,
    durability: watch::Sender<Durability>,
}

pub struct Deduper {
    seen: DashMap<DeliveryKey, Accepted>,
    id_retention: Duration,
    /// Each source's window for identical bodies; a source not listed has none.
    body_windows: HashMap<String, Duration>,
}

impl Deduper {
    pub fn new(id_retention: Duration, body_windows: HashMap<String, Duration>) -> Self {
        Self {
            seen: DashMap::new(),
            id_retention,
            body_windows,
        }
    }

    fn ttl(&self, key: &DeliveryKey) -> i64 {
        let ttl = match key {
            DeliveryKey::Id { .. } => self.id_retention,
            DeliveryKey::Body { source, .. } => {
                self.body_windows.get(source).copied().unwrap_or_default()
            }
        };
        ttl.as_millis() as i64
    }

    /// Claims `key` for a new delivery with `signal_id`, or returns the first acceptance if it was already claimed
    /// (and has not expired). Atomic: of concurrent claims of one key, exactly one succeeds.
    pub fn claim(
        &self,
        key: DeliveryKey,
        signal_id: SignalId,
        now: Timestamp,
    ) -> Result<Claim, Accepted> {
        let ttl = self.ttl(&key);
        let (tx, rx) = watch::channel(Durability::Pending);
        let accepted = Accepted {
            signal_id,
            at: now,
            durability: rx,
        };
        match self.seen.entry(key.clone()) {
            Entry::Occupied(seen) if now.0 - seen.get().at.0 < ttl => {
                return Err(seen.get().clone())
            }
            Entry::Occupied(mut expired) => {
                expired.insert(accepted);
            }
            Entry::Vacant(slot) => {
                slot.insert(accepted);
            }
        }
        Ok(Claim {
            key,
            durability: tx,
        })
    }

    /// Records how a claimed delivery ended: durable, or not (then the key is forgotten, so a retry is new).
    pub fn settle(&self, claim: Claim, durable: bool) {
        if durable {
            let _ = claim.durability.send(Durability::Durable);
        } else {
            self.seen.remove_if(&claim.key, |_, accepted| {
                accepted
                    .durability
                    .same_channel(&claim.durability.subscribe())
            });
            let _ = claim.durability.send(Durability::Failed);
        }
    }

    /// Puts back a key the journal recorded (at start-up).
    pub fn restore(&self, key: DeliveryKey, signal_id: SignalId, at: Timestamp) {
        let (_, durability) = watch::channel(Durability::Durable);
        self.seen.insert(
            key,
            Accepted {
                signal_id,
                at,
                durability,
            },
        );
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

    fn deduper() -> Deduper {
        let windows = [("tv".to_string(), Duration::from_secs(5))]
            .into_iter()
            .collect();
        Deduper::new(Duration::from_secs(60), windows)
    }

    #[test]
    fn second_delivery_is_a_duplicate_of_the_first() {
        let d = deduper();
        assert!(d.claim(key("a"), id("one"), Timestamp(0)).is_ok());
        assert_eq!(
            d.claim(key("a"), id("two"), Timestamp(1000))
                .unwrap_err()
                .signal_id,
            id("one")
        );
        assert!(d.claim(key("b"), id("three"), Timestamp(1000)).is_ok());
        let other_source = DeliveryKey::Id {
            source: "t".into(),
            id: "a".into(),
        };
        assert!(d.claim(other_source, id("four"), Timestamp(1000)).is_ok());
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
        let d = deduper();
        let body = DeliveryKey::body("tv", b"{}");
        assert!(d.claim(body.clone(), id("one"), Timestamp(0)).is_ok());
        assert!(d.claim(body.clone(), id("two"), Timestamp(4_999)).is_err());
        assert!(d.claim(body, id("three"), Timestamp(5_000)).is_ok());
        // A source without a window never treats identical bodies as duplicates.
        let other = DeliveryKey::body("other", b"{}");
        assert!(d.claim(other.clone(), id("four"), Timestamp(5_000)).is_ok());
        assert!(d.claim(other, id("five"), Timestamp(5_000)).is_ok());
        d.prune(Timestamp(61_000));
        assert!(d.is_empty());
    }

    #[actix_web::test]
    async fn a_duplicate_waits_for_the_first_to_be_durable() {
        let d = deduper();
        let claim = d.claim(key("a"), id("one"), Timestamp(0)).unwrap();
        let first = d.claim(key("a"), id("two"), Timestamp(1)).unwrap_err();
        let waiting = tokio::spawn(async move { first.durable().await });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "not answered while the first is pending"
        );
        d.settle(claim, true);
        assert!(waiting.await.unwrap());
        assert!(
            d.claim(key("a"), id("three"), Timestamp(2)).is_err(),
            "still remembered"
        );
    }

    #[actix_web::test]
    async fn a_failed_first_delivery_frees_the_key() {
        let d = deduper();
        let claim = d.claim(key("a"), id("one"), Timestamp(0)).unwrap();
        let first = d.claim(key("a"), id("two"), Timestamp(1)).unwrap_err();
        d.settle(claim, false);
        assert!(!first.durable().await, "the duplicate is told to retry");
        assert!(
            d.claim(key("a"), id("three"), Timestamp(2)).is_ok(),
            "the retry is new"
        );
    }

    #[test]
    fn concurrent_identical_deliveries_claim_exactly_once() {
        let d = Arc::new(deduper());
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let d = d.clone();
                std::thread::spawn(move || {
                    d.claim(key("same"), id(&format!("s{i}")), Timestamp(0))
                        .is_ok()
                })
            })
            .collect();
        let claimed = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&won| won)
            .count();
        assert_eq!(claimed, 1);
    }
}
