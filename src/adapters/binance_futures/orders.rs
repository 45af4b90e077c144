//! Placing orders and settling what they did: MARKET orders under the journal's client ids, the stop loss and take
//! profit legs as algo orders, and the look-ups that settle every unknown outcome.

use std::time::Duration;

use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::Value;
use tracing::{error, info, warn};

use sentinel_actors::event::CancelReason;
use sentinel_actors::exits::{self, ArmedExits};
use sentinel_actors::order::{Fill, FillReason, OrderRequest};
use sentinel_actors::signal::ExitLevel;
use sentinel_actors::types::{
    ClientOrderId, PositionSide, Price, Quantity, Side, Symbol, Timestamp,
};
use sentinel_actors::venue::{Execution, ExecutionReport, OpenOrder, RejectReason, VenueError};

use super::client::{CallError, Urgency};
use super::rules::Rounding;
use super::wire::{dec, flag, int, param, text};
use super::{venue_error, Inner};

/// Pauses between look-ups of an order whose outcome is not known yet (a MARKET order settles in milliseconds).
const LOOK_UP_BACKOFF: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Orders with an unknown outcome at most before new entries are refused.
const MAX_UNRESOLVED: usize = 16;

/// What a look-up by client id found.
#[derive(Debug)]
pub enum Found {
    Filled(Fill),
    /// Accepted and not finished yet.
    Working,
    /// Binance has no order with that id: it was never executed.
    Absent,
    /// Finished without a fill (cancelled, expired, rejected).
    Ended(String),
}

fn side_param(side: Side) -> &'static str {
    match side {
        Side::Buy => "BUY",
        Side::Sell => "SELL",
    }
}

fn side_of(value: &Value) -> Option<Side> {
    match text(value, "side")? {
        "BUY" => Some(Side::Buy),
        "SELL" => Some(Side::Sell),
        _ => None,
    }
}

/// Places a MARKET order and settles its outcome; then moves the symbol's resting legs to what the position needs.
pub async fn submit(inner: &Inner, order: &OrderRequest) -> Result<Execution, VenueError> {
    if let Some(why) = inner.client.halted() {
        return Err(VenueError::rejected(RejectReason::Halted { why }));
    }
    // Orders whose fate is unknown are each a possible position nobody counts: past a few, new entries wait
    // (fail closed) until the look-ups settle them.
    let unresolved = inner.book().unresolved.len();
    if unresolved >= MAX_UNRESOLVED && !order.reduce_only {
        return Err(VenueError::Unavailable {
            detail: format!(
                "{unresolved} orders have an unknown outcome; no new entry until they are settled"
            ),
        });
    }
    // Paper trails the stop itself; here it would have to be Binance's TRAILING_STOP_MARKET, which is not wired:
    // refused before anything is sent, rather than resting a fixed stop that does not trail.
    if matches!(order.protection.stop_loss, Some(ExitLevel::Trailing(_))) {
        return Err(VenueError::rejected(RejectReason::TrailingStopUnsupported));
    }
    // A LIMIT order resting on Binance would need its fills followed on the user stream as entries: not wired yet,
    // so refused rather than sent as a market order.
    if order.limit.is_some() {
        return Err(VenueError::rejected(RejectReason::LimitEntryUnsupported));
    }
    let rule = |violation| VenueError::rejected(RejectReason::Rule { violation });
    let rules = inner.rules();
    let symbol_rules = rules.symbol(&order.symbol).map_err(rule)?;
    let price = inner
        .mark(&order.symbol)
        .unwrap_or(order.reference_price.get());
    let quantity = symbol_rules
        .market_quantity(order.quantity.get(), price, order.reduce_only)
        .map_err(rule)?;
    let urgency = if order.reduce_only {
        Urgency::Exit
    } else {
        prepare(inner, &order.symbol, order.leverage.get())
            .await
            .map_err(venue_error)?;
        Urgency::Entry
    };
    let id = &order.client_order_id;
    let mut params = vec![
        ("symbol", order.symbol.to_string()),
        ("side", side_param(order.side).to_string()),
        ("type", "MARKET".to_string()),
        ("quantity", param(quantity)),
        ("newClientOrderId", id.to_string()),
        ("newOrderRespType", "RESULT".to_string()),
    ];
    if order.reduce_only {
        params.push(("reduceOnly", "true".to_string()));
    }
    let mut sent_again = false;
    let fill = loop {
        let outcome = match inner
            .client
            .signed(Method::POST, "/fapi/v1/order", &params, urgency)
            .await
        {
            Ok(answer) if text(&answer, "status") == Some("FILLED") => {
                break complete(inner, &answer, &order.symbol, id, FillReason::Signal).await?;
            }
            // Accepted, not filled yet (an ACK answer, or a fill in progress).
            Ok(_) => settle(inner, &order.symbol, id).await,
            Err(CallError::Refused {
                code: -4116, msg, ..
            }) => {
                // The id is taken: an earlier send of this very order reached Binance. Its fill is not in the log
                // (a recovered order is looked up before it is placed again), so it is recorded as new.
                info!(%id, %msg, "Binance already has this client order id; looking it up instead of sending again");
                settle(inner, &order.symbol, id).await
            }
            Err(CallError::Unknown(detail)) => {
                warn!(%id, symbol = %order.symbol, %detail, "order outcome unknown; looking it up by client id");
                settle(inner, &order.symbol, id).await
            }
            Err(other) => return Err(venue_error(other)),
        };
        match outcome {
            Ok(Found::Filled(fill)) => break fill,
            // Binance never executed it, so the same id can go once more (and is refused if it did after all).
            Ok(Found::Absent) if !sent_again => {
                sent_again = true;
                info!(%id, "Binance has no such order; sending it again under the same client id");
            }
            Ok(Found::Ended(status)) => {
                return Err(VenueError::rejected(RejectReason::Venue {
                    code: 0,
                    message: format!("the order ended {status} without a fill"),
                }))
            }
            Ok(Found::Absent) => {
                return Err(VenueError::Unavailable {
                    detail: "Binance did not take the order twice; nothing was executed".into(),
                })
            }
            Ok(Found::Working) | Err(_) => {
                // Keep looking in the background; the fill is reported when it is known.
                inner
                    .book()
                    .unresolved
                    .insert(id.clone(), (order.symbol.clone(), FillReason::Signal));
                error!(%id, symbol = %order.symbol, "order outcome still unknown after looking it up; it is looked up \
                                                     until known and its fill reported then");
                return Err(VenueError::Unknown {
                    detail: "the order's outcome could not be learned yet".into(),
                });
            }
        }
    };
    after_fill(inner, order, &fill).await;
    Ok(Execution::New(fill))
}

/// Leverage (and the margin type, if configured) for `symbol`, set once and whenever a signal asks for another.
async fn prepare(inner: &Inner, symbol: &Symbol, leverage: u32) -> Result<(), CallError> {
    let (set_leverage, set_margin) = {
        let book = inner.book();
        (
            book.leverage.get(symbol) != Some(&leverage),
            inner.config.margin_type.is_some() && !book.margin_set.contains(symbol),
        )
    };
    if let (true, Some(margin)) = (set_margin, inner.config.margin_type) {
        let params = [
            ("symbol", symbol.to_string()),
            ("marginType", margin.as_str().to_string()),
        ];
        match inner
            .client
            .signed(Method::POST, "/fapi/v1/marginType", &params, Urgency::Entry)
            .await
        {
            // -4046: it is already that type.
            Ok(_) | Err(CallError::Refused { code: -4046, .. }) => {
                inner.book().margin_set.insert(symbol.clone());
            }
            Err(e) => return Err(e),
        }
    }
    if set_leverage {
        let params = [
            ("symbol", symbol.to_string()),
            ("leverage", leverage.to_string()),
        ];
        inner
            .client
            .signed(Method::POST, "/fapi/v1/leverage", &params, Urgency::Entry)
            .await?;
        info!(%symbol, leverage, "leverage set on Binance");
        inner.book().leverage.insert(symbol.clone(), leverage);
    }
    Ok(())
}

/// Looks an order up until it is filled, ended or known absent, a few seconds at most.
async fn settle(inner: &Inner, symbol: &Symbol, id: &ClientOrderId) -> Result<Found, CallError> {
    let mut last = Err(CallError::Unknown("not looked up".into()));
    for pause in LOOK_UP_BACKOFF {
        tokio::time::sleep(pause).await;
        last = look_up(inner, symbol, id, FillReason::Signal).await;
        match &last {
            Ok(Found::Working) | Err(CallError::Unknown(_) | CallError::NotSent(_)) => continue,
            _ => return last,
        }
    }
    last
}

/// The order with client id `id`, as Binance has it now.
pub async fn look_up(
    inner: &Inner,
    symbol: &Symbol,
    id: &ClientOrderId,
    reason: FillReason,
) -> Result<Found, CallError> {
    let params = [
        ("symbol", symbol.to_string()),
        ("origClientOrderId", id.to_string()),
    ];
    match inner
        .client
        .signed(Method::GET, "/fapi/v1/order", &params, Urgency::Exit)
        .await
    {
        Ok(order) => found(inner, &order, symbol, id, reason).await,
        // -2013: "Order does not exist."
        Err(CallError::Refused { code: -2013, .. }) => Ok(Found::Absent),
        Err(e) => Err(e),
    }
}

async fn found(
    inner: &Inner,
    order: &Value,
    symbol: &Symbol,
    id: &ClientOrderId,
    reason: FillReason,
) -> Result<Found, CallError> {
    let executed = dec(order, "executedQty").unwrap_or_default();
    match text(order, "status").unwrap_or("") {
        "FILLED" => Ok(Found::Filled(
            complete(inner, order, symbol, id, reason)
                .await
                .map_err(|e| CallError::Unknown(e.to_string()))?,
        )),
        "NEW" | "PARTIALLY_FILLED" => Ok(Found::Working),
        // A MARKET order that ran out of liquidity can end partly filled: that part is a fill.
        _ if executed > Decimal::ZERO => Ok(Found::Filled(
            complete(inner, order, symbol, id, reason)
                .await
                .map_err(|e| CallError::Unknown(e.to_string()))?,
        )),
        status => Ok(Found::Ended(status.to_string())),
    }
}

/// The fill of a finished order: its executed quantity at its average price, with the commissions of its trades.
async fn complete(
    inner: &Inner,
    order: &Value,
    symbol: &Symbol,
    id: &ClientOrderId,
    reason: FillReason,
) -> Result<Fill, VenueError> {
    let bad = |what: &str| VenueError::Unknown {
        detail: format!("Binance's answer for order {id} has no valid {what}"),
    };
    let side = side_of(order).ok_or_else(|| bad("side"))?;
    let quantity = dec(order, "executedQty")
        .and_then(|q| Quantity::new(q).ok())
        .ok_or_else(|| bad("executedQty"))?;
    let price = dec(order, "avgPrice")
        .and_then(|p| Price::new(p).ok())
        .ok_or_else(|| bad("avgPrice"))?;
    let at = int(order, "updateTime")
        .map(Timestamp)
        .unwrap_or_else(Timestamp::now);
    let fee = match int(order, "orderId") {
        Some(order_id) => commission(inner, symbol, order_id).await,
        None => None,
    };
    let fee = fee.unwrap_or_else(|| {
        warn!(%id, "the order's commission could not be read; it is booked as zero");
        Decimal::ZERO
    });
    Ok(Fill {
        client_order_id: id.clone(),
        symbol: symbol.clone(),
        side,
        quantity,
        price,
        fee,
        reason,
        at,
    })
}

/// The commission the order's trades paid, in the quote asset.
async fn commission(inner: &Inner, symbol: &Symbol, order_id: i64) -> Option<Decimal> {
    let params = [
        ("symbol", symbol.to_string()),
        ("orderId", order_id.to_string()),
    ];
    let trades = inner
        .client
        .signed(Method::GET, "/fapi/v1/userTrades", &params, Urgency::Exit)
        .await
        .ok()?;
    let mut total = Decimal::ZERO;
    for trade in trades.as_array()? {
        total = total.checked_add(dec(trade, "commission")?.abs())?;
    }
    Some(total)
}

/// After a signal's fill: the position as Binance now holds it, and its legs moved to match (new ones armed for an
/// entry with protection, both cancelled when it is flat, none guarding a side it no longer is on).
async fn after_fill(inner: &Inner, order: &OrderRequest, fill: &Fill) {
    let symbol = &order.symbol;
    let (current, desired) = {
        let mut book = inner.book();
        let (after, entry) = book.apply(fill);
        let current = book.legs.get(symbol).cloned();
        let mut desired = current.clone();
        exits::after_fill_at(&mut desired, Some(order), fill, after, entry);
        (current, desired)
    };
    move_legs(inner, symbol, current, desired).await;
}

/// A signal moved the position's legs (`update_stops`, `move_stop_to_breakeven`): those that changed are cancelled
/// and the new ones placed. The legs actually resting afterwards; a leg Binance refused is not among them.
pub(super) async fn move_exits(
    inner: &Inner,
    symbol: &Symbol,
    exits: ArmedExits,
) -> Result<ArmedExits, VenueError> {
    let current = {
        let book = inner.book();
        let open = book
            .positions
            .get(symbol)
            .is_some_and(|p| !p.quantity.is_zero());
        if !open {
            return Err(VenueError::rejected(RejectReason::WouldNotReduce));
        }
        book.legs.get(symbol).cloned()
    };
    let side = exits.side;
    let resting = move_legs(inner, symbol, current, Some(exits)).await;
    Ok(resting.unwrap_or(ArmedExits {
        side,
        stop_loss: None,
        take_profit: None,
        trailing: None,
    }))
}

/// Cancels the legs resting that `desired` does not hold, and places those it adds; the legs resting afterwards.
async fn move_legs(
    inner: &Inner,
    symbol: &Symbol,
    current: Option<ArmedExits>,
    desired: Option<ArmedExits>,
) -> Option<ArmedExits> {
    let ids = |legs: &Option<ArmedExits>| -> Vec<ClientOrderId> {
        legs.iter()
            .flat_map(|l| [l.stop_loss.as_ref(), l.take_profit.as_ref()])
            .flatten()
            .map(|(_, id)| id.clone())
            .collect()
    };
    let (had, wanted) = (ids(&current), ids(&desired));
    for id in had.iter().filter(|id| !wanted.contains(id)) {
        match cancel_algo(inner, symbol, id).await {
            Ok(()) => info!(%symbol, client_algo_id = %id, "resting leg cancelled"),
            Err(e) => {
                warn!(%symbol, client_algo_id = %id, error = %e, "a resting leg could not be cancelled")
            }
        }
    }
    let mut placed = desired.clone();
    if let Some(legs) = &desired {
        let side = legs.side;
        for (reason, leg) in [
            (FillReason::StopLoss, &legs.stop_loss),
            (FillReason::TakeProfit, &legs.take_profit),
        ] {
            let Some((level, id)) = leg else { continue };
            if had.contains(id) {
                continue;
            }
            if let Err(e) = place_leg(inner, symbol, side, reason, level.get(), id).await {
                error!(%symbol, client_algo_id = %id, error = %e, ?reason,
                       "a protective leg could NOT be placed on Binance: the position is not protected by it");
                if let Some(placed) = placed.as_mut() {
                    placed.cancel(id);
                }
            }
        }
    }
    let mut book = inner.book();
    match placed {
        Some(legs) if legs.stop_loss.is_some() || legs.take_profit.is_some() => {
            book.legs.insert(symbol.clone(), legs.clone());
            Some(legs)
        }
        _ => {
            book.legs.remove(symbol);
            None
        }
    }
}

/// A stop loss or take profit for the whole position, as a conditional algo order that closes it when the mark price
/// crosses its trigger (the only way Binance takes them since 2025-12-09).
async fn place_leg(
    inner: &Inner,
    symbol: &Symbol,
    position: PositionSide,
    reason: FillReason,
    level: Decimal,
    id: &ClientOrderId,
) -> Result<(), CallError> {
    let (side, order_type) = match reason {
        FillReason::TakeProfit => (position, "TAKE_PROFIT_MARKET"),
        _ => (position, "STOP_MARKET"),
    };
    let closing = match side {
        PositionSide::Long => Side::Sell,
        PositionSide::Short => Side::Buy,
    };
    // Rounded to the tick toward the entry: a stop a little tighter, a target a little nearer, never looser.
    let rounding = match (position, reason) {
        (PositionSide::Long, FillReason::StopLoss)
        | (PositionSide::Short, FillReason::TakeProfit) => Rounding::Up,
        _ => Rounding::Down,
    };
    let trigger = inner
        .rules()
        .symbol(symbol)
        .and_then(|r| r.trigger_price(level, rounding))
        .map_err(|v| CallError::Refused {
            status: 0,
            code: 0,
            msg: v.to_string(),
        })?;
    let params = [
        ("algoType", "CONDITIONAL".to_string()),
        ("symbol", symbol.to_string()),
        ("side", side_param(closing).to_string()),
        ("type", order_type.to_string()),
        ("triggerPrice", param(trigger)),
        ("workingType", "MARK_PRICE".to_string()),
        ("closePosition", "true".to_string()),
        ("clientAlgoId", id.to_string()),
    ];
    match inner
        .client
        .signed(Method::POST, "/fapi/v1/algoOrder", &params, Urgency::Exit)
        .await
    {
        Ok(_) => {
            info!(%symbol, client_algo_id = %id, %trigger, order_type, "protective leg resting on Binance");
            Ok(())
        }
        // The same id is resting already: an earlier attempt went through.
        Err(CallError::Refused { code: -4116, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn cancel_algo(inner: &Inner, symbol: &Symbol, id: &ClientOrderId) -> Result<(), CallError> {
    let params = [
        ("symbol", symbol.to_string()),
        ("clientAlgoId", id.to_string()),
    ];
    match inner
        .client
        .signed(Method::DELETE, "/fapi/v1/algoOrder", &params, Urgency::Exit)
        .await
    {
        // Unknown or no longer open: nothing rests under that id.
        Ok(_)
        | Err(CallError::Refused {
            code: -2011 | -2013,
            ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Cancels one resting leg (the port's `cancel`).
pub async fn cancel_leg(
    inner: &Inner,
    symbol: &Symbol,
    id: &ClientOrderId,
) -> Result<(), VenueError> {
    let held = {
        let mut book = inner.book();
        book.legs
            .get_mut(symbol)
            .is_some_and(|legs| legs.cancel(id))
    };
    if !held {
        return Err(VenueError::rejected(RejectReason::UnknownOrder {
            client_order_id: id.clone(),
        }));
    }
    cancel_algo(inner, symbol, id).await.map_err(venue_error)
}

/// The algo orders resting on the account, as the port's open orders.
pub async fn open_legs(
    inner: &Inner,
    symbol: Option<&Symbol>,
) -> Result<Vec<OpenOrder>, CallError> {
    let params: Vec<(&str, String)> = symbol
        .map(|s| ("symbol", s.to_string()))
        .into_iter()
        .collect();
    let open = inner
        .client
        .signed(
            Method::GET,
            "/fapi/v1/openAlgoOrders",
            &params,
            Urgency::Background,
        )
        .await?;
    Ok(open
        .as_array()
        .map(|orders| orders.iter().filter_map(open_order).collect())
        .unwrap_or_default())
}

/// One open algo order, if Sentinel can name it.
pub fn open_order(algo: &Value) -> Option<OpenOrder> {
    let reason = match text(algo, "orderType").or_else(|| text(algo, "type"))? {
        "STOP_MARKET" | "STOP" => FillReason::StopLoss,
        "TAKE_PROFIT_MARKET" | "TAKE_PROFIT" => FillReason::TakeProfit,
        _ => return None,
    };
    Some(OpenOrder {
        client_order_id: ClientOrderId::try_from(text(algo, "clientAlgoId")?.to_string()).ok()?,
        symbol: Symbol::new(text(algo, "symbol")?).ok()?,
        side: side_of(algo)?,
        quantity: if flag(algo, "closePosition") {
            None
        } else {
            dec(algo, "quantity").and_then(|q| Quantity::new(q).ok())
        },
        trigger: dec(algo, "triggerPrice").and_then(|p| Price::new(p).ok())?,
        reason,
    })
}

/// A resting leg has fired: reports its fill, cancels the other leg, and forgets both. Whoever takes the leg out of
/// the book first (the stream or the poller) reports it; the other finds nothing to do.
pub async fn leg_fired(inner: &Inner, symbol: &Symbol, id: &ClientOrderId) {
    let Some((reason, other)) = take_leg(inner, symbol, id) else {
        return;
    };
    let fill = match settle_leg(inner, symbol, id, reason).await {
        Some(fill) => fill,
        None => {
            // Put it back: the next poll tries again.
            warn!(%symbol, client_algo_id = %id, "a fired leg's fill is not known yet; trying again");
            restore_leg(inner, symbol);
            return;
        }
    };
    info!(%symbol, client_algo_id = %id, ?reason, quantity = %fill.quantity, price = %fill.price,
          "a resting leg fired on Binance");
    inner.book().apply(&fill);
    inner.report(ExecutionReport::Filled(fill)).await;
    if let Some((_, other)) = other {
        match cancel_algo(inner, symbol, &other).await {
            Ok(()) => {
                info!(%symbol, client_algo_id = %other, "the other leg cancelled");
                inner
                    .report(ExecutionReport::Cancelled {
                        symbol: symbol.clone(),
                        client_order_id: other,
                        reason: CancelReason::OtherLegFilled,
                    })
                    .await;
            }
            Err(e) => {
                error!(%symbol, client_algo_id = %other, error = %e, "the other leg could not be cancelled")
            }
        }
    }
}

type OtherLeg = Option<(FillReason, ClientOrderId)>;

fn take_leg(inner: &Inner, symbol: &Symbol, id: &ClientOrderId) -> Option<(FillReason, OtherLeg)> {
    let mut book = inner.book();
    let legs = book.legs.get(symbol)?;
    let stop = legs.stop_loss.as_ref().map(|(_, i)| i.clone());
    let target = legs.take_profit.as_ref().map(|(_, i)| i.clone());
    let found = if stop.as_ref() == Some(id) {
        (
            FillReason::StopLoss,
            target.map(|t| (FillReason::TakeProfit, t)),
        )
    } else if target.as_ref() == Some(id) {
        (
            FillReason::TakeProfit,
            stop.map(|s| (FillReason::StopLoss, s)),
        )
    } else {
        return None;
    };
    let legs = book.legs.remove(symbol)?;
    book.taken.insert(symbol.clone(), legs);
    Some(found)
}

fn restore_leg(inner: &Inner, symbol: &Symbol) {
    let mut book = inner.book();
    if let Some(legs) = book.taken.remove(symbol) {
        book.legs.entry(symbol.clone()).or_insert(legs);
    }
}

/// The fill of a leg that fired: its algo order names the order it became.
async fn settle_leg(
    inner: &Inner,
    symbol: &Symbol,
    id: &ClientOrderId,
    reason: FillReason,
) -> Option<Fill> {
    for pause in LOOK_UP_BACKOFF {
        tokio::time::sleep(pause).await;
        let params = [("clientAlgoId", id.to_string())];
        let algo = match inner
            .client
            .signed(Method::GET, "/fapi/v1/algoOrder", &params, Urgency::Exit)
            .await
        {
            Ok(algo) => algo,
            Err(e) => {
                warn!(client_algo_id = %id, error = %e, "a fired leg could not be looked up");
                continue;
            }
        };
        let Some(order_id) = int(&algo, "actualOrderId") else {
            continue;
        };
        let params = [
            ("symbol", symbol.to_string()),
            ("orderId", order_id.to_string()),
        ];
        let Ok(order) = inner
            .client
            .signed(Method::GET, "/fapi/v1/order", &params, Urgency::Exit)
            .await
        else {
            continue;
        };
        if let Ok(Found::Filled(fill)) = found(inner, &order, symbol, id, reason).await {
            inner.book().taken.remove(symbol);
            return Some(fill);
        }
    }
    None
}

/// A leg that ended without firing (cancelled elsewhere, expired, rejected): forgotten, and said loudly, since the
/// position it guarded is no longer protected by it.
pub async fn leg_gone(inner: &Inner, symbol: &Symbol, id: &ClientOrderId, status: &str) {
    let held = {
        let mut book = inner.book();
        let held = book
            .legs
            .get_mut(symbol)
            .is_some_and(|legs| legs.cancel(id));
        if book
            .legs
            .get(symbol)
            .is_some_and(|l| l.stop_loss.is_none() && l.take_profit.is_none())
        {
            book.legs.remove(symbol);
        }
        held
    };
    if held {
        warn!(%symbol, client_algo_id = %id, status, "a protective leg ended on Binance without firing");
        inner
            .report(ExecutionReport::Cancelled {
                symbol: symbol.clone(),
                client_order_id: id.clone(),
                reason: CancelReason::ByVenue,
            })
            .await;
    }
}

/// Orders whose outcome was unknown, looked up again; fills found are reported.
pub async fn resolve_unknown(inner: &Inner) {
    let unresolved: Vec<_> = inner
        .book()
        .unresolved
        .iter()
        .map(|(id, (symbol, reason))| (id.clone(), symbol.clone(), *reason))
        .collect();
    for (id, symbol, reason) in unresolved {
        match look_up(inner, &symbol, &id, reason).await {
            Ok(Found::Filled(fill)) => {
                inner.book().unresolved.remove(&id);
                error!(%id, %symbol, quantity = %fill.quantity, price = %fill.price,
                       "an order whose outcome was unknown turned out FILLED; its fill is recorded now");
                inner.book().apply(&fill);
                inner.report(ExecutionReport::Filled(fill)).await;
            }
            Ok(Found::Absent | Found::Ended(_)) => {
                inner.book().unresolved.remove(&id);
                info!(%id, %symbol, "an order whose outcome was unknown was never executed");
            }
            Ok(Found::Working) | Err(_) => {}
        }
    }
}
