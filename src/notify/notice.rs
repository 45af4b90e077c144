//! What the journal's events mean to a person: each event a channel is told about becomes a `Notice` (its kind,
//! its fields by name) and a text from a template.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use sentinel_actors::event::Event;
use sentinel_actors::ledger_actor::View;
use sentinel_actors::order::{FillReason, SignalOutcome};
use sentinel_actors::types::{Side, Timestamp};
use sentinel_actors::venue::VenueError;

use super::settings::Topic;

/// One thing to tell a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub topic: Topic,
    /// `fill`, `exit`, `denial`, `rejection`, `venue_fault`, `trading_state`, `daily_summary`: the generic
    /// webhook's `type` and the delivery log's `event`.
    pub kind: &'static str,
    pub at: Timestamp,
    /// The template's placeholders, and the generic webhook's `data`.
    pub fields: BTreeMap<&'static str, String>,
}

/// The notices an event makes, one per topic it belongs to (a venue fault is also a rejection).
pub fn notices(event: &Event, at: Timestamp) -> Vec<Notice> {
    let notice = |topic, kind, fields: Vec<(&'static str, String)>| Notice {
        topic,
        kind,
        at,
        fields: fields.into_iter().collect(),
    };
    match event {
        Event::Filled { order, fill, .. } => {
            let mut fields = vec![
                ("symbol", fill.symbol.to_string()),
                ("side", side(fill.side).into()),
                ("quantity", fill.quantity.to_string()),
                ("price", fill.price.to_string()),
                ("fee", fill.fee.to_string()),
                ("order_id", fill.client_order_id.to_string()),
                ("reason", fill_reason(fill.reason).into()),
            ];
            if let Some(id) = event.signal_id() {
                fields.push(("signal_id", id.to_string()));
            }
            if order.is_some() && fill.reason == FillReason::Signal {
                vec![notice(Topic::Fills, "fill", fields)]
            } else {
                vec![notice(Topic::Exits, "exit", fields)]
            }
        }
        Event::SignalFinished {
            signal_id,
            symbol,
            outcome: SignalOutcome::Denied { reason, .. },
        } => {
            let code = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string))
                .unwrap_or_default();
            vec![notice(
                Topic::Denials,
                "denial",
                vec![
                    ("symbol", symbol.to_string()),
                    ("signal_id", signal_id.to_string()),
                    ("reason", reason.to_string()),
                    ("code", code),
                ],
            )]
        }
        Event::Rejected { order, error } => {
            let fields = vec![
                ("symbol", order.symbol.to_string()),
                ("side", side(order.side).into()),
                ("quantity", order.quantity.to_string()),
                ("price", order.reference_price.to_string()),
                ("signal_id", order.signal_id.to_string()),
                ("order_id", order.client_order_id.to_string()),
                ("reason", error.to_string()),
            ];
            let mut made = vec![notice(Topic::Rejections, "rejection", fields.clone())];
            if matches!(
                error,
                VenueError::Unavailable { .. } | VenueError::Unknown { .. }
            ) {
                made.push(notice(Topic::VenueFaults, "venue_fault", fields));
            }
            made
        }
        Event::TradingStateChanged { state } => vec![notice(
            Topic::TradingState,
            "trading_state",
            vec![("state", state.to_string())],
        )],
        _ => Vec::new(),
    }
}

/// The daily summary, from the ledger's view of the account.
pub fn summary(view: &View, at: Timestamp) -> Notice {
    let portfolio = &view.portfolio;
    let open = portfolio
        .positions
        .values()
        .filter(|p| !p.is_flat())
        .count();
    Notice {
        topic: Topic::DailySummary,
        kind: "daily_summary",
        at,
        fields: [
            ("realized_pnl", money(portfolio.realized_pnl())),
            ("unrealized_pnl", money(portfolio.unrealized_pnl())),
            ("fees", money(portfolio.fees())),
            ("equity", money(portfolio.equity())),
            ("open_positions", open.to_string()),
        ]
        .into_iter()
        .collect(),
    }
}

fn money(value: Decimal) -> String {
    value.round_dp(8).normalize().to_string()
}

fn side(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn fill_reason(reason: FillReason) -> &'static str {
    match reason {
        FillReason::Signal => "signal",
        FillReason::StopLoss => "stop loss",
        FillReason::TakeProfit => "take profit",
        FillReason::Liquidation => "liquidation",
    }
}

/// The text of each kind when the channel sets no template.
pub fn default_template(kind: &str) -> &'static str {
    match kind {
        "fill" => "Filled: {side} {quantity} {symbol} @ {price} (signal {signal_id})",
        "exit" => "{reason}: {side} {quantity} {symbol} @ {price}",
        "denial" => "Denied {symbol} (signal {signal_id}): {reason}",
        "rejection" => "Rejected {side} {quantity} {symbol}: {reason}",
        "venue_fault" => "Venue fault on {symbol}: {reason}",
        "trading_state" => "Trading state is now {state}",
        "daily_summary" => {
            "Daily summary: equity {equity}, realized PnL {realized_pnl}, unrealized PnL {unrealized_pnl}, fees {fees}, open positions {open_positions}"
        }
        _ => "{kind}",
    }
}

/// `template` with each `{name}` the notice has replaced by its value; other braces are left as they are.
pub fn render(template: &str, notice: &Notice) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let name = &after[..close];
            let value = match name {
                "kind" => Some(notice.kind.to_string()),
                _ => notice.fields.get(name).cloned(),
            };
            value.map(|v| (v, close))
        });
        match value {
            Some((value, close)) => {
                out.push_str(&value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill_notice() -> Notice {
        Notice {
            topic: Topic::Fills,
            kind: "fill",
            at: Timestamp(0),
            fields: [
                ("symbol", "BTCUSDT".to_string()),
                ("side", "buy".into()),
                ("quantity", "0.01".into()),
                ("price", "50000".into()),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn event(json: serde_json::Value) -> Event {
        serde_json::from_value(json).expect("an event")
    }

    fn order() -> serde_json::Value {
        serde_json::json!({
            "client_order_id": "c1", "signal_id": "s1", "symbol": "BTCUSDT", "action": "open_long",
            "side": "buy", "quantity": "0.01", "reduce_only": false, "leverage": 1,
            "reference_price": "50000", "protection": {"stop_loss": null, "take_profit": null}
        })
    }

    #[test]
    fn events_become_notices_of_their_topics() {
        let stop = event(
            serde_json::json!({"kind": "filled", "order": null, "fill": {
            "client_order_id": "c2", "symbol": "BTCUSDT", "side": "sell", "quantity": "0.01",
            "price": "49000", "fee": "0", "reason": "stop_loss", "at": 0}}),
        );
        let made = notices(&stop, Timestamp(0));
        assert_eq!(made.len(), 1);
        assert_eq!((made[0].topic, made[0].kind), (Topic::Exits, "exit"));
        assert_eq!(
            render(default_template(made[0].kind), &made[0]),
            "stop loss: sell 0.01 BTCUSDT @ 49000"
        );

        let unavailable = event(serde_json::json!({"kind": "rejected", "order": order(),
            "error": {"code": "unavailable", "detail": "connection reset"}}));
        let topics: Vec<_> = notices(&unavailable, Timestamp(0))
            .iter()
            .map(|n| n.topic)
            .collect();
        assert_eq!(topics, [Topic::Rejections, Topic::VenueFaults]);

        let halted = event(serde_json::json!({"kind": "trading_state_changed", "state": "halted"}));
        let made = notices(&halted, Timestamp(0));
        assert_eq!(
            render(default_template(made[0].kind), &made[0]),
            "Trading state is now halted"
        );
        let accepted = event(
            serde_json::json!({"kind": "strategy_state_changed", "symbol": "BTCUSDT", "paused": true}),
        );
        assert!(notices(&accepted, Timestamp(0)).is_empty());
    }

    #[test]
    fn the_daily_summary_sums_up_the_account() {
        use sentinel_actors::ledger::Ledger;
        use sentinel_actors::order::Fill;
        use sentinel_actors::types::{Price, Symbol};

        let fill = |symbol: &str, side: &str, quantity: &str, price: &str, fee: &str| -> Fill {
            serde_json::from_value(serde_json::json!({
                "client_order_id": "c1", "symbol": symbol, "side": side, "quantity": quantity,
                "price": price, "fee": fee, "reason": "signal", "at": 0}))
            .expect("a fill")
        };
        let mut view = View::of(&Ledger::new(Decimal::from(10_000)));
        let portfolio = &mut view.portfolio;
        // BTCUSDT: 0.1 bought at 50000 and sold at 50500, +50.
        portfolio.apply_fill(&fill("BTCUSDT", "buy", "0.1", "50000", "2"));
        portfolio.apply_fill(&fill("BTCUSDT", "sell", "0.1", "50500", "2.02"));
        // ETHUSDT: 2 bought at 3000, 1 sold at 2900 (-100), 1 still open and marked at 2950 (-50 unrealized).
        portfolio.apply_fill(&fill("ETHUSDT", "buy", "2", "3000", "2.4"));
        portfolio.apply_fill(&fill("ETHUSDT", "sell", "1", "2900", "1.16"));
        let eth = Symbol::new("ETHUSDT").unwrap();
        portfolio.mark(&eth, Price::new(Decimal::from(2950)).unwrap());

        let notice = summary(&view, Timestamp(1_764_201_600_000));
        assert_eq!(
            (notice.topic, notice.kind, notice.at),
            (
                Topic::DailySummary,
                "daily_summary",
                Timestamp(1_764_201_600_000)
            )
        );
        // Realized +50 - 100; fees 2 + 2.02 + 2.4 + 1.16; equity 10000 - 50 - 7.58 - 50 unrealized; ETHUSDT open.
        assert_eq!(
            render(default_template(notice.kind), &notice),
            "Daily summary: equity 9892.42, realized PnL -50, unrealized PnL -50, fees 7.58, open positions 1"
        );
    }

    #[test]
    fn templates_fill_known_placeholders_and_leave_the_rest() {
        let cases = [
            (
                "{symbol} {side} {quantity} @ {price}",
                "BTCUSDT buy 0.01 @ 50000",
            ),
            ("{symbol} ({reason})", "BTCUSDT ({reason})"),
            ("{kind}: {{symbol}}", "fill: {BTCUSDT}"),
            ("{unclosed {symbol", "{unclosed {symbol"),
            ("no placeholders", "no placeholders"),
            ("{}{symbol}}", "{}BTCUSDT}"),
        ];
        for (template, expected) in cases {
            assert_eq!(render(template, &fill_notice()), expected, "{template}");
        }
    }
}
