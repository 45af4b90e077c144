//! Alerts written for other bots, taken as they are, so existing alerts keep working when they are pointed at
//! Sentinel: 3Commas signal-bot JSON and OctoBot's `KEY=VALUE` lines. Each is mapped onto Sentinel's own formats
//! in two steps:
//! - `parse`, before authentication: syntax only, so that the secret is found where the source's check looks for it;
//! - `translate`, after authentication: meaning, where anything that cannot be mapped is refused with 422, naming the
//!   field.

use std::str::FromStr;

use rust_decimal::Decimal;
use sentinel_actors::types::Timestamp;
use serde_json::{Map, Value};

use super::{FieldError, Malformed, RawPayload};

/// Marks a payload that arrived as OctoBot lines.
const OCTOBOT: &str = "octobot";
/// The key holding that mark. It is set only by `parse`; a JSON sender that sets it just asks for the same reading.
const FORMAT: &str = "format";

/// Reads a body: a JSON object (3Commas' `secret` becomes the passphrase a TradingView source checks), or OctoBot
/// lines (`KEY=VALUE`, one per line or separated by `;`, with at least `SIGNAL`).
pub fn parse(body: &[u8]) -> Result<RawPayload, Malformed> {
    match RawPayload::parse(body) {
        Ok(mut raw) => {
            if is_three_commas(&raw) && !raw.0.contains_key("passphrase") {
                if let Some(secret) = raw.0.remove("secret") {
                    raw.0.insert("passphrase".into(), secret);
                }
            }
            Ok(raw)
        }
        Err(malformed) => octobot_lines(body).ok_or(malformed),
    }
}

fn is_three_commas(raw: &RawPayload) -> bool {
    raw.0.contains_key("bot_uuid") || raw.0.contains_key("tv_instrument")
}

fn octobot_lines(body: &[u8]) -> Option<RawPayload> {
    let text = std::str::from_utf8(body).ok()?;
    let mut map = Map::new();
    for part in text.split(['\n', ';']) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = part.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() || map.contains_key(&key) {
            return None;
        }
        map.insert(key, Value::String(value.trim().to_string()));
    }
    if !map.contains_key("signal") {
        return None;
    }
    map.insert(FORMAT.into(), Value::String(OCTOBOT.into()));
    Some(RawPayload(map))
}

/// Maps a 3Commas or OctoBot payload onto Sentinel's action format; any other payload is left as it is.
pub fn translate(raw: &mut RawPayload, now: Timestamp) -> Result<(), FieldError> {
    if raw.0.get(FORMAT).and_then(Value::as_str) == Some(OCTOBOT) {
        raw.0.remove(FORMAT);
        return octobot(&mut raw.0);
    }
    if is_three_commas(raw) {
        return three_commas(&mut raw.0, now);
    }
    Ok(())
}

fn text<'a>(map: &'a Map<String, Value>, key: &'static str) -> Result<Option<&'a str>, FieldError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(_) => Err(FieldError::new(key, "must be text")),
    }
}

/// `BTCUSDT.P` (TradingView's perpetual), `BTC/USDT:USDT` (ccxt's) and `BTC/USDT` all name BTCUSDT.
fn symbol_of(ticker: &str) -> String {
    let ticker = ticker.split(':').next().unwrap_or(ticker);
    let ticker = ticker.strip_suffix(".P").unwrap_or(ticker);
    ticker.replace('/', "")
}

/// The quote currency a pair name ends with, for sizes given in it.
fn quote_of(symbol: &str) -> Option<&'static str> {
    ["USDT", "USDC", "BUSD", "FDUSD", "USD"]
        .into_iter()
        .find(|q| symbol.len() > q.len() && symbol.ends_with(q))
}

/// 3Commas signal bot (custom signal and strategy types):
/// `action` enter_long / exit_long / enter_short / exit_short, or a strategy's buy/sell with `strategy_info`;
/// `tv_instrument`, `trigger_price`, `timestamp`, `max_lag` and `order {amount, currency_type}`.
fn three_commas(map: &mut Map<String, Value>, now: Timestamp) -> Result<(), FieldError> {
    let instrument = text(map, "tv_instrument")?
        .ok_or_else(|| FieldError::new("tv_instrument", "is required"))?
        .to_string();
    let symbol = symbol_of(&instrument);
    if let Some(lag) = map.remove("max_lag") {
        let lag = match &lag {
            Value::String(s) => s.trim().parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
        .filter(|l| *l > 0)
        .ok_or_else(|| FieldError::new("max_lag", "must be a whole number of seconds"))?;
        if let Some(sent) = text(map, "timestamp")? {
            let sent =
                time::OffsetDateTime::parse(sent, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| {
                    FieldError::new("timestamp", format!("is not an ISO 8601 time: {e}"))
                })?;
            let age = now.0 / 1000 - sent.unix_timestamp();
            if age > lag {
                return Err(FieldError::new(
                    "max_lag",
                    format!(
                        "the signal is {age} s old, more than its max_lag of {lag} s: not acted on"
                    ),
                ));
            }
        }
    }
    let action = text(map, "action")?
        .ok_or_else(|| FieldError::new("action", "is required"))?
        .to_ascii_lowercase();
    let mapped = match action.as_str() {
        "enter_long" => Some("open_long"),
        "exit_long" => Some("close_long"),
        "enter_short" => Some("open_short"),
        "exit_short" => Some("close_short"),
        // A strategy alert: the position the strategy holds after the order is the target.
        "buy" | "sell" => None,
        other => {
            return Err(FieldError::new(
                "action",
                format!("`{other}` is not a 3Commas action Sentinel maps (enter_long, exit_long, enter_short, exit_short, buy, sell)"),
            ))
        }
    };
    let mut out = Map::new();
    out.insert("symbol".into(), Value::String(symbol.clone()));
    match mapped {
        Some(action) => {
            out.insert("action".into(), Value::String(action.into()));
        }
        None => {
            let info = map
                .get("strategy_info")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    FieldError::new("strategy_info", "is required with a buy or sell action")
                })?;
            for (from, to) in [
                ("market_position", "market_position"),
                ("market_position_size", "market_position_size"),
            ] {
                let value = info
                    .get(from)
                    .cloned()
                    .ok_or_else(|| FieldError::new("strategy_info", format!("needs {from}")))?;
                out.insert(to.into(), value);
            }
        }
    }
    if let Some(price) = map.remove("trigger_price") {
        out.insert("price".into(), price);
    }
    if let Some(order) = map.get("order").and_then(Value::as_object) {
        let amount = order.get("amount").and_then(Value::as_str).map(str::trim);
        let kind = order
            .get("currency_type")
            .and_then(Value::as_str)
            .unwrap_or("base");
        if let (Some(amount), Some(_)) = (amount, mapped.filter(|a| a.starts_with("open"))) {
            Decimal::from_str(amount).map_err(|_| {
                FieldError::new("order", format!("amount `{amount}` is not a number"))
            })?;
            let size = match kind {
                "base" => amount.to_string(),
                "quote" => {
                    let quote = quote_of(&symbol).ok_or_else(|| {
                        FieldError::new(
                            "order",
                            "a quote amount needs a pair that ends in its quote currency",
                        )
                    })?;
                    format!("{amount} {quote}")
                }
                other => {
                    return Err(FieldError::new(
                        "order",
                        format!("currency_type `{other}` is not supported (base or quote)"),
                    ))
                }
            };
            out.insert("position_size".into(), Value::String(size));
        }
    }
    for key in ["timestamp", "id", "signal_id", "passphrase", "comment"] {
        if let Some(value) = map.remove(key) {
            out.insert(key.into(), value);
        }
    }
    *map = out;
    Ok(())
}

/// OctoBot: `SIGNAL` BUY or SELL, `SYMBOL`, `VOLUME` (an amount of the base asset), `PRICE`, `STOP_PRICE`,
/// `TAKE_PROFIT_PRICE`, `REDUCE_ONLY`, `ORDER_TYPE` (MARKET, or LIMIT at `PRICE`), `EXCHANGE` and `TAG` (kept as the
/// comment).
fn octobot(map: &mut Map<String, Value>) -> Result<(), FieldError> {
    let mut out = Map::new();
    let signal = text(map, "signal")?
        .unwrap_or_default()
        .to_ascii_uppercase();
    if !matches!(signal.as_str(), "BUY" | "SELL") {
        return Err(FieldError::new(
            "SIGNAL",
            format!("`{signal}` is not supported: BUY or SELL"),
        ));
    }
    out.insert("signal".into(), Value::String(signal));
    let symbol = text(map, "symbol")?.ok_or_else(|| FieldError::new("SYMBOL", "is required"))?;
    out.insert("symbol".into(), Value::String(symbol_of(symbol)));
    // A LIMIT order's PRICE is its limit price; a MARKET order's is the price the alert saw.
    let limit = match text(map, "order_type")?
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("MARKET") => false,
        Some("LIMIT") => true,
        Some(other) => {
            return Err(FieldError::new(
                "ORDER_TYPE",
                format!("`{other}` orders are not supported: MARKET or LIMIT"),
            ))
        }
    };
    if limit {
        let price = text(map, "price")?
            .ok_or_else(|| FieldError::new("PRICE", "is required for a LIMIT order"))?;
        Decimal::from_str(price)
            .map_err(|_| FieldError::new("PRICE", format!("`{price}` is not a price")))?;
        out.insert("order_type".into(), Value::String("limit".into()));
        out.insert("limit_price".into(), Value::String(price.to_string()));
        map.remove("price");
    }
    if let Some(volume) = text(map, "volume")? {
        if volume.ends_with('%') {
            return Err(FieldError::new(
                "VOLUME",
                format!("`{volume}`: portfolio shares are not supported; give an amount of the base asset"),
            ));
        }
        out.insert("volume".into(), Value::String(volume.to_string()));
    }
    for (from, to, field) in [
        ("price", "price", "PRICE"),
        ("stop_price", "stop_loss", "STOP_PRICE"),
        ("take_profit_price", "take_profit", "TAKE_PROFIT_PRICE"),
    ] {
        if let Some(value) = text(map, from)? {
            Decimal::from_str(value)
                .map_err(|_| FieldError::new(field, format!("`{value}` is not a price")))?;
            out.insert(to.into(), Value::String(value.to_string()));
        }
    }
    if let Some(reduce) = text(map, "reduce_only")? {
        let reduce = match reduce.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(FieldError::new(
                    "REDUCE_ONLY",
                    format!("`{other}` is not true or false"),
                ))
            }
        };
        out.insert("reduce_only".into(), Value::Bool(reduce));
    }
    if let Some(tag) = text(map, "tag")? {
        out.insert("comment".into(), Value::String(tag.to_string()));
    }
    for key in map.keys() {
        let known = [
            "signal",
            "symbol",
            "order_type",
            "volume",
            "price",
            "stop_price",
            "take_profit_price",
            "reduce_only",
            "tag",
            "exchange",
            "passphrase",
        ];
        if !known.contains(&key.as_str()) {
            return Err(FieldError::new(
                "OCTOBOT",
                format!(
                    "`{}` is not an OctoBot key Sentinel maps",
                    key.to_ascii_uppercase()
                ),
            ));
        }
    }
    if let Some(passphrase) = map.remove("passphrase") {
        out.insert("passphrase".into(), passphrase);
    }
    *map = out;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        Timestamp(1_700_000_000_000)
    }

    fn translated(body: &str) -> Result<Value, FieldError> {
        let mut raw = parse(body.as_bytes()).expect("parses");
        translate(&mut raw, now())?;
        Ok(Value::Object(raw.0))
    }

    #[test]
    fn three_commas_custom_signals_map_onto_actions() {
        let body = json!({
            "secret": "tok", "max_lag": "300", "timestamp": "2023-11-14T22:13:00Z", "trigger_price": "37000.5",
            "tv_exchange": "BINANCE", "tv_instrument": "BTCUSDT.P", "action": "enter_long", "bot_uuid": "u-1",
            "order": {"amount": "250", "currency_type": "quote"}
        });
        let raw = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            raw.passphrase(),
            Some("tok"),
            "the secret is what a TradingView source checks"
        );
        assert_eq!(
            translated(&body.to_string()).unwrap(),
            json!({"symbol": "BTCUSDT", "action": "open_long", "price": "37000.5", "position_size": "250 USDT",
                   "timestamp": "2023-11-14T22:13:00Z", "passphrase": "tok"})
        );
        let exit = json!({"tv_instrument": "ETHUSDT", "action": "exit_short", "bot_uuid": "u"});
        assert_eq!(
            translated(&exit.to_string()).unwrap(),
            json!({"symbol": "ETHUSDT", "action": "close_short"})
        );
    }

    #[test]
    fn three_commas_strategy_alerts_become_targets_and_old_ones_are_refused() {
        let body = json!({
            "tv_instrument": "BTCUSDT", "action": "sell", "bot_uuid": "u",
            "strategy_info": {"market_position": "flat", "market_position_size": "0"}
        });
        assert_eq!(
            translated(&body.to_string()).unwrap(),
            json!({"symbol": "BTCUSDT", "market_position": "flat", "market_position_size": "0"})
        );
        // 2023-11-14T22:13:20Z is `now`; this one is 600 s older, past its 300 s max_lag.
        let stale = json!({"tv_instrument": "BTCUSDT", "action": "enter_long", "bot_uuid": "u", "max_lag": "300",
                           "timestamp": "2023-11-14T22:03:20Z"});
        assert_eq!(translated(&stale.to_string()).unwrap_err().field, "max_lag");
        let odd = json!({"tv_instrument": "BTCUSDT", "action": "enter_long", "bot_uuid": "u",
                         "order": {"amount": "5", "currency_type": "margin_percent"}});
        assert_eq!(translated(&odd.to_string()).unwrap_err().field, "order");
    }

    #[test]
    fn octobot_lines_map_onto_plain_signals() {
        let body = "EXCHANGE=binance\nSYMBOL=BTC/USDT:USDT\nSIGNAL=buy\nVOLUME=0.01\nSTOP_PRICE=38000\nTAKE_PROFIT_PRICE=55000\nTAG=breakout";
        assert_eq!(
            translated(body).unwrap(),
            json!({"signal": "BUY", "symbol": "BTCUSDT", "volume": "0.01", "stop_loss": "38000",
                   "take_profit": "55000", "comment": "breakout"})
        );
        let reduce = "EXCHANGE=binance;SYMBOL=ETHUSDT;SIGNAL=SELL;REDUCE_ONLY=true";
        assert_eq!(
            translated(reduce).unwrap(),
            json!({"signal": "SELL", "symbol": "ETHUSDT", "reduce_only": true})
        );
        let limit = "SYMBOL=ETHUSDT;SIGNAL=BUY;ORDER_TYPE=limit;PRICE=2500;VOLUME=1";
        assert_eq!(
            translated(limit).unwrap(),
            json!({"signal": "BUY", "symbol": "ETHUSDT", "order_type": "limit", "limit_price": "2500",
                   "volume": "1"})
        );
    }

    #[test]
    fn octobot_lines_that_cannot_be_mapped_are_refused_by_name() {
        for (body, field) in [
            (
                "SYMBOL=BTCUSDT\nSIGNAL=BUY\nORDER_TYPE=STOP\nPRICE=1",
                "ORDER_TYPE",
            ),
            ("SYMBOL=BTCUSDT\nSIGNAL=BUY\nORDER_TYPE=LIMIT", "PRICE"),
            ("SYMBOL=BTCUSDT\nSIGNAL=BUY\nVOLUME=12a%", "VOLUME"),
            ("SYMBOL=BTCUSDT\nSIGNAL=CANCEL", "SIGNAL"),
            (
                "SYMBOL=BTCUSDT\nSIGNAL=BUY\nTAKE_PROFIT_PRICE_1=5",
                "OCTOBOT",
            ),
        ] {
            assert_eq!(translated(body).unwrap_err().field, field, "{body}");
        }
        // Not lines at all: the JSON error stands.
        assert!(parse(b"hello").is_err());
        assert!(parse(b"SYMBOL=BTCUSDT").is_err(), "no SIGNAL");
    }
}
