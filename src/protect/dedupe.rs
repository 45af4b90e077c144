//! Idempotency: a delivery whose id was already accepted is answered `duplicate` and processed no second time.
//!
//! Keys are per source: the sender's delivery id (`webhook-id`, a payload `id`/`signal_id`) kept for
//! `id_retention`; for a signed timestamp, the signature, kept for as long as the timestamp passes (twice the
//! tolerance); for senders without ids, a digest of the body, kept for the shorter `body_window` (an identical alert
//! later on is a new signal). A delivery may have two keys (a signature and a body digest): a duplicate by either is
//! a duplicate. The first insert of a key wins atomically (one shard lock of a DashMap), so of 50 identical
//! deliveries arriving at once exactly one is accepted. Entries are plain data, so the journal can persist and
//! restore them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use sentinel_actors::types::{SignalId, Timestamp};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// The longest delivery id taken, in bytes. Ids are kept for days and reloaded at every start, so their size is
/// bounded; a longer one is answered 422.
pub const MAX_DELIVERY_ID_BYTES: usize = 128;

/// What identifies a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeliveryKey {
    /// The sender's own id for the delivery: opaque, compared byte for byte.
    Id { source: String, id: String },
    /// A verified signature over a signed timestamp and the body.
    Signature { source: String, signature: [u8; 32] },
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

    fn source(&self) -> &str {
        match self {
            DeliveryKey::Id { source, .. }
            | DeliveryKey::Signature { source, .. }
            | DeliveryKey::Body { source, .. } => source,
        }
    }

    /// `idx:<source>:<id as hex>`, `sig:<source>:<hex>` or `body:<source>:<sha256 hex>`, as the journal stores it.
    /// Source names hold no `:` and the values are hex, so the text holds no space and keys can be joined by one.
    pub fn to_text(&self) -> String {
        match self {
            DeliveryKey::Id { source, id } => format!("idx:{source}:{}", hex::encode(id)),
            DeliveryKey::Signature { source, signature } => {
                format!("sig:{source}:{}", hex::encode(signature))
            }
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
            // Journals written before ids were hex-encoded hold them as they came.
            "id" => Some(DeliveryKey::Id {
                source,
                id: value.to_string(),
            }),
            "idx" => Some(DeliveryKey::Id {
                source,
                id: String::from_utf8(hex::decode(value).ok()?).ok()?,
            }),
            "sig" => {
                let signature = hex::decode(value).ok()?.try_into().ok()?;
                Some(DeliveryKey::Signature { source, signature })
            }
            "body" => {
                let digest = hex::decode(value).ok()?.try_into().ok()?;
                Some(DeliveryKey::Body { source, digest })
            }
            _ => None,
        }
    }

    /// The keys of one delivery as one journal field.
    pub fn join(keys: &[DeliveryKey]) -> String {
        keys.iter()
            .map(DeliveryKey::to_text)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The keys of a journal field written by `join` (or a single key of an older journal, whose raw id may hold
    /// spaces).
    pub fn split(text: &str) -> Vec<DeliveryKey> {
        if text.starts_with("id:") {
            return DeliveryKey::from_text(text).into_iter().collect();
        }
        text.split(' ').filter_map(DeliveryKey::from_text).collect()
    }
}

/// How long one source's keys are remembered, besides delivery ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Windows {
    /// Identical bodies within this are one delivery.
    pub body: Duration,
    /// A signed request passes for this long (twice the timestamp tolerance); zero if nothing is signed with a time.
    pub replay: Duration,
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
    /// While the first delivery is being recorded; `None` once it is durable (most entries: no channel kept).
    durability: Option<watch::Receiver<Durability>>,
}

impl Accepted {
    /// Waits until the first delivery is on disk (`true`) or could not be stored (`false`, the sender should retry).
    /// A duplicate answered before this would acknowledge a signal that might never be processed.
    pub async fn durable(&self) -> bool {
        let Some(rx) = &self.durability else {
            return true;
        };
        let mut rx = rx.clone();
        let settled = rx.wait_for(|d| *d != Durability::Pending).await;
        settled.is_ok_and(|d| *d == Durability::Durable)
    }

    fn claimed_by(&self, claim: &watch::Receiver<Durability>) -> bool {
        self.durability
            .as_ref()
            .is_some_and(|rx| rx.same_channel(claim))
    }
}

/// Why a delivery may not be claimed.
#[derive(Debug)]
pub enum Refused {
    /// A key of it was claimed already: this is the first acceptance.
    Duplicate(Accepted),
    /// As many signatures and body digests as the bound allows are remembered within their windows; one more
    /// could not be recognised as a replay, so the delivery is shed (503) rather than taken unguarded.
    Full,
}

/// The right to record a new delivery; settle it with `Deduper::settle`. Dropped unsettled, it counts as failed.
#[derive(Debug)]
pub struct Claim {
    keys: Vec<DeliveryKey>,
    durability: watch::Sender<Durability>,
}

impl Claim {
    /// The claimed keys, as the journal stores them.
    pub fn keys_text(&self) -> String {
        DeliveryKey::join(&self.keys)
    }
}

/// Delivery ids remembered at most. Past this the oldest are forgotten (at each prune): safe, since an id also makes
/// the signal's id, which the journal refuses twice, so a forgotten id sent again is still answered `duplicate`.
pub const MAX_REMEMBERED_IDS: usize = 10_000;
/// Signatures and body digests remembered at most. Forgetting one would let its replay through, so past this new
/// deliveries that need one are shed instead.
pub const MAX_REMEMBERED_IN_WINDOWS: usize = 50_000;

pub struct Deduper {
    seen: DashMap<DeliveryKey, Accepted>,
    id_retention: Duration,
    /// Each source's windows; a source not listed has none.
    windows: HashMap<String, Windows>,
    /// Signature and body keys remembered, as of the last prune.
    in_windows: AtomicUsize,
}

impl Deduper {
    pub fn new(id_retention: Duration, windows: HashMap<String, Windows>) -> Self {
        Self {
            seen: DashMap::new(),
            id_retention,
            windows,
            in_windows: AtomicUsize::new(0),
        }
    }

    fn ttl(&self, key: &DeliveryKey) -> i64 {
        let windows = self.windows.get(key.source()).copied().unwrap_or_default();
        let ttl = match key {
            // A signed delivery id must outlive its signature's freshness, whatever the retention says.
            DeliveryKey::Id { .. } => self.id_retention.max(windows.replay),
            DeliveryKey::Signature { .. } => windows.replay,
            DeliveryKey::Body { .. } => windows.body,
        };
        ttl.as_millis() as i64
    }

    /// Claims `keys` for a new delivery with `signal_id`, or returns the first acceptance of whichever key was
    /// already claimed (and has not expired). Atomic per key: of concurrent claims of one key, exactly one succeeds.
    pub fn claim(
        &self,
        keys: Vec<DeliveryKey>,
        signal_id: SignalId,
        now: Timestamp,
    ) -> Result<Claim, Refused> {
        let windowed = keys.iter().any(|k| !matches!(k, DeliveryKey::Id { .. }));
        if windowed && self.in_windows.load(Ordering::Relaxed) >= MAX_REMEMBERED_IN_WINDOWS {
            return Err(Refused::Full);
        }
        let (tx, rx) = watch::channel(Durability::Pending);
        let accepted = Accepted {
            signal_id,
            at: now,
            durability: Some(rx),
        };
        for (i, key) in keys.iter().enumerate() {
            let ttl = self.ttl(key);
            match self.seen.entry(key.clone()) {
                Entry::Occupied(seen) if now.0 - seen.get().at.0 < ttl => {
                    let first = seen.get().clone();
                    drop(seen);
                    // The keys claimed so far now stand for the first delivery too: a replay of this one is also
                    // its duplicate.
                    for earlier in &keys[..i] {
                        self.seen.insert(earlier.clone(), first.clone());
                    }
                    return Err(Refused::Duplicate(first));
                }
                Entry::Occupied(mut expired) => {
                    expired.insert(accepted.clone());
                }
                Entry::Vacant(slot) => {
                    slot.insert(accepted.clone());
                }
            }
        }
        Ok(Claim {
            keys,
            durability: tx,
        })
    }

    /// Records how a claimed delivery ended: durable, or not (then its keys are forgotten, so a retry is new).
    pub fn settle(&self, claim: Claim, durable: bool) {
        let mine = claim.durability.subscribe();
        if durable {
            let _ = claim.durability.send(Durability::Durable);
            // Durable for good: the entry keeps no channel (duplicates already waiting hold their own receiver).
            for key in &claim.keys {
                if let Some(mut accepted) = self.seen.get_mut(key) {
                    if accepted.claimed_by(&mine) {
                        accepted.durability = None;
                    }
                }
            }
        } else {
            for key in &claim.keys {
                self.seen
                    .remove_if(key, |_, accepted| accepted.claimed_by(&mine));
            }
            let _ = claim.durability.send(Durability::Failed);
        }
    }

    /// Puts back the keys the journal recorded, given oldest first (at start-up). Newest first, a key keeps its
    /// latest acceptance, and past `MAX_REMEMBERED_IDS` older ids are not loaded at all (the journal still refuses
    /// their signal ids); expired keys go at once.
    pub fn restore<'a>(
        &self,
        deliveries: impl DoubleEndedIterator<Item = (&'a str, &'a SignalId, Timestamp)>,
        now: Timestamp,
    ) {
        let mut ids = 0;
        for (keys, signal_id, at) in deliveries.rev() {
            for key in DeliveryKey::split(keys) {
                if matches!(key, DeliveryKey::Id { .. }) {
                    if ids >= MAX_REMEMBERED_IDS {
                        continue;
                    }
                    ids += 1;
                }
                self.seen.entry(key).or_insert_with(|| Accepted {
                    signal_id: signal_id.clone(),
                    at,
                    durability: None,
                });
            }
        }
        self.prune(now);
    }

    /// Drops expired entries, then the oldest delivery ids past `MAX_REMEMBERED_IDS`, and counts what is left in
    /// the windows.
    pub fn prune(&self, now: Timestamp) {
        self.seen
            .retain(|key, accepted| now.0 - accepted.at.0 < self.ttl(key));
        let mut id_ages = Vec::new();
        let mut in_windows = 0;
        for entry in self.seen.iter() {
            match entry.key() {
                DeliveryKey::Id { .. } => id_ages.push(entry.value().at.0),
                _ => in_windows += 1,
            }
        }
        if id_ages.len() > MAX_REMEMBERED_IDS {
            let excess = id_ages.len() - MAX_REMEMBERED_IDS;
            let (_, cutoff, _) = id_ages.select_nth_unstable(excess - 1);
            let cutoff = *cutoff;
            self.seen.retain(|key, accepted| {
                !matches!(key, DeliveryKey::Id { .. }) || accepted.at.0 > cutoff
            });
        }
        self.in_windows.store(in_windows, Ordering::Relaxed);
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
        let windows = [
            (
                "tv".to_string(),
                Windows {
                    body: Duration::from_secs(5),
                    replay: Duration::ZERO,
                },
            ),
            (
                "signed".to_string(),
                Windows {
                    body: Duration::ZERO,
                    replay: Duration::from_secs(600),
                },
            ),
            (
                "both".to_string(),
                Windows {
                    body: Duration::from_secs(5),
                    replay: Duration::from_secs(600),
                },
            ),
        ]
        .into_iter()
        .collect();
        Deduper::new(Duration::from_secs(60), windows)
    }

    fn claim(d: &Deduper, key: DeliveryKey, signal: &str, at: i64) -> Result<Claim, Accepted> {
        d.claim(vec![key], id(signal), Timestamp(at))
            .map_err(|refused| match refused {
                Refused::Duplicate(first) => first,
                Refused::Full => panic!("full"),
            })
    }

    #[test]
    fn second_delivery_is_a_duplicate_of_the_first() {
        let d = deduper();
        assert!(claim(&d, key("a"), "one", 0).is_ok());
        assert_eq!(
            claim(&d, key("a"), "two", 1000).unwrap_err().signal_id,
            id("one")
        );
        assert!(claim(&d, key("b"), "three", 1000).is_ok());
        let other_source = DeliveryKey::Id {
            source: "t".into(),
            id: "a".into(),
        };
        assert!(claim(&d, other_source, "four", 1000).is_ok());
    }

    #[test]
    fn keys_round_trip_through_text() {
        let signature = DeliveryKey::Signature {
            source: "signed".into(),
            signature: [7; 32],
        };
        let keys = [
            key("a:b:c"),
            key("with space"),
            key("ünïcode\n"),
            DeliveryKey::body("tv", b"{}"),
            signature,
        ];
        for key in &keys {
            assert_eq!(DeliveryKey::from_text(&key.to_text()).as_ref(), Some(key));
        }
        assert_eq!(DeliveryKey::split(&DeliveryKey::join(&keys)), keys);
        assert_eq!(DeliveryKey::from_text("nonsense"), None);
        // An older journal's raw id, spaces and all.
        assert_eq!(DeliveryKey::split("id:s:a b"), vec![key("a b")]);
    }

    #[test]
    fn ids_are_opaque_and_distinct() {
        let d = deduper();
        let spaced = key("a b");
        let hexed = key(&hex::encode("a b"));
        assert!(claim(&d, spaced, "one", 0).is_ok());
        assert!(claim(&d, hexed, "two", 0).is_ok(), "not the same id");
    }

    #[test]
    fn signatures_are_remembered_for_the_replay_window() {
        let d = deduper();
        let sig = DeliveryKey::Signature {
            source: "signed".into(),
            signature: [1; 32],
        };
        assert!(claim(&d, sig.clone(), "one", 0).is_ok());
        // Past any body window, still inside twice the tolerance.
        assert!(claim(&d, sig.clone(), "two", 65_000).is_err());
        assert!(claim(&d, sig.clone(), "two", 599_999).is_err());
        assert!(claim(&d, sig, "three", 600_000).is_ok(), "stale by now");
    }

    #[test]
    fn a_duplicate_by_any_key_is_a_duplicate() {
        let d = deduper();
        let body = DeliveryKey::body("both", b"{}");
        let sig = |n| DeliveryKey::Signature {
            source: "both".into(),
            signature: [n; 32],
        };
        assert!(d
            .claim(vec![sig(1), body.clone()], id("one"), Timestamp(0))
            .is_ok());
        // Re-signed with another timestamp, same body: a duplicate of the first.
        let Err(Refused::Duplicate(first)) =
            d.claim(vec![sig(2), body.clone()], id("two"), Timestamp(1))
        else {
            panic!("not a duplicate")
        };
        assert_eq!(first.signal_id, id("one"));
        // And that second signature now answers the same.
        let Err(Refused::Duplicate(again)) = d.claim(vec![sig(2)], id("three"), Timestamp(2))
        else {
            panic!("not a duplicate")
        };
        assert_eq!(again.signal_id, id("one"));
    }

    #[test]
    fn body_digests_expire_after_the_window() {
        let d = deduper();
        let body = DeliveryKey::body("tv", b"{}");
        assert!(claim(&d, body.clone(), "one", 0).is_ok());
        assert!(claim(&d, body.clone(), "two", 4_999).is_err());
        assert!(claim(&d, body, "three", 5_000).is_ok());
        // A source without a window never treats identical bodies as duplicates.
        let other = DeliveryKey::body("other", b"{}");
        assert!(claim(&d, other.clone(), "four", 5_000).is_ok());
        assert!(claim(&d, other, "five", 5_000).is_ok());
        d.prune(Timestamp(61_000));
        assert!(d.is_empty());
    }

    #[actix_web::test]
    async fn a_duplicate_waits_for_the_first_to_be_durable() {
        let d = deduper();
        let mine = claim(&d, key("a"), "one", 0).unwrap();
        let first = claim(&d, key("a"), "two", 1).unwrap_err();
        let waiting = tokio::spawn(async move { first.durable().await });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "not answered while the first is pending"
        );
        d.settle(mine, true);
        assert!(waiting.await.unwrap());
        assert!(claim(&d, key("a"), "three", 2).is_err(), "still remembered");
    }

    #[actix_web::test]
    async fn a_failed_first_delivery_frees_the_key() {
        let d = deduper();
        let mine = claim(&d, key("a"), "one", 0).unwrap();
        let first = claim(&d, key("a"), "two", 1).unwrap_err();
        d.settle(mine, false);
        assert!(!first.durable().await, "the duplicate is told to retry");
        assert!(claim(&d, key("a"), "three", 2).is_ok(), "the retry is new");
    }

    #[test]
    fn remembered_keys_are_bounded() {
        let d = deduper();
        for i in 0..(MAX_REMEMBERED_IDS + 500) {
            let c = claim(&d, key(&format!("k{i}")), "s", i as i64).unwrap();
            d.settle(c, true);
        }
        d.prune(Timestamp(1_000));
        assert_eq!(d.len(), MAX_REMEMBERED_IDS, "the oldest ids are forgotten");
        assert!(claim(&d, key("k0"), "s", 1_001).is_ok(), "forgotten");
        assert!(claim(
            &d,
            key(&format!("k{}", MAX_REMEMBERED_IDS + 499)),
            "s",
            1_001
        )
        .is_err());

        // Signatures cannot be forgotten inside their window: past the bound, new ones are refused.
        let d = deduper();
        for i in 0..MAX_REMEMBERED_IN_WINDOWS {
            let mut sig = [0u8; 32];
            sig[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let key = DeliveryKey::Signature {
                source: "signed".into(),
                signature: sig,
            };
            assert!(claim(&d, key, "s", 0).is_ok());
        }
        d.prune(Timestamp(1));
        let one_more = DeliveryKey::Signature {
            source: "signed".into(),
            signature: [9; 32],
        };
        assert!(matches!(
            d.claim(vec![one_more], id("s"), Timestamp(2)),
            Err(Refused::Full)
        ));
        assert!(claim(&d, key("an-id"), "s", 2).is_ok(), "ids still go");
    }

    #[test]
    fn restoring_keeps_the_newest_acceptance_and_the_bound() {
        let d = deduper();
        let (one, two) = (id("one"), id("two"));
        let body = DeliveryKey::body("tv", b"{}").to_text();
        let mut rows: Vec<(String, SignalId, Timestamp)> = vec![
            (body.clone(), one.clone(), Timestamp(1_000)),
            (body, two.clone(), Timestamp(9_000)),
        ];
        for i in 0..(MAX_REMEMBERED_IDS + 10) {
            rows.push((
                key(&format!("k{i}")).to_text(),
                one.clone(),
                Timestamp(9_000),
            ));
        }
        d.restore(
            rows.iter().map(|(k, s, at)| (k.as_str(), s, *at)),
            Timestamp(10_000),
        );
        // The body's later acceptance stands; only the newest ids are loaded.
        let Err(Refused::Duplicate(first)) = d.claim(
            vec![DeliveryKey::body("tv", b"{}")],
            id("x"),
            Timestamp(10_000),
        ) else {
            panic!("not a duplicate")
        };
        assert_eq!(first.signal_id, two);
        assert_eq!(d.len(), MAX_REMEMBERED_IDS + 1);
        assert!(
            claim(&d, key("k0"), "x", 10_000).is_ok(),
            "the oldest were not loaded"
        );
    }

    #[test]
    fn concurrent_identical_deliveries_claim_exactly_once() {
        let d = Arc::new(deduper());
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let d = d.clone();
                std::thread::spawn(move || claim(&d, key("same"), &format!("s{i}"), 0).is_ok())
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
