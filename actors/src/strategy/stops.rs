//! `update_stops` and `move_stop_to_breakeven` as plain logic: where a signal moves the open position's resting stop
//! loss and take profit, or why it moves nothing.

use super::book::{side_of, Decision, MarketView};
use crate::exits::ArmedExits;
use crate::order::{ExitField, IgnoreReason};
use crate::signal::{ExitLevel, Signal};
use crate::types::{PositionSide, Price};

/// Where `update_stops` / `move_stop_to_breakeven` puts the position's exits, computed as an entry arms them
/// (`ArmedExits::moved`). A new level on the wrong side of `price` (the last price) would fire at once: nothing moves.
/// Stops move while the symbol is paused too: they only ever close.
pub(super) fn move_exits(
    signal: &Signal,
    view: &MarketView,
    price: Price,
    stop_loss: Option<ExitLevel>,
    take_profit: Option<ExitLevel>,
    breakeven: bool,
) -> Decision {
    let (true, Some(entry)) = (!view.position.is_zero(), view.entry_price) else {
        return Decision::Ignore(IgnoreReason::NoPosition);
    };
    let side = side_of(view.position);
    let exits = ArmedExits::moved(
        view.exits.as_ref(),
        &signal.id,
        side,
        entry,
        stop_loss,
        take_profit,
        breakeven,
    );
    let long = side == PositionSide::Long;
    let new_stop = (stop_loss.is_some() || breakeven)
        .then(|| exits.stop_loss.as_ref().map(|l| l.0))
        .flatten();
    if let Some(level) = new_stop.filter(|&l| if long { l >= price } else { l <= price }) {
        return Decision::Ignore(IgnoreReason::LevelWrongSide {
            field: ExitField::StopLoss,
            level,
            last_price: price,
        });
    }
    let new_target = take_profit.and(exits.take_profit.as_ref()).map(|l| l.0);
    if let Some(level) = new_target.filter(|&l| if long { l <= price } else { l >= price }) {
        return Decision::Ignore(IgnoreReason::LevelWrongSide {
            field: ExitField::TakeProfit,
            level,
            last_price: price,
        });
    }
    Decision::MoveExits(exits)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use super::*;
    use crate::exits::{STOP_LOSS_LEG, TAKE_PROFIT_LEG};
    use crate::signal::Intent;
    use crate::types::{ClientOrderId, SignalId, Symbol, Timestamp};

    fn p(s: &str) -> Price {
        Price::from_str(s).unwrap()
    }

    fn signal(id: &str) -> Signal {
        Signal {
            id: SignalId::new(id).unwrap(),
            source: "test".into(),
            symbol: Symbol::new("BTCUSDT").unwrap(),
            received_at: Timestamp(0),
            sent_at: None,
            price: None,
            intent: Intent::Tick,
            comment: None,
        }
    }

    fn long_at(entry: &str, exits: Option<ArmedExits>) -> MarketView {
        MarketView {
            position: Decimal::ONE,
            equity: Decimal::from(10_000),
            last_price: None,
            entry_price: Some(p(entry)),
            exits,
        }
    }

    fn levels(decision: &Decision) -> (Option<Price>, Option<Price>) {
        let Decision::MoveExits(exits) = decision else {
            panic!("not a move: {decision:?}")
        };
        (
            exits.stop_loss.as_ref().map(|l| l.0),
            exits.take_profit.as_ref().map(|l| l.0),
        )
    }

    #[test]
    fn levels_are_computed_as_an_entry_arms_them_and_a_level_not_given_stays() {
        let first = signal("a");
        let resting = ArmedExits {
            side: PositionSide::Long,
            stop_loss: Some((p("90"), ClientOrderId::derive(&first.id, STOP_LOSS_LEG))),
            take_profit: Some((p("150"), ClientOrderId::derive(&first.id, TAKE_PROFIT_LEG))),
            trailing: None,
        };
        let view = long_at("100", Some(resting.clone()));
        let update = signal("b");
        // 2% below the entry 100: 98; the target at 150 stays, with its leg.
        let decision = move_exits(
            &update,
            &view,
            p("100"),
            Some(ExitLevel::Percent(Decimal::from(2))),
            None,
            false,
        );
        assert_eq!(levels(&decision), (Some(p("98")), Some(p("150"))));
        let Decision::MoveExits(moved) = &decision else {
            unreachable!()
        };
        assert_eq!(
            moved.stop_loss.as_ref().unwrap().1,
            ClientOrderId::derive(&update.id, STOP_LOSS_LEG)
        );
        assert_eq!(moved.take_profit, resting.take_profit);

        // After a restart the same signal is decided again on the exits it moved: the same legs, so moving them
        // again changes nothing.
        let again = move_exits(
            &update,
            &long_at("100", Some(moved.clone())),
            p("100"),
            Some(ExitLevel::Percent(Decimal::from(2))),
            None,
            false,
        );
        assert_eq!(again, decision);
    }

    #[test]
    fn break_even_needs_the_market_past_the_entry() {
        let view = long_at("100", None);
        let decision = move_exits(&signal("c"), &view, p("101"), None, None, true);
        assert_eq!(levels(&decision), (Some(p("100")), None));
        // At or below the entry, a stop at it would fire at once.
        for last in ["100", "99"] {
            assert_eq!(
                move_exits(&signal("c"), &view, p(last), None, None, true),
                Decision::Ignore(IgnoreReason::LevelWrongSide {
                    field: ExitField::StopLoss,
                    level: p("100"),
                    last_price: p(last),
                })
            );
        }
        let flat = MarketView {
            position: Decimal::ZERO,
            entry_price: None,
            ..view
        };
        assert_eq!(
            move_exits(&signal("c"), &flat, p("101"), None, None, true),
            Decision::Ignore(IgnoreReason::NoPosition)
        );
    }
}
