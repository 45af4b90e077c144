//! Keeps the resting limit entries honest: follows the ledger's view and has the exchange actor take entries off the
//! venue when trading leaves `active` (halted or reducing: no entry may fill then) and when a `gtd` entry expires.
//! A consumer of the view like any other: whatever changed the trading state (the API, the CLI, an admin source, a
//! tripped limit, a restart in `halted`), the entries follow.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use tracing::warn;

use crate::event::CancelReason;
use crate::ledger_actor::ViewRx;
use crate::log::Clock;
use crate::messages::CancelResting;
use crate::risk::TradingState;
use crate::types::ClientOrderId;

/// How often expiries are looked for when nothing else happens: a `gtd` entry is off the book within this of its
/// `expires_at` (a tick after it never fills it: the venue checks the time too).
const EXPIRY_EVERY: Duration = Duration::from_secs(1);

/// Runs until the view's sender is gone. `configured` is the trading state when the log never changed it.
pub async fn follow(
    mut view: ViewRx,
    configured: TradingState,
    exchange: Recipient<CancelResting>,
    clock: Arc<dyn Clock>,
) {
    // Asked to cancel and not yet gone from the view: not asked again.
    let mut asked: HashSet<ClientOrderId> = HashSet::new();
    loop {
        tokio::select! {
            changed = view.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(EXPIRY_EVERY) => {}
        }
        let current = view.borrow().clone();
        asked.retain(|id| current.resting.contains_key(id));
        if current.resting.is_empty() {
            continue;
        }
        let state = current.trading_state.unwrap_or(configured);
        let now = clock.now();
        let (reason, due): (_, Vec<_>) = if state == TradingState::Active {
            let expired = current
                .resting
                .values()
                .filter(|o| o.limit.is_some_and(|l| l.expired_at(now)))
                .collect();
            (CancelReason::Expired, expired)
        } else {
            (
                CancelReason::TradingStopped,
                current.resting.values().collect(),
            )
        };
        let orders: Vec<_> = due
            .into_iter()
            .filter(|o| asked.insert(o.client_order_id.clone()))
            .map(|o| (o.symbol.clone(), o.client_order_id.clone()))
            .collect();
        if orders.is_empty() {
            continue;
        }
        if let Err(e) = exchange.try_send(CancelResting { orders, reason }) {
            warn!(error = %e, "resting entries not cancelled now; asking again shortly");
            asked.clear();
        }
    }
}
