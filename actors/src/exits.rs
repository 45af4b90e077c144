//! Stop-loss and take-profit levels resting for a position: armed when an entry fills, gone once the position is
//! flat. One definition, used by the paper venue as it trades and by the ledger as it folds the log, so both agree
//! after a restart.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::order::{Fill, FillReason, OrderRequest};
use crate::signal::ExitLevel;
use crate::types::{ClientOrderId, PositionSide, Price};

/// Leg numbers of the exit orders an entry arms, after the legs a signal itself can produce.
pub const STOP_LOSS_LEG: u8 = 90;
pub const TAKE_PROFIT_LEG: u8 = 91;
/// Levels are kept to this many decimal places.
const SCALE: u32 = 8;

/// The exit orders resting for one symbol's position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmedExits {
    pub side: PositionSide,
    pub stop_loss: Option<(Price, ClientOrderId)>,
    pub take_profit: Option<(Price, ClientOrderId)>,
}

impl ArmedExits {
    /// The exits an entry arms for the whole position once it filled at `entry`, leaving the position at
    /// `position_after` (signed). `None` when the entry asks for none: the exits already resting stay.
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
        let level = |exit: ExitLevel, against: bool| -> Option<Price> {
            match exit {
                ExitLevel::Price(price) => Some(price),
                ExitLevel::Percent(pct) => {
                    // A stop sits against the position, a profit target with it.
                    let up = (side == PositionSide::Long) != against;
                    let sign = if up {
                        Decimal::ONE
                    } else {
                        Decimal::NEGATIVE_ONE
                    };
                    // A level beyond the price bounds can never be crossed, so none is armed.
                    let factor = Decimal::ONE.checked_add(sign * pct / Decimal::ONE_HUNDRED)?;
                    let level = entry.get().checked_mul(factor)?;
                    Price::new(level.round_dp(SCALE).normalize()).ok()
                }
            }
        };
        Some(ArmedExits {
            side,
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

    /// Takes the leg with this client order id off, leaving the other resting; whether it was resting.
    pub fn cancel(&mut self, id: &ClientOrderId) -> bool {
        for leg in [&mut self.stop_loss, &mut self.take_profit] {
            if leg.as_ref().is_some_and(|(_, resting)| resting == id) {
                *leg = None;
                return true;
            }
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

/// What a fill does to a symbol's exits: a flat position has none; an entry with protection arms new ones.
pub fn after_fill(
    exits: &mut Option<ArmedExits>,
    order: Option<&OrderRequest>,
    fill: &Fill,
    position_after: Decimal,
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
    if let Some(armed) = order.and_then(|o| ArmedExits::arm(o, fill.price, position_after)) {
        *exits = Some(armed);
    }
}
