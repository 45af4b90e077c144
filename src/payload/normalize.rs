//! Recognising a payload's format and turning it into a `Signal`.
//!
//! The format is told by its fields: `action` (Sentinel actions, or TradingView's `{{strategy.order.action}}`),
//! `signal` (plain BUY/SELL signals), `market_position` (strategy targets); a symbol and a price with none of those
//! is a market-data tick.

use rust_decimal::prelude::ToPrimitive;
use sentinel_actors::signal::{
    Action, CloseSize, EntryParams, Intent, Signal, SizeSpec, TargetPosition,
};
use sentinel_actors::types::{Leverage, PositionSide, SignalId, Timestamp};
use sha2::{Digest, Sha256};

use super::fields;
use super::orders;
use super::{FieldError, RawPayload, SymbolMap};

/// What normalising needs besides the payload.
pub struct Context<'a> {
    pub source: &'a str,
    pub symbols: &'a SymbolMap,
    /// The signal's id (see `signal_id`).
    pub signal_id: SignalId,
    pub received_at: Timestamp,
}

pub fn normalize(raw: &RawPayload, ctx: &Context<'_>) -> Result<Signal, FieldError> {
    let (ticker_field, ticker) = raw
        .first(&["symbol", "ticker"])
        .ok_or_else(|| FieldError::new("symbol", "is required"))?;
    let ticker = field(ticker_field, fields::text(ticker))?;
    let (symbol, quote) = ctx.symbols.resolve(ticker).ok_or_else(|| {
        FieldError::new(
            ticker_field,
            format!("`{ticker}` is not a configured symbol"),
        )
    })?;

    let price = match raw.first(&["price", "close"]) {
        Some((name, v)) => Some(field(name, fields::price(v))?),
        None => None,
    };
    let sent_at = match raw.first(&["timestamp", "time", "timenow"]) {
        Some((name, v)) => Some(field(name, fields::timestamp(v))?),
        None => None,
    };
    let comment = match raw.first(&["comment"]) {
        Some((name, v)) => Some(field(name, fields::text(v))?.to_string()),
        None => None,
    };

    let intent = if let Some(v) = raw.get("action") {
        orders::refuse_unsupported(raw)?;
        action_intent(
            raw,
            field("action", fields::text(v))?,
            quote,
            ctx.received_at,
        )?
    } else if let Some(v) = raw.get("signal") {
        orders::refuse_unsupported(raw)?;
        let side = match field("signal", fields::text(v))?
            .to_ascii_uppercase()
            .as_str()
        {
            "BUY" => PositionSide::Long,
            "SELL" => PositionSide::Short,
            other => {
                return Err(FieldError::new(
                    "signal",
                    format!("`{other}` is not BUY or SELL"),
                ))
            }
        };
        if orders::reduce_only(raw)? {
            orders::refuse_entry_fields(raw, "a reduce-only order")?;
            let size = match raw.get("volume") {
                Some(v) => Some(CloseSize::Base(field("volume", fields::quantity(v))?)),
                None => None,
            };
            reduce(side, size)
        } else {
            let mut order = EntryParams::default();
            if let Some(v) = raw.get("volume") {
                order.size = Some(SizeSpec::Base(field("volume", fields::quantity(v))?));
            }
            order.stop_loss = orders::trailing_stop(raw)?;
            order.limit = orders::limit(raw, ctx.received_at)?;
            Intent::Open { side, order }
        }
    } else if let Some(v) = raw.get("market_position") {
        orders::refuse_unsupported(raw)?;
        if orders::reduce_only(raw)? {
            return Err(FieldError::new(
                "reduce_only",
                "is not supported on a strategy target: the target says the whole position",
            ));
        }
        Intent::Target {
            target: target(raw, field("market_position", fields::text(v))?)?,
        }
    } else if price.is_some() {
        Intent::Tick
    } else {
        return Err(FieldError::new(
            "action",
            "is required: send `action`, `signal` or `market_position`, or a `price` for a tick",
        ));
    };

    Ok(Signal {
        id: ctx.signal_id.clone(),
        source: ctx.source.to_string(),
        symbol: symbol.clone(),
        received_at: ctx.received_at,
        sent_at,
        price,
        intent,
        comment,
    })
}

/// Names the field a value came from in its error.
fn field<T>(name: &'static str, result: Result<T, String>) -> Result<T, FieldError> {
    result.map_err(|message| FieldError::new(name, message))
}

fn action_intent(
    raw: &RawPayload,
    action: &str,
    quote: &str,
    now: Timestamp,
) -> Result<Intent, FieldError> {
    let lower = action.to_ascii_lowercase();
    match lower.as_str() {
        "update_stops" => return update_exits(raw, false),
        "move_stop_to_breakeven" => return update_exits(raw, true),
        _ => {}
    }
    // TradingView's {{strategy.order.action}} says buy or sell.
    let action = match lower.as_str() {
        "buy" => Action::OpenLong,
        "sell" => Action::OpenShort,
        name => Action::parse(name).filter(|a| !matches!(a, Action::Target | Action::Tick)).ok_or_else(|| {
            FieldError::new(
                "action",
                format!(
                    "`{action}` is not one of open_long, open_short, close_long, close_short, close, reverse, pause, \
                     resume, update_stops, move_stop_to_breakeven, buy, sell"
                ),
            )
        })?,
    };
    let order = || entry_params(raw, quote, now);
    let reducing = orders::reduce_only(raw)?;
    let close = |side: Option<PositionSide>| -> Result<Intent, FieldError> {
        orders::refuse_entry_fields(raw, "a close")?;
        Ok(match raw.get("position_size") {
            Some(v) => Intent::PartialClose {
                side,
                size: orders::close_size(v)?,
            },
            None => Intent::Close { side },
        })
    };
    // A reduce-only buy reduces a short and never opens a long, as on Binance; a sell the reverse.
    let reduce_only = |side: PositionSide| -> Result<Intent, FieldError> {
        orders::refuse_entry_fields(raw, "a reduce-only order")?;
        let size = match raw.get("position_size") {
            Some(v) => Some(orders::close_size(v)?),
            None => None,
        };
        Ok(reduce(side, size))
    };
    Ok(match action {
        Action::OpenLong if reducing => reduce_only(PositionSide::Long)?,
        Action::OpenShort if reducing => reduce_only(PositionSide::Short)?,
        Action::OpenLong => Intent::Open {
            side: PositionSide::Long,
            order: order()?,
        },
        Action::OpenShort => Intent::Open {
            side: PositionSide::Short,
            order: order()?,
        },
        Action::CloseLong => close(Some(PositionSide::Long))?,
        Action::CloseShort => close(Some(PositionSide::Short))?,
        Action::Close => close(None)?,
        Action::Reverse if reducing => {
            return Err(FieldError::new(
                "reduce_only",
                "a reverse opens the other side, so it cannot be reduce-only",
            ))
        }
        Action::Reverse => {
            let order = order()?;
            if order.limit.is_some() {
                return Err(FieldError::new(
                    "order_type",
                    "a reverse closes at market first: only open_long and open_short may be limit orders",
                ));
            }
            Intent::Reverse { order }
        }
        Action::Pause => Intent::Pause,
        Action::Resume => Intent::Resume,
        Action::Target | Action::Tick | Action::UpdateStops | Action::MoveStopToBreakeven => {
            unreachable!("filtered above")
        }
    })
}

/// `update_stops` (at least one of `stop_loss`, `take_profit`) or `move_stop_to_breakeven` (the stop to the
/// average entry; a `take_profit` may move with it). Nothing is entered, so entry fields are refused.
fn update_exits(raw: &RawPayload, breakeven: bool) -> Result<Intent, FieldError> {
    let what = if breakeven {
        "move_stop_to_breakeven"
    } else {
        "update_stops"
    };
    for name in [
        "position_size",
        "leverage",
        "reduce_only",
        "trailing_stop",
        "limit_price",
        "order_type",
    ] {
        if raw.get(name).is_some() {
            return Err(FieldError::new(
                name,
                format!(
                    "{what} moves the resting stops and opens nothing, so it takes no `{name}`"
                ),
            ));
        }
    }
    if breakeven && raw.get("stop_loss").is_some() {
        return Err(FieldError::new(
            "stop_loss",
            "move_stop_to_breakeven puts the stop at the entry price; send `update_stops` to set it elsewhere",
        ));
    }
    let level = |name: &'static str| -> Result<_, FieldError> {
        raw.get(name)
            .map(|v| field(name, fields::exit_level(v)))
            .transpose()
    };
    let (stop_loss, take_profit) = (level("stop_loss")?, level("take_profit")?);
    if !breakeven && stop_loss.is_none() && take_profit.is_none() {
        return Err(FieldError::new(
            "stop_loss",
            "update_stops needs `stop_loss`, `take_profit` or both",
        ));
    }
    Ok(Intent::UpdateExits {
        stop_loss,
        take_profit,
        breakeven,
    })
}

/// A reduce-only order on the entry side `side`: it reduces the opposite position by `size` (all of it if `None`).
fn reduce(side: PositionSide, size: Option<CloseSize>) -> Intent {
    let closes = side.opposite();
    match size {
        Some(size) => Intent::PartialClose {
            side: Some(closes),
            size,
        },
        None => Intent::Close { side: Some(closes) },
    }
}

fn entry_params(raw: &RawPayload, quote: &str, now: Timestamp) -> Result<EntryParams, FieldError> {
    let mut order = EntryParams {
        limit: orders::limit(raw, now)?,
        ..EntryParams::default()
    };
    if let Some(v) = raw.get("position_size") {
        order.size = Some(field("position_size", fields::size(v, quote))?);
    }
    if let Some(v) = raw.get("leverage") {
        let n = field("leverage", fields::decimal(v))?;
        let leverage = n
            .to_u32()
            .filter(|_| n.fract().is_zero())
            .and_then(|l| Leverage::new(l).ok())
            .ok_or_else(|| {
                FieldError::new(
                    "leverage",
                    format!("`{n}` is not a whole number from 1 to {}", Leverage::MAX),
                )
            })?;
        order.leverage = Some(leverage);
    }
    if let Some(v) = raw.get("stop_loss") {
        order.stop_loss = Some(field("stop_loss", fields::exit_level(v))?);
    }
    if let Some(trailing) = orders::trailing_stop(raw)? {
        order.stop_loss = Some(trailing);
    }
    if let Some(v) = raw.get("take_profit") {
        order.take_profit = Some(field("take_profit", fields::exit_level(v))?);
    }
    Ok(order)
}

fn target(raw: &RawPayload, position: &str) -> Result<TargetPosition, FieldError> {
    let size = || -> Result<_, FieldError> {
        let v = raw.get("market_position_size").ok_or_else(|| {
            FieldError::new(
                "market_position_size",
                "is required for a long or short target",
            )
        })?;
        fields::quantity(v).map_err(|m| FieldError::new("market_position_size", m))
    };
    match position.to_ascii_lowercase().as_str() {
        "flat" => Ok(TargetPosition::Flat),
        "long" => Ok(TargetPosition::Long(size()?)),
        "short" => Ok(TargetPosition::Short(size()?)),
        other => Err(FieldError::new(
            "market_position",
            format!("`{other}` is not long, short or flat"),
        )),
    }
}

/// The signal id of a delivery: `<source>:<sender's id>` when the sender gave one that fits (so two sources' ids never
/// collide, and a retry gets the same id), else `<source>.<digest>` of the source and id, else `fresh`. Source names
/// hold neither `:` nor `.`, and digests no `:`, so an id that fits can never be mistaken for the digest of another.
pub fn signal_id(
    source: &str,
    sender_id: Option<&str>,
    fresh: impl FnOnce() -> SignalId,
) -> SignalId {
    let Some(id) = sender_id else { return fresh() };
    SignalId::new(&format!("{source}:{id}")).unwrap_or_else(|_| {
        let mut hasher = Sha256::new();
        hasher.update(source.as_bytes());
        hasher.update([0]);
        hasher.update(id.as_bytes());
        let digest = hex::encode(&hasher.finalize()[..16]);
        let short = &source[..source.len().min(64 - 1 - digest.len())];
        SignalId::new(&format!("{short}.{digest}")).expect("source names and hex digits are valid")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> SignalId {
        SignalId::new("fresh").unwrap()
    }

    #[test]
    fn ids_that_do_not_fit_never_collide_with_ids_that_do() {
        let spaced = signal_id("tv", Some("a b"), fresh);
        assert!(spaced.as_str().starts_with("tv."), "{spaced}");
        let digest = spaced.as_str().trim_start_matches("tv.");
        // A later delivery whose id is that digest is another signal.
        assert_ne!(signal_id("tv", Some(digest), fresh), spaced);
        assert_eq!(signal_id("tv", Some("a b"), fresh), spaced, "stable");
        assert_ne!(signal_id("tv", Some("a  b"), fresh), spaced);
        assert_eq!(signal_id("tv", Some("x-1"), fresh).as_str(), "tv:x-1");
        assert_eq!(signal_id("tv", None, fresh).as_str(), "fresh");
    }
}
