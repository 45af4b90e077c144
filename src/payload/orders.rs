//! What an order means, checked before it is accepted: fields that would change an order's meaning and that
//! Sentinel does not support are refused (never ignored), `reduce_only`, a close's size, and stop and target levels
//! on the right side of the entry price.

use rust_decimal::Decimal;
use sentinel_actors::amount::parse_decimal;
use sentinel_actors::signal::{CloseSize, ExitLevel, Intent, LimitOrder, Signal, TimeInForce};
use sentinel_actors::types::{PositionSide, Price, Quantity, Timestamp};
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::OnceLock;

use super::fields;
use super::{FieldError, RawPayload};

/// Fields other bots and exchanges use that would change what an order means, and that Sentinel does not act on:
/// each is refused, naming it, with what to write instead.
const UNSUPPORTED: [(&str, &str); 20] = [
    (
        "stop_price",
        "stop entries are not supported: send a market order",
    ),
    (
        "trigger_price",
        "triggered orders are not supported: send a market order",
    ),
    (
        "activation_price",
        "a trailing stop starts from the entry: send only `trailing_stop`",
    ),
    (
        "callback_rate",
        "the trailing distance is read from `trailing_stop` (\"1%\")",
    ),
    ("expire_time", "the expiry is read from `expires_at`"),
    ("expiry", "the expiry is read from `expires_at`"),
    ("good_till_date", "the expiry is read from `expires_at`"),
    (
        "post_only",
        "post-only orders are not supported: send a limit entry without it",
    ),
    (
        "close_position",
        "send `close`, `close_long` or `close_short`",
    ),
    ("quantity", "the size is read from `position_size`"),
    ("qty", "the size is read from `position_size`"),
    ("size", "the size is read from `position_size`"),
    ("amount", "the size is read from `position_size`"),
    ("contracts", "the size is read from `position_size`"),
    ("sl", "the stop is read from `stop_loss`"),
    ("tp", "the target is read from `take_profit`"),
    (
        "break_even",
        "send `\"action\": \"move_stop_to_breakeven\"`",
    ),
    (
        "position_side",
        "hedge-mode sides are not supported: positions are one-way, opened by `open_long` or `open_short`",
    ),
    (
        "margin_type",
        "the margin mode is not chosen per order: set `margin_mode` on the symbol in config.toml",
    ),
    (
        "margin_mode",
        "the margin mode is not chosen per order: set `margin_mode` on the symbol in config.toml",
    ),
];

/// The fields Sentinel reads that change what an order is, by their one spelling. The same name written another
/// way (`reduceOnly`, `Order-Type`, `limitprice`) is refused rather than ignored: ignored, it would turn a limit
/// entry into a market order or a reduce-only close into an opening order.
const ORDER_FIELDS: [&str; 13] = [
    "action",
    "signal",
    "position_size",
    "leverage",
    "reduce_only",
    "stop_loss",
    "take_profit",
    "trailing_stop",
    "order_type",
    "limit_price",
    "time_in_force",
    "expires_at",
    "market_position_size",
];

/// Order types under the names exchanges and their client libraries use; a `type` holding one of them is an order
/// type written the venue's way.
const VENUE_ORDER_TYPES: [&str; 8] = [
    "market",
    "limit",
    "stop",
    "stop_market",
    "stop_limit",
    "take_profit",
    "take_profit_market",
    "trailing_stop_market",
];

/// The longest field name compared, folded; a longer key is none of them.
const FOLDED_MAX: usize = 24;

/// A field name without case, `_`, `-`, `.` or spaces: `reduceOnly`, `reduce.only` and `REDUCE_ONLY` fold to one.
/// Kept inline, so folding a key allocates nothing: this runs for every key of every payload.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Folded {
    len: usize,
    bytes: [u8; FOLDED_MAX],
}

impl Folded {
    fn of(name: &str) -> Option<Folded> {
        let mut folded = Folded {
            len: 0,
            bytes: [0; FOLDED_MAX],
        };
        for c in name.bytes() {
            if matches!(c, b'_' | b'-' | b'.' | b' ') {
                continue;
            }
            *folded.bytes.get_mut(folded.len)? = c.to_ascii_lowercase();
            folded.len += 1;
        }
        Some(folded)
    }
}

/// What a key that folds to a known name means.
enum Known {
    /// One of `ORDER_FIELDS`, spelled another way.
    Order(&'static str),
    /// One of `UNSUPPORTED`, with why.
    Unsupported(&'static str, &'static str),
    /// `type`: an order type written the venue's way, when its value is one.
    Type,
}

/// Every name a key is compared with, folded, built once.
fn known_names() -> &'static HashMap<Folded, Known> {
    static NAMES: OnceLock<HashMap<Folded, Known>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let folded = |name: &str| Folded::of(name).expect("a known name fits FOLDED_MAX");
        let mut names = HashMap::new();
        names.insert(folded("type"), Known::Type);
        for (field, why) in UNSUPPORTED {
            names.insert(folded(field), Known::Unsupported(field, why));
        }
        for field in ORDER_FIELDS {
            names.insert(folded(field), Known::Order(field));
        }
        names
    })
}
/// Refuses a payload holding a field that would change the order's meaning and that Sentinel does not support, or
/// one of its own order fields spelled another way. Keys are compared without regard to case, `_`, `-`, `.` or spaces;
/// any `trailing_*` key but `trailing_stop` itself is a trailing stop written some other way, and a `type` holding
/// an order type is `order_type` written the venue's way.
pub(super) fn refuse_unsupported(raw: &RawPayload) -> Result<(), FieldError> {
    // The order type first: it is what a sender of `limit_price` or `time_in_force` meant to change.
    if let Some(value) = raw.get("order_type") {
        let kind = fields::text(value).map_err(|m| FieldError::new("order_type", m))?;
        if !kind.eq_ignore_ascii_case("market") && !kind.eq_ignore_ascii_case("limit") {
            return Err(FieldError::new(
                "order_type",
                format!("`{kind}` is not supported: send `market` or `limit`"),
            ));
        }
    }
    for (key, value) in raw.0.iter().filter(|(_, v)| !v.is_null()) {
        if ORDER_FIELDS.contains(&key.as_str()) {
            continue;
        }
        match Folded::of(key).and_then(|k| known_names().get(&k)) {
            Some(Known::Order(field)) => {
                return Err(FieldError::new(
                    field,
                    format!("`{key}` is not read: write `{field}`"),
                ))
            }
            Some(Known::Unsupported(field, why)) => return Err(FieldError::new(field, *why)),
            Some(Known::Type) => {
                let is_order_type = |kind: &&str| {
                    VENUE_ORDER_TYPES
                        .iter()
                        .any(|t| Folded::of(t) == Folded::of(kind))
                };
                if let Some(kind) = value.as_str().filter(is_order_type) {
                    return Err(FieldError::new(
                        "order_type",
                        format!("`type` is not read: write `\"order_type\": \"market\"` or `\"limit\"` (got `{kind}`)"),
                    ));
                }
            }
            None => {}
        }
        if key
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("trailing"))
            && key != "trailing_stop"
        {
            return Err(FieldError::new(
                "trailing_stop",
                format!("`{key}` is not read: write `\"trailing_stop\": \"1%\"`"),
            ));
        }
    }
    Ok(())
}

/// The fields of a limit entry, refused on anything else.
const LIMIT_FIELDS: [&str; 3] = ["limit_price", "time_in_force", "expires_at"];

/// A limit entry's terms: `"order_type": "limit"` with `limit_price`, an optional `time_in_force` (`GTC`, the
/// default; `IOC`; `FOK`; `GTD`, the default when `expires_at` is given) and `expires_at` (a `GTD` order's expiry,
/// after `now`). `None` for a market order, which takes none of these fields.
pub(super) fn limit(raw: &RawPayload, now: Timestamp) -> Result<Option<LimitOrder>, FieldError> {
    let is_limit = match raw.get("order_type") {
        Some(v) => fields::text(v)
            .map_err(|m| FieldError::new("order_type", m))?
            .eq_ignore_ascii_case("limit"),
        None => raw.get("limit_price").is_some(),
    };
    if !is_limit {
        if let Some(name) = LIMIT_FIELDS.into_iter().find(|n| raw.get(n).is_some()) {
            return Err(FieldError::new(
                name,
                format!("a market order takes no `{name}`: send `\"order_type\": \"limit\"` for a limit entry"),
            ));
        }
        return Ok(None);
    }
    let price = raw
        .get("limit_price")
        .ok_or_else(|| FieldError::new("limit_price", "is required for a limit entry"))
        .and_then(|v| fields::price(v).map_err(|m| FieldError::new("limit_price", m)))?;
    let expires_at = raw
        .get("expires_at")
        .map(|v| fields::timestamp(v).map_err(|m| FieldError::new("expires_at", m)))
        .transpose()?;
    let time_in_force = match raw.get("time_in_force") {
        Some(v) => {
            let text = fields::text(v).map_err(|m| FieldError::new("time_in_force", m))?;
            TimeInForce::parse(text.trim()).ok_or_else(|| {
                FieldError::new(
                    "time_in_force",
                    format!("`{text}` is not one of GTC, IOC, FOK, GTD"),
                )
            })?
        }
        None if expires_at.is_some() => TimeInForce::Gtd,
        None => TimeInForce::Gtc,
    };
    match (time_in_force, expires_at) {
        (TimeInForce::Gtd, None) => {
            return Err(FieldError::new(
                "expires_at",
                "is required for a GTD order: when it is taken off unfilled",
            ))
        }
        (TimeInForce::Gtd, Some(at)) if at <= now => {
            return Err(FieldError::new(
                "expires_at",
                "is in the past: a GTD order must expire after it arrives",
            ))
        }
        (TimeInForce::Gtd, Some(_)) | (_, None) => {}
        (other, Some(_)) => {
            return Err(FieldError::new(
                "time_in_force",
                format!(
                    "a {} order does not expire: send `GTD` with `expires_at`",
                    other.as_str()
                ),
            ))
        }
    }
    Ok(Some(LimitOrder {
        price,
        time_in_force,
        expires_at,
    }))
}

/// `reduce_only`: true or false, as JSON or as text; absent is false.
pub(super) fn reduce_only(raw: &RawPayload) -> Result<bool, FieldError> {
    match raw.get("reduce_only") {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(FieldError::new("reduce_only", "must be true or false")),
    }
}

/// An entry's `trailing_stop`: `"1%"`, from 0.1% to 10%, in place of a fixed `stop_loss` (the stop it arms is the
/// position's only one).
pub(super) fn trailing_stop(raw: &RawPayload) -> Result<Option<ExitLevel>, FieldError> {
    let Some(value) = raw.get("trailing_stop") else {
        return Ok(None);
    };
    let err = |m: String| FieldError::new("trailing_stop", m);
    if raw.get("stop_loss").is_some() {
        return Err(err(
            "a trailing stop is the position's stop: send it or `stop_loss`, not both".into(),
        ));
    }
    let text = fields::text(value).map_err(err)?.trim();
    let Some(pct) = text.strip_suffix('%') else {
        return Err(err(format!(
            "`{text}` is not a percentage: write the distance as \"1%\" (0.1% to 10%)"
        )));
    };
    let pct =
        parse_decimal(pct.trim()).map_err(|e| err(format!("`{text}` is not a percentage: {e}")))?;
    ExitLevel::trailing(pct)
        .map(Some)
        .map_err(|e| err(e.to_string()))
}

/// A close's `position_size`: `"0.5"` units of the base asset or `"50%"` of the position.
pub(super) fn close_size(value: &Value) -> Result<CloseSize, FieldError> {
    let err = |m: String| FieldError::new("position_size", m);
    if let Value::Number(_) = value {
        return fields::quantity(value).map(CloseSize::Base).map_err(err);
    }
    let raw = fields::text(value).map_err(err)?;
    if let Some(pct) = raw.strip_suffix('%') {
        let pct = parse_decimal(pct.trim())
            .map_err(|e| err(format!("`{raw}` is not a percentage: {e}")))?;
        return CloseSize::position_percent(pct).map_err(|e| err(format!("`{raw}`: {e}")));
    }
    Quantity::from_str(raw).map(CloseSize::Base).map_err(|e| {
        err(format!(
            "`{raw}` is not a size to close ({e}): write units of the base asset (\"0.5\") or a percent of the \
             position (\"50%\")"
        ))
    })
}

/// Refuses entry fields on an order that opens nothing (a close, or a reduce-only order).
pub(super) fn refuse_entry_fields(raw: &RawPayload, what: &str) -> Result<(), FieldError> {
    let limit = raw
        .get("order_type")
        .and_then(|v| v.as_str())
        .is_some_and(|t| t.eq_ignore_ascii_case("limit"));
    if limit {
        return Err(FieldError::new(
            "order_type",
            format!("{what} is a market order: only entries may be limit orders"),
        ));
    }
    for name in ["stop_loss", "trailing_stop", "take_profit", "leverage"]
        .into_iter()
        .chain(LIMIT_FIELDS)
    {
        if raw.get(name).is_some() {
            return Err(FieldError::new(
                name,
                format!("{what} opens nothing, so it takes no `{name}`"),
            ));
        }
    }
    Ok(())
}

/// Refuses a stop or target level on the wrong side of the entry price: for a long, a stop at or above it or a
/// target at or below it; the reverse for a short. The entry price is the signal's `price`, else `last_price` (the
/// symbol's last mark); with neither nothing is checked here, and the strategy answers `no_price`. `position` is the
/// symbol's signed position, which tells the side a `reverse` opens, and the side whose stops `update_stops` moves
/// (measured against the last price, since nothing is entered; without a position the strategy ignores it).
pub fn check_levels(
    signal: &Signal,
    last_price: Option<Price>,
    position: Decimal,
) -> Result<(), FieldError> {
    let (side, stop_loss, take_profit, reference) = match &signal.intent {
        Intent::Open { side, order } => (*side, order.stop_loss, order.take_profit, "entry"),
        Intent::Reverse { order } if position > Decimal::ZERO => (
            PositionSide::Short,
            order.stop_loss,
            order.take_profit,
            "entry",
        ),
        Intent::Reverse { order } if position < Decimal::ZERO => (
            PositionSide::Long,
            order.stop_loss,
            order.take_profit,
            "entry",
        ),
        Intent::UpdateExits {
            stop_loss,
            take_profit,
            ..
        } if !position.is_zero() => {
            let side = if position > Decimal::ZERO {
                PositionSide::Long
            } else {
                PositionSide::Short
            };
            (side, *stop_loss, *take_profit, "last")
        }
        _ => return Ok(()),
    };
    // A limit entry enters at its limit price, whatever the market does until then.
    let limit = match &signal.intent {
        Intent::Open { order, .. } => order.limit.map(|l| l.price),
        _ => None,
    };
    let (entry, reference) = match limit {
        Some(limit) => (limit, "limit"),
        None => match signal.price.or(last_price) {
            Some(price) => (price, reference),
            None => return Ok(()),
        },
    };
    let long = side == PositionSide::Long;
    let side_name = if long { "long" } else { "short" };
    if let Some(ExitLevel::Price(stop)) = stop_loss {
        let wrong = if long { stop >= entry } else { stop <= entry };
        if wrong {
            let should = if long { "below" } else { "above" };
            return Err(FieldError::new(
                "stop_loss",
                format!(
                    "{stop} is on the wrong side: a {side_name}'s stop must be {should} the {reference} price {entry}"
                ),
            ));
        }
    }
    if let Some(ExitLevel::Price(target)) = take_profit {
        let wrong = if long {
            target <= entry
        } else {
            target >= entry
        };
        if wrong {
            let should = if long { "above" } else { "below" };
            return Err(FieldError::new(
                "take_profit",
                format!(
                    "{target} is on the wrong side: a {side_name}'s target must be {should} the {reference} price {entry}"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_actors::signal::EntryParams;
    use sentinel_actors::types::{SignalId, Symbol, Timestamp};

    fn raw(json: &str) -> RawPayload {
        RawPayload::parse(json.as_bytes()).unwrap()
    }

    fn p(s: &str) -> Price {
        Price::from_str(s).unwrap()
    }

    fn entry(side: PositionSide, stop: Option<&str>, target: Option<&str>) -> Intent {
        Intent::Open {
            side,
            order: EntryParams {
                stop_loss: stop.map(|s| ExitLevel::Price(p(s))),
                take_profit: target.map(|s| ExitLevel::Price(p(s))),
                ..EntryParams::default()
            },
        }
    }

    fn signal(price: Option<&str>, intent: Intent) -> Signal {
        Signal {
            id: SignalId::new("s").unwrap(),
            source: "t".into(),
            symbol: Symbol::new("ETHUSDT").unwrap(),
            received_at: Timestamp(0),
            sent_at: None,
            price: price.map(p),
            intent,
            comment: None,
        }
    }

    fn field(result: Result<(), FieldError>) -> Option<&'static str> {
        result.err().map(|e| e.field)
    }

    #[test]
    fn levels_on_the_wrong_side_name_their_field() {
        use PositionSide::{Long, Short};
        let cases = [
            // (side, stop, target, price, last, refused field)
            (
                Short,
                Some("2700"),
                None,
                Some("2800"),
                None,
                Some("stop_loss"),
            ),
            (
                Short,
                None,
                Some("2900"),
                Some("2800"),
                None,
                Some("take_profit"),
            ),
            (
                Short,
                Some("2800"),
                None,
                Some("2800"),
                None,
                Some("stop_loss"),
            ),
            (Short, Some("2900"), Some("2700"), Some("2800"), None, None),
            (
                Long,
                Some("2800"),
                None,
                Some("2800"),
                None,
                Some("stop_loss"),
            ),
            (
                Long,
                None,
                Some("2800"),
                Some("2800"),
                None,
                Some("take_profit"),
            ),
            (Long, Some("2700"), Some("2900"), Some("2800"), None, None),
            // No price in the payload: the last mark is the entry price.
            (
                Long,
                Some("2900"),
                None,
                None,
                Some("2800"),
                Some("stop_loss"),
            ),
            (Long, Some("2700"), None, None, Some("2800"), None),
            // No price known at all: left to the strategy (`no_price`).
            (Long, Some("2900"), None, None, None, None),
        ];
        for (side, stop, target, price, last, refused) in cases {
            let s = signal(price, entry(side, stop, target));
            assert_eq!(
                field(check_levels(&s, last.map(p), Decimal::ZERO)),
                refused,
                "{side:?} stop {stop:?} target {target:?} at {price:?}/{last:?}"
            );
        }
    }

    #[test]
    fn a_reverse_is_checked_for_the_side_it_opens() {
        let reverse = Intent::Reverse {
            order: EntryParams {
                stop_loss: Some(ExitLevel::Price(p("2700"))),
                ..EntryParams::default()
            },
        };
        let s = signal(Some("2800"), reverse);
        // Long now: the reverse opens a short, whose stop must be above 2800.
        assert_eq!(
            field(check_levels(&s, None, Decimal::ONE)),
            Some("stop_loss")
        );
        assert_eq!(field(check_levels(&s, None, Decimal::NEGATIVE_ONE)), None);
    }

    #[test]
    fn unsupported_fields_are_named() {
        for (json, name) in [
            (r#"{"order_type":"stop"}"#, "order_type"),
            (r#"{"post_only":true}"#, "post_only"),
            (r#"{"expire_time":1}"#, "expire_time"),
            (r#"{"Trailing_Stop":"1%"}"#, "trailing_stop"),
            (r#"{"Trailing_Offset":"1"}"#, "trailing_stop"),
            (r#"{"callback_rate":"1"}"#, "callback_rate"),
            (r#"{"SL":"1%"}"#, "sl"),
            (r#"{"qty":"1"}"#, "qty"),
        ] {
            assert_eq!(
                refuse_unsupported(&raw(json)).unwrap_err().field,
                name,
                "{json}"
            );
        }
        for fine in [
            r#"{"order_type":"market"}"#,
            r#"{"order_type":"MARKET","limit_price":null}"#,
            r#"{"order_type":"limit","limit_price":90,"time_in_force":"GTC"}"#,
            r#"{"interval":"5","exchange":"BINANCE"}"#,
            r#"{"trailing_stop":"1%"}"#,
        ] {
            assert_eq!(refuse_unsupported(&raw(fine)), Ok(()), "{fine}");
        }
    }

    #[test]
    fn trailing_stops_are_a_percent_within_binance_bounds_and_no_fixed_stop() {
        let rate = |json: &str| trailing_stop(&raw(json)).map_err(|e| e.field);
        let pct = |s: &str| Some(ExitLevel::Trailing(Decimal::from_str(s).unwrap()));
        assert_eq!(rate("{}"), Ok(None));
        assert_eq!(rate(r#"{"trailing_stop":"1%"}"#), Ok(pct("1")));
        assert_eq!(rate(r#"{"trailing_stop":" 0.1 %"}"#), Ok(pct("0.1")));
        assert_eq!(rate(r#"{"trailing_stop":"10%"}"#), Ok(pct("10")));
        for bad in [
            r#"{"trailing_stop":"0.09%"}"#,
            r#"{"trailing_stop":"10.01%"}"#,
            r#"{"trailing_stop":"0%"}"#,
            r#"{"trailing_stop":"-1%"}"#,
            r#"{"trailing_stop":"1"}"#,
            r#"{"trailing_stop":1}"#,
            r#"{"trailing_stop":"x%"}"#,
            r#"{"trailing_stop":"1%","stop_loss":"2%"}"#,
        ] {
            assert_eq!(rate(bad), Err("trailing_stop"), "{bad}");
        }
    }

    #[test]
    fn close_sizes() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(
            close_size(&Value::String("50%".into())),
            Ok(CloseSize::PositionPercent(d("50")))
        );
        assert_eq!(
            close_size(&serde_json::json!(0.5)),
            Ok(CloseSize::Base(Quantity::from_str("0.5").unwrap()))
        );
        assert_eq!(
            close_size(&Value::String("0.25".into())),
            Ok(CloseSize::Base(Quantity::from_str("0.25").unwrap()))
        );
        for bad in ["0%", "101%", "-1%", "500 USDT", "-1", "x"] {
            assert!(close_size(&Value::String(bad.into())).is_err(), "{bad}");
        }
    }

    #[test]
    fn reduce_only_values() {
        assert_eq!(reduce_only(&raw("{}")), Ok(false));
        assert_eq!(reduce_only(&raw(r#"{"reduce_only":true}"#)), Ok(true));
        assert_eq!(reduce_only(&raw(r#"{"reduce_only":"false"}"#)), Ok(false));
        assert!(reduce_only(&raw(r#"{"reduce_only":1}"#)).is_err());
    }

    fn refused(body: &str) -> Option<&'static str> {
        refuse_unsupported(&raw(body)).err().map(|e| e.field)
    }

    #[test]
    fn order_fields_spelled_another_way_are_refused_by_the_spelling_read() {
        for (body, field) in [
            (r#"{"action":"buy","reduceOnly":true}"#, "reduce_only"),
            (r#"{"action":"buy","REDUCE-ONLY":true}"#, "reduce_only"),
            (r#"{"action":"buy","reduce.only":true}"#, "reduce_only"),
            (r#"{"action":"buy","TimeInForce":"IOC"}"#, "time_in_force"),
            (r#"{"action":"buy","takeProfit":"3%"}"#, "take_profit"),
            (r#"{"action":"buy","stoploss":"3%"}"#, "stop_loss"),
            (r#"{"action":"buy","type":"stop_market"}"#, "order_type"),
            (
                r#"{"action":"buy","Position Side":"LONG"}"#,
                "position_side",
            ),
            (r#"{"action":"buy","Qty":1}"#, "qty"),
        ] {
            assert_eq!(refused(body), Some(field), "{body}");
        }
    }

    #[test]
    fn fields_that_do_not_change_the_order_pass() {
        for body in [
            r#"{"action":"buy","reduce_only":true,"stop_loss":"2%","order_type":"market"}"#,
            r#"{"action":"buy","type":"alert","interval":"15","exchange":"BINANCE"}"#,
            r#"{"action":"buy","reduceOnly":null}"#,
        ] {
            assert_eq!(refused(body), None, "{body}");
        }
    }
}
