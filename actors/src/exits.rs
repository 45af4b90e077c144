//! Stop-loss and take-profit levels resting for a position: armed when an entry fills, gone once the position is
//! flat. One definition, used by the paper venue as it trades and by the ledger as it folds the log, so both agree
//! after a restart.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::order::{Fill, FillReason, OrderRequest};
use crate::signal::ExitLevel;
use crate::types::{ClientOrderId, PositionSide, Price, SignalId};

/// Leg numbers of the exit orders an entry arms, after the legs a signal itself can produce.
pub const STOP_LOSS_LEG: u8 = 90;
pub const TAKE_PROFIT_LEG: u8 = 91;
/// Levels are kept to this many decimal places.
const SCALE: u32 = 8;

/// The exit orders resting for one symbol's position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmedExits {
    pub side: PositionSide,
    /// The stop's current level: a trailing stop's moves land here.
    pub stop_loss: Option<(Price, ClientOrderId)>,
    pub take_profit: Option<(Price, ClientOrderId)>,
    /// Set when the stop trails (`"trailing_stop"`); journals and checkpoints from before trailing stops have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trailing: Option<Trail>,
}

/// A trailing stop's state: kept as data so the paper venue and the ledger, which both apply `ArmedExits::trail` to
/// every price they see, agree on the level after a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trail {
    /// The distance in percent (0.1 to 10).
    pub rate: Decimal,
    /// The best price seen for the position since the stop was armed (highest for a long, lowest for a short).
    pub best: Price,
}

impl ArmedExits {
    /// The exits an entry arms for the whole position once it filled, leaving the position at `position_after`
    /// (signed) with `entry` its average entry price: `%` levels are measured from it. `None` when the entry asks for
    /// none: the exits already resting stay.
    pub fn arm(order: &OrderRequest, entry: Price, position_after: Decimal) -> Option<ArmedExits> {
        let protection = order.protection;
        if order.reduce_only
            || position_after.is_zero()
            || (protection.stop_loss.is_none() && protection.take_profit.is_none())
        {
            return None;
        }
        let side = if position_after.is_sign_positive() {
            PositionSide::Long
        } else {
            PositionSide::Short
        };
        let level = |exit: ExitLevel, against: bool| level_at(side, entry, exit, against);
        Some(ArmedExits {
            side,
            trailing: trail_of(protection.stop_loss, entry),
            stop_loss: protection
                .stop_loss
                .and_then(|exit| level(exit, true))
                .map(|p| (p, ClientOrderId::derive(&order.signal_id, STOP_LOSS_LEG))),
            take_profit: protection
                .take_profit
                .and_then(|exit| level(exit, false))
                .map(|p| (p, ClientOrderId::derive(&order.signal_id, TAKE_PROFIT_LEG))),
        })
    }

    /// The exits after a signal moved them (`update_stops`, `move_stop_to_breakeven`), for the position on `side`
    /// with average entry `entry`: levels given are computed as `arm` does (`%` from the average entry) with legs of
    /// this signal; break-even puts the stop at `entry`; a level not given keeps the one `resting`. The same signal
    /// on the same position always gives the same exits, so moving them again after a restart changes nothing.
    pub fn moved(
        resting: Option<&ArmedExits>,
        signal_id: &SignalId,
        side: PositionSide,
        entry: Price,
        stop_loss: Option<ExitLevel>,
        take_profit: Option<ExitLevel>,
        breakeven: bool,
    ) -> ArmedExits {
        // Levels guard the side they were armed for; none resting for another side is kept.
        let resting = resting.filter(|armed| armed.side == side);
        let stop_loss = if breakeven {
            Some(ExitLevel::Price(entry))
        } else {
            stop_loss
        };
        let leg = |exit: Option<ExitLevel>,
                   against: bool,
                   number: u8,
                   kept: Option<&(Price, ClientOrderId)>| {
            match exit {
                Some(exit) => level_at(side, entry, exit, against)
                    .map(|price| (price, ClientOrderId::derive(signal_id, number))),
                None => kept.cloned(),
            }
        };
        let trailing = match stop_loss {
            Some(exit) => trail_of(Some(exit), entry),
            None => resting.and_then(|r| r.trailing),
        };
        ArmedExits {
            side,
            trailing,
            stop_loss: leg(
                stop_loss,
                true,
                STOP_LOSS_LEG,
                resting.and_then(|r| r.stop_loss.as_ref()),
            ),
            take_profit: leg(
                take_profit,
                false,
                TAKE_PROFIT_LEG,
                resting.and_then(|r| r.take_profit.as_ref()),
            ),
        }
    }

    /// Moves a trailing stop for a new `price`: a new best price (a high for a long, a low for a short) puts the
    /// stop `rate`% from it, and the stop only ever tightens. The paper venue and the ledger call this on every price
    /// they see, before looking for a crossing; whether the stop moved.
    pub fn trail(&mut self, price: Price) -> bool {
        let Some(trail) = self.trailing.as_mut() else {
            return false;
        };
        let Some((stop, _)) = self.stop_loss.as_mut() else {
            return false;
        };
        let long = self.side == PositionSide::Long;
        let better = if long {
            price > trail.best
        } else {
            price < trail.best
        };
        if !better {
            return false;
        }
        trail.best = price;
        let Some(level) = level_at(self.side, price, ExitLevel::Percent(trail.rate), true) else {
            return false;
        };
        let tighter = if long { level > *stop } else { level < *stop };
        if tighter {
            *stop = level;
        }
        tighter
    }

    /// Takes the leg with this client order id off, leaving the other resting; whether it was resting.
    pub fn cancel(&mut self, id: &ClientOrderId) -> bool {
        if self
            .stop_loss
            .as_ref()
            .is_some_and(|(_, resting)| resting == id)
        {
            self.stop_loss = None;
            self.trailing = None;
            return true;
        }
        if self
            .take_profit
            .as_ref()
            .is_some_and(|(_, resting)| resting == id)
        {
            self.take_profit = None;
            return true;
        }
        false
    }

    /// The exit `price` crosses, if any; a stop wins over a target when both are crossed.
    pub fn crossed(&self, price: Price) -> Option<(FillReason, ClientOrderId)> {
        let long = self.side == PositionSide::Long;
        let stop =
            self.stop_loss
                .as_ref()
                .filter(|(stop, _)| if long { price <= *stop } else { price >= *stop });
        let target = self.take_profit.as_ref().filter(|(target, _)| {
            if long {
                price >= *target
            } else {
                price <= *target
            }
        });
        match (stop, target) {
            (Some((_, id)), _) => Some((FillReason::StopLoss, id.clone())),
            (None, Some((_, id))) => Some((FillReason::TakeProfit, id.clone())),
            (None, None) => None,
        }
    }
}

/// The price of a level for a position on `side` with average entry `entry`: a stop (`against`) sits against the
/// position, a profit target with it. `None` for a `%` level beyond the price bounds, which could never be crossed.
fn level_at(side: PositionSide, entry: Price, exit: ExitLevel, against: bool) -> Option<Price> {
    match exit {
        ExitLevel::Price(price) => Some(price),
        ExitLevel::Percent(pct) | ExitLevel::Trailing(pct) => {
            let up = (side == PositionSide::Long) != against;
            let sign = if up {
                Decimal::ONE
            } else {
                Decimal::NEGATIVE_ONE
            };
            let factor = Decimal::ONE.checked_add(sign * pct / Decimal::ONE_HUNDRED)?;
            let level = entry.get().checked_mul(factor)?;
            Price::new(level.round_dp(SCALE).normalize()).ok()
        }
    }
}

/// A trailing stop's state when `stop_loss` asks for one, starting from `entry`.
fn trail_of(stop_loss: Option<ExitLevel>, entry: Price) -> Option<Trail> {
    match stop_loss {
        Some(ExitLevel::Trailing(rate)) => Some(Trail { rate, best: entry }),
        _ => None,
    }
}

/// What a fill does to a symbol's exits. The rule, one for every entry and add:
/// - a flat position has none; a fill that turned the position to the other side drops the old side's;
/// - an entry's levels apply to the whole position, `%` ones measured from `average_entry` (the position's average
///   entry price after the fill);
/// - a level the entry does not give keeps the one resting (an add without levels keeps both).
pub fn after_fill_at(
    exits: &mut Option<ArmedExits>,
    order: Option<&OrderRequest>,
    fill: &Fill,
    position_after: Decimal,
    average_entry: Decimal,
) {
    if position_after.is_zero() {
        *exits = None;
        return;
    }
    let side = if position_after.is_sign_positive() {
        PositionSide::Long
    } else {
        PositionSide::Short
    };
    // Levels guard the position they were armed for: a fill that turned it to the other side leaves them nothing
    // to guard, and a stop that fired would double the new position instead of closing it.
    if exits.as_ref().is_some_and(|armed| armed.side != side) {
        *exits = None;
    }
    // An average that is no price (a journal from before the bounds) falls back to the fill's price.
    let entry = Price::new(average_entry).unwrap_or(fill.price);
    let Some(order) = order else { return };
    if let Some(mut armed) = ArmedExits::arm(order, entry, position_after) {
        if let Some(resting) = exits.take() {
            if order.protection.stop_loss.is_none() {
                armed.stop_loss = resting.stop_loss;
                armed.trailing = resting.trailing;
            }
            if order.protection.take_profit.is_none() {
                armed.take_profit = resting.take_profit;
            }
        }
        *exits = Some(armed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{FillReason, Protection};
    use crate::signal::Action;
    use crate::types::{Leverage, Quantity, Side, SignalId, Symbol, Timestamp};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn p(s: &str) -> Price {
        Price::from_str(s).unwrap()
    }

    fn level(s: &str) -> ExitLevel {
        match s.strip_suffix('%') {
            Some(pct) => ExitLevel::Percent(d(pct)),
            None => ExitLevel::Price(p(s)),
        }
    }

    fn entry(id: &str, stop: Option<&str>, target: Option<&str>) -> OrderRequest {
        let signal_id = SignalId::new(id).unwrap();
        OrderRequest {
            client_order_id: ClientOrderId::derive(&signal_id, 0),
            signal_id,
            symbol: Symbol::new("ETHUSDT").unwrap(),
            action: Action::OpenLong,
            side: Side::Buy,
            quantity: Quantity::from_str("1").unwrap(),
            reduce_only: false,
            leverage: Leverage::ONE,
            reference_price: p("2000"),
            protection: Protection {
                stop_loss: stop.map(level),
                take_profit: target.map(level),
            },
            limit: None,
        }
    }

    fn fill(order: &OrderRequest, price: &str) -> Fill {
        Fill {
            client_order_id: order.client_order_id.clone(),
            symbol: order.symbol.clone(),
            side: order.side,
            quantity: order.quantity,
            price: p(price),
            fee: Decimal::ZERO,
            reason: FillReason::Signal,
            at: Timestamp(0),
        }
    }

    fn levels(exits: &Option<ArmedExits>) -> (Option<Price>, Option<Price>) {
        exits.as_ref().map_or((None, None), |e| {
            (
                e.stop_loss.as_ref().map(|l| l.0),
                e.take_profit.as_ref().map(|l| l.0),
            )
        })
    }

    fn trailing(id: &str, side: Side, rate: &str) -> OrderRequest {
        let mut order = entry(id, None, None);
        order.side = side;
        order.protection.stop_loss = Some(ExitLevel::Trailing(d(rate)));
        order
    }

    fn stop(exits: &ArmedExits) -> Price {
        exits.stop_loss.as_ref().unwrap().0
    }

    #[test]
    fn a_trailing_stop_follows_each_new_best_price_and_never_moves_back() {
        // A long of 1 at 100, 2%: the stop starts at 100 x 0.98 = 98.
        let order = trailing("a", Side::Buy, "2");
        let mut long = ArmedExits::arm(&order, p("100"), d("1")).unwrap();
        assert_eq!(stop(&long), p("98"));
        // Highs 105 and 110: 105 x 0.98 = 102.9, then 110 x 0.98 = 107.8.
        assert!(long.trail(p("105")));
        assert_eq!(stop(&long), p("102.9"));
        assert!(long.trail(p("110")));
        assert_eq!(stop(&long), p("107.8"));
        // 108 is below the high: nothing moves, and it does not cross the stop; 107.8 does.
        assert!(!long.trail(p("108")));
        assert_eq!(stop(&long), p("107.8"));
        assert_eq!(long.crossed(p("108")), None);
        assert!(!long.trail(p("107.8")));
        assert_eq!(
            long.crossed(p("107.8")).map(|c| c.0),
            Some(FillReason::StopLoss)
        );

        // A short of 1 at 100, 2%: 102 at the entry; a low of 90 puts it at 90 x 1.02 = 91.8; 95 moves nothing.
        let order = trailing("b", Side::Sell, "2");
        let mut short = ArmedExits::arm(&order, p("100"), d("-1")).unwrap();
        assert_eq!(stop(&short), p("102"));
        assert!(short.trail(p("90")));
        assert_eq!(stop(&short), p("91.8"));
        assert!(!short.trail(p("95")));
        assert_eq!(stop(&short), p("91.8"));
        assert_eq!(short.trailing.unwrap().best, p("90"));

        // A fixed stop does not trail.
        let mut fixed = ArmedExits::arm(&entry("c", Some("2%"), None), p("100"), d("1")).unwrap();
        assert!(!fixed.trail(p("200")));
        assert_eq!(stop(&fixed), p("98"));
    }

    #[test]
    fn moving_the_stop_ends_the_trailing_and_moving_only_the_target_keeps_it() {
        let order = trailing("a", Side::Buy, "2");
        let mut armed = ArmedExits::arm(&order, p("100"), d("1")).unwrap();
        armed.trail(p("110"));
        let b = SignalId::new("b").unwrap();
        let target_only = ArmedExits::moved(
            Some(&armed),
            &b,
            PositionSide::Long,
            p("100"),
            None,
            Some(level("150")),
            false,
        );
        assert_eq!(target_only.trailing, armed.trailing);
        assert_eq!(stop(&target_only), p("107.8"));
        let fixed = ArmedExits::moved(
            Some(&armed),
            &b,
            PositionSide::Long,
            p("100"),
            Some(level("105")),
            None,
            false,
        );
        assert_eq!((fixed.trailing, stop(&fixed)), (None, p("105")));
    }

    #[test]
    fn exits_journaled_before_trailing_stops_still_load() {
        let old = r#"{"side":"long","stop_loss":["98","x:90"],"take_profit":null}"#;
        let exits: ArmedExits = serde_json::from_str(old).unwrap();
        assert_eq!(exits.trailing, None);
    }

    #[test]
    fn percent_levels_on_an_add_are_measured_from_the_average_entry() {
        let mut exits = None;
        let first = entry("a", Some("10%"), Some("20%"));
        // 1 at 2000: stop 2000 x 0.9 = 1800, target 2000 x 1.2 = 2400.
        after_fill_at(
            &mut exits,
            Some(&first),
            &fill(&first, "2000"),
            d("1"),
            d("2000"),
        );
        assert_eq!(levels(&exits), (Some(p("1800")), Some(p("2400"))));
        // 1 more at 2200: average (2000 + 2200) / 2 = 2100; stop 2100 x 0.9 = 1890, target 2100 x 1.2 = 2520.
        let add = entry("b", Some("10%"), Some("20%"));
        after_fill_at(
            &mut exits,
            Some(&add),
            &fill(&add, "2200"),
            d("2"),
            d("2100"),
        );
        assert_eq!(levels(&exits), (Some(p("1890")), Some(p("2520"))));
    }

    #[test]
    fn an_add_keeps_the_levels_it_does_not_give() {
        let mut exits = None;
        let first = entry("a", Some("1900"), Some("2500"));
        after_fill_at(
            &mut exits,
            Some(&first),
            &fill(&first, "2000"),
            d("1"),
            d("2000"),
        );
        let bare = entry("b", None, None);
        after_fill_at(
            &mut exits,
            Some(&bare),
            &fill(&bare, "2100"),
            d("2"),
            d("2050"),
        );
        assert_eq!(levels(&exits), (Some(p("1900")), Some(p("2500"))));
        // Only a stop: the target resting stays, with its leg's id.
        let stop_only = entry("c", Some("1950"), None);
        after_fill_at(
            &mut exits,
            Some(&stop_only),
            &fill(&stop_only, "2100"),
            d("3"),
            d("2066.66"),
        );
        assert_eq!(levels(&exits), (Some(p("1950")), Some(p("2500"))));
        let armed = exits.as_ref().unwrap();
        let a = SignalId::new("a").unwrap();
        let c = SignalId::new("c").unwrap();
        assert_eq!(
            armed.take_profit.as_ref().unwrap().1,
            ClientOrderId::derive(&a, TAKE_PROFIT_LEG)
        );
        assert_eq!(
            armed.stop_loss.as_ref().unwrap().1,
            ClientOrderId::derive(&c, STOP_LOSS_LEG)
        );
    }
}
