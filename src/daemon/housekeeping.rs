//! Periodic chores: forget expired idempotency keys and rate-limit state, sum up refusals in the log, prune the
//! journal.

use std::sync::Arc;
use std::time::Duration;

use sentinel_actors::types::Timestamp;
use tracing::warn;

use crate::journal::Journal;
use crate::protect::counters::RefusalCounters;
use crate::protect::dedupe::Deduper;
use crate::protect::limits::RateLimits;

/// How often housekeeping runs; also the window over which refusals are summed up in the log.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(10);
/// How often the idempotency index is pruned: often, so that what arrives between two prunes stays small next to its
/// bound (measured: at 10 s, the index's tables grew by a step of about 14 MiB under sustained overload).
const PRUNE_DELIVERIES_EVERY: Duration = Duration::from_secs(1);

/// Forgets expired idempotency keys and recovered rate-limit state, logs the refusals that were not logged one by
/// one, and prunes old journal rows.
pub async fn housekeeping(
    limits: Arc<RateLimits>,
    refusals: Arc<RefusalCounters>,
    deduper: Arc<Deduper>,
    journal: Arc<Journal>,
    retention: Duration,
) {
    let mut tick = tokio::time::interval(PRUNE_DELIVERIES_EVERY);
    let per_chore = (HOUSEKEEPING_EVERY.as_secs() / PRUNE_DELIVERIES_EVERY.as_secs()).max(1);
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        let now = Timestamp::now();
        deduper.prune(now);
        ticks += 1;
        if ticks % per_chore != 1 {
            continue;
        }
        for unlogged in refusals.take_unlogged() {
            warn!(
                source = %unlogged.source,
                reason = unlogged.reason,
                count = unlogged.count,
                window_secs = HOUSEKEEPING_EVERY.as_secs(),
                "webhooks refused in the last window (only the first was logged)"
            );
        }
        limits.prune();
        // Hourly.
        if ticks % (3600 / PRUNE_DELIVERIES_EVERY.as_secs()) == 1 {
            journal.prune(Timestamp(now.0 - retention.as_millis() as i64));
        }
    }
}
