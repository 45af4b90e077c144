//! Binance USD-M futures' published trading rules (GET /fapi/v1/exchangeInfo): each symbol's filters and the
//! account's rate limits, and the rounding and checks they ask of an order before it is sent.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

use sentinel_actors::types::Symbol;
use sentinel_actors::venue::RuleViolation;

/// The status of a symbol that takes orders; any other (SETTLING, CLOSE, ...) refuses them.
const TRADING: &str = "TRADING";

/// What exchangeInfo says about the account's venue: per-symbol filters and the rate limits.
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeRules {
    symbols: HashMap<Symbol, SymbolRules>,
    limits: RateLimits,
}

/// The request budgets the venue enforces; going over them gets the IP or the account paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    pub weight_per_minute: u32,
    pub orders_per_10s: u32,
    pub orders_per_minute: u32,
}

impl Default for RateLimits {
    /// Binance's documented limits for USD-M futures, for a document that leaves one out.
    fn default() -> Self {
        RateLimits {
            weight_per_minute: 2400,
            orders_per_10s: 300,
            orders_per_minute: 1200,
        }
    }
}

/// One symbol's rules, as exchangeInfo states them.
#[derive(Clone, Debug, PartialEq)]
pub struct SymbolRules {
    pub symbol: Symbol,
    /// `TRADING`, or why orders are refused (`SETTLING`, `CLOSE`, ...): kept as the venue spells it.
    pub status: String,
    pub price_precision: u32,
    pub quantity_precision: u32,
    /// PRICE_FILTER. A `max_price` of 0 means no maximum, as Binance documents.
    pub tick_size: Decimal,
    pub min_price: Decimal,
    pub max_price: Decimal,
    /// LOT_SIZE: limit orders.
    pub step_size: Decimal,
    pub min_qty: Decimal,
    pub max_qty: Decimal,
    /// MARKET_LOT_SIZE: market orders, usually a smaller maximum than LOT_SIZE.
    pub market_step_size: Decimal,
    pub market_min_qty: Decimal,
    pub market_max_qty: Decimal,
    /// MIN_NOTIONAL's `notional`: quantity times price, in the quote asset; reduce-only orders are exempt.
    pub min_notional: Decimal,
}

/// Which way a trigger price is rounded onto the tick grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    Down,
    Up,
}

/// Why an exchangeInfo document cannot be used. Trading on rules guessed from half a document would send orders
/// the venue refuses, so the whole document is refused instead.
#[derive(Debug, Error)]
pub enum RulesError {
    #[error("exchangeInfo is not the JSON Binance documents ({0}): check that the venue's base URL is USD-M futures (fapi)")]
    Json(#[from] serde_json::Error),
    #[error("{symbol} is listed twice in exchangeInfo")]
    DuplicateSymbol { symbol: String },
    #[error("{symbol} has no {filter} filter in exchangeInfo, so its orders cannot be checked")]
    MissingFilter {
        symbol: String,
        filter: &'static str,
    },
    #[error(
        "{symbol} lists its {filter} filter twice in exchangeInfo, so which one applies is unclear"
    )]
    DuplicateFilter {
        symbol: String,
        filter: &'static str,
    },
    #[error("{symbol}'s {filter} filter has no `{field}` text")]
    MissingField {
        symbol: String,
        filter: &'static str,
        field: &'static str,
    },
    #[error("{symbol}'s {filter}.{field} is `{value}`, not a decimal number")]
    NotANumber {
        symbol: String,
        filter: &'static str,
        field: &'static str,
        value: String,
    },
    #[error("{symbol}'s {field} is {value}: {why}")]
    OutOfRange {
        symbol: String,
        field: &'static str,
        value: Decimal,
        why: &'static str,
    },
    #[error("{symbol}'s {field} is {value}: a decimal has at most 28 places")]
    Precision {
        symbol: String,
        field: &'static str,
        value: u32,
    },
    #[error("the {kind} rate limit in exchangeInfo is 0: nothing could ever be sent")]
    ZeroRateLimit { kind: &'static str },
}

/// The parts of exchangeInfo read here; everything else in it is ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInfo {
    #[serde(default)]
    rate_limits: Vec<RawRateLimit>,
    symbols: Vec<RawSymbol>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRateLimit {
    rate_limit_type: String,
    interval: String,
    interval_num: u32,
    limit: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSymbol {
    symbol: String,
    status: String,
    price_precision: u32,
    quantity_precision: u32,
    filters: Vec<RawFilter>,
}

/// A filter stays JSON until its `filterType` is known: filters not read here carry numbers too.
type RawFilter = Map<String, Value>;

impl ExchangeRules {
    /// Parses GET /fapi/v1/exchangeInfo (the body bytes). Filters and numbers there are JSON strings.
    /// Missing rateLimits fall back to Binance's documented defaults (2400 weight/min, 300 orders/10s, 1200/min).
    /// Symbols Sentinel cannot name (dated contracts such as `BTCUSDT_250328`) are left out: no order can ask
    /// for them.
    pub fn parse(body: &[u8]) -> Result<ExchangeRules, RulesError> {
        let raw: RawInfo = serde_json::from_slice(body)?;
        let limits = rate_limits(&raw.rate_limits)?;
        let mut symbols = HashMap::with_capacity(raw.symbols.len());
        for raw_symbol in &raw.symbols {
            let Ok(symbol) = Symbol::new(&raw_symbol.symbol) else {
                continue;
            };
            // One listing Binance describes oddly must not stop trading on every other: it is left out (and so
            // cannot be traded) and said in the log.
            let rules = match symbol_rules(symbol.clone(), raw_symbol) {
                Ok(rules) => rules,
                Err(e) => {
                    tracing::warn!(%symbol, error = %e, "Binance's rules for a symbol cannot be read; it is not traded");
                    continue;
                }
            };
            if symbols.insert(symbol, rules).is_some() {
                return Err(RulesError::DuplicateSymbol {
                    symbol: raw_symbol.symbol.clone(),
                });
            }
        }
        Ok(ExchangeRules { symbols, limits })
    }

    /// The rules for `symbol`; one the venue does not list cannot be traded there.
    pub fn symbol(&self, symbol: &Symbol) -> Result<&SymbolRules, RuleViolation> {
        self.symbols
            .get(symbol)
            .ok_or_else(|| RuleViolation::UnknownSymbol {
                symbol: symbol.clone(),
            })
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// How many symbols are listed.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
}

impl SymbolRules {
    /// The quantity to send for a MARKET order of `wanted` units at about `price`: rounded DOWN to the
    /// MARKET_LOT_SIZE step (never more than asked), then checked: status must be TRADING (NotTrading), at least
    /// market_min_qty (BelowMinQuantity, with the rounded quantity), at most market_max_qty (AboveMaxQuantity), and,
    /// unless `reduce_only`, quantity*price at least min_notional (BelowMinNotional). The result is normalized and
    /// has at most quantity_precision decimal places.
    pub fn market_quantity(
        &self,
        wanted: Decimal,
        price: Decimal,
        reduce_only: bool,
    ) -> Result<Decimal, RuleViolation> {
        if self.status != TRADING {
            return Err(RuleViolation::NotTrading {
                symbol: self.symbol.clone(),
                status: self.status.clone(),
            });
        }
        // No grid that fits in a Decimal, or no room to round: nothing smaller than asked can be sent.
        let quantity = grid(self.market_step_size, self.quantity_precision)
            .and_then(|grid| round_to(wanted, grid, Rounding::Down))
            .unwrap_or(Decimal::ZERO);
        // Zero is never an order, even where the venue states no minimum.
        if quantity <= Decimal::ZERO || quantity < self.market_min_qty {
            return Err(RuleViolation::BelowMinQuantity {
                quantity,
                min: self.market_min_qty,
            });
        }
        if quantity > self.market_max_qty {
            return Err(RuleViolation::AboveMaxQuantity {
                quantity,
                max: self.market_max_qty,
            });
        }
        if !reduce_only {
            // Past Decimal's range the notional is above any minimum (or, for a negative price, below it).
            let notional = quantity
                .checked_mul(price)
                .unwrap_or(if price.is_sign_positive() {
                    Decimal::MAX
                } else {
                    Decimal::MIN
                });
            if notional < self.min_notional {
                return Err(RuleViolation::BelowMinNotional {
                    notional: notional.normalize(),
                    min: self.min_notional,
                });
            }
        }
        Ok(quantity)
    }

    /// A trigger price for a stop or target: rounded to the tick size, in the direction that keeps the level on
    /// the safe side: `Rounding::Down` or `Rounding::Up` as the caller says; then checked against
    /// min_price..=max_price (PriceOutOfRange). Normalized, at most price_precision places.
    pub fn trigger_price(
        &self,
        level: Decimal,
        rounding: Rounding,
    ) -> Result<Decimal, RuleViolation> {
        let out_of_range = |price: Decimal| RuleViolation::PriceOutOfRange {
            price,
            min: self.min_price,
            max: self.max_price,
        };
        let price = grid(self.tick_size, self.price_precision)
            .and_then(|grid| round_to(level, grid, rounding))
            .ok_or_else(|| out_of_range(level.normalize()))?;
        // A trigger at 0 or below could never be crossed from above, whatever minimum the venue states.
        let above_max = !self.max_price.is_zero() && price > self.max_price;
        if price <= Decimal::ZERO || price < self.min_price || above_max {
            return Err(out_of_range(price));
        }
        Ok(price)
    }
}

/// The budgets exchangeInfo states, each falling back to the documented one; of two entries for the same budget
/// the stricter holds.
fn rate_limits(raw: &[RawRateLimit]) -> Result<RateLimits, RulesError> {
    let mut weight = None::<u32>;
    let mut per_10s = None::<u32>;
    let mut per_minute = None::<u32>;
    for limit in raw {
        let (slot, kind) = match (
            limit.rate_limit_type.as_str(),
            limit.interval.as_str(),
            limit.interval_num,
        ) {
            ("REQUEST_WEIGHT", "MINUTE", 1) => (&mut weight, "REQUEST_WEIGHT per minute"),
            ("ORDERS", "SECOND", 10) => (&mut per_10s, "ORDERS per 10 seconds"),
            ("ORDERS", "MINUTE", 1) => (&mut per_minute, "ORDERS per minute"),
            _ => continue,
        };
        if limit.limit == 0 {
            return Err(RulesError::ZeroRateLimit { kind });
        }
        *slot = Some(slot.map_or(limit.limit, |seen| seen.min(limit.limit)));
    }
    let default = RateLimits::default();
    Ok(RateLimits {
        weight_per_minute: weight.unwrap_or(default.weight_per_minute),
        orders_per_10s: per_10s.unwrap_or(default.orders_per_10s),
        orders_per_minute: per_minute.unwrap_or(default.orders_per_minute),
    })
}

/// Reads and checks one symbol's filters: a step or tick of 0 could not round, and a minimum above its maximum
/// could not be met, so either makes the document unusable.
fn symbol_rules(symbol: Symbol, raw: &RawSymbol) -> Result<SymbolRules, RulesError> {
    let name = raw.symbol.as_str();
    for (field, value) in [
        ("pricePrecision", raw.price_precision),
        ("quantityPrecision", raw.quantity_precision),
    ] {
        if value > Decimal::MAX_SCALE {
            return Err(RulesError::Precision {
                symbol: name.to_string(),
                field,
                value,
            });
        }
    }
    let price = filter(raw, "PRICE_FILTER")?;
    let lot = filter(raw, "LOT_SIZE")?;
    let market = filter(raw, "MARKET_LOT_SIZE")?;
    let notional = filter(raw, "MIN_NOTIONAL")?;
    let rules = SymbolRules {
        symbol,
        status: raw.status.clone(),
        price_precision: raw.price_precision,
        quantity_precision: raw.quantity_precision,
        tick_size: decimal(name, "PRICE_FILTER", price, "tickSize")?,
        min_price: decimal(name, "PRICE_FILTER", price, "minPrice")?,
        max_price: decimal(name, "PRICE_FILTER", price, "maxPrice")?,
        step_size: decimal(name, "LOT_SIZE", lot, "stepSize")?,
        min_qty: decimal(name, "LOT_SIZE", lot, "minQty")?,
        max_qty: decimal(name, "LOT_SIZE", lot, "maxQty")?,
        market_step_size: decimal(name, "MARKET_LOT_SIZE", market, "stepSize")?,
        market_min_qty: decimal(name, "MARKET_LOT_SIZE", market, "minQty")?,
        market_max_qty: decimal(name, "MARKET_LOT_SIZE", market, "maxQty")?,
        min_notional: decimal(name, "MIN_NOTIONAL", notional, "notional")?,
    };
    let zero = Decimal::ZERO;
    let checks = [
        (
            "PRICE_FILTER.tickSize",
            rules.tick_size,
            rules.tick_size > zero,
            "must be above 0",
        ),
        (
            "PRICE_FILTER.minPrice",
            rules.min_price,
            rules.min_price >= zero,
            "must not be negative",
        ),
        (
            "PRICE_FILTER.maxPrice",
            rules.max_price,
            rules.max_price.is_zero() || rules.max_price >= rules.min_price,
            "must be 0 (no maximum) or at least minPrice",
        ),
        (
            "LOT_SIZE.stepSize",
            rules.step_size,
            rules.step_size > zero,
            "must be above 0",
        ),
        (
            "LOT_SIZE.minQty",
            rules.min_qty,
            rules.min_qty >= zero,
            "must not be negative",
        ),
        (
            "LOT_SIZE.maxQty",
            rules.max_qty,
            rules.max_qty > zero && rules.max_qty >= rules.min_qty,
            "must be above 0 and at least minQty",
        ),
        (
            "MARKET_LOT_SIZE.stepSize",
            rules.market_step_size,
            rules.market_step_size > zero,
            "must be above 0",
        ),
        (
            "MARKET_LOT_SIZE.minQty",
            rules.market_min_qty,
            rules.market_min_qty >= zero,
            "must not be negative",
        ),
        (
            "MARKET_LOT_SIZE.maxQty",
            rules.market_max_qty,
            rules.market_max_qty > zero && rules.market_max_qty >= rules.market_min_qty,
            "must be above 0 and at least minQty",
        ),
        (
            "MIN_NOTIONAL.notional",
            rules.min_notional,
            rules.min_notional >= zero,
            "must not be negative",
        ),
    ];
    if let Some((field, value, _, why)) = checks.into_iter().find(|(_, _, ok, _)| !ok) {
        return Err(RulesError::OutOfRange {
            symbol: name.to_string(),
            field,
            value,
            why,
        });
    }
    // Both grids must exist, or every order for the symbol would be refused.
    for (field, step, places) in [
        (
            "PRICE_FILTER.tickSize",
            rules.tick_size,
            rules.price_precision,
        ),
        (
            "MARKET_LOT_SIZE.stepSize",
            rules.market_step_size,
            rules.quantity_precision,
        ),
    ] {
        if grid(step, places).is_none() {
            return Err(RulesError::OutOfRange {
                symbol: name.to_string(),
                field,
                value: step,
                why: "no multiple of it fits the symbol's precision",
            });
        }
    }
    Ok(rules)
}

/// The one filter of `kind` that `raw` lists.
fn filter<'a>(raw: &'a RawSymbol, kind: &'static str) -> Result<&'a RawFilter, RulesError> {
    let mut found = raw
        .filters
        .iter()
        .filter(|f| f.get("filterType").and_then(Value::as_str) == Some(kind));
    let first = found.next().ok_or_else(|| RulesError::MissingFilter {
        symbol: raw.symbol.clone(),
        filter: kind,
    })?;
    if found.next().is_some() {
        return Err(RulesError::DuplicateFilter {
            symbol: raw.symbol.clone(),
            filter: kind,
        });
    }
    Ok(first)
}

/// A filter's decimal field, written as a JSON string. Exact: a number that would need rounding is refused.
fn decimal(
    symbol: &str,
    filter: &'static str,
    raw: &RawFilter,
    field: &'static str,
) -> Result<Decimal, RulesError> {
    let text = match raw.get(field) {
        Some(Value::String(text)) => text,
        Some(other) => {
            return Err(RulesError::NotANumber {
                symbol: symbol.to_string(),
                filter,
                field,
                value: other.to_string(),
            })
        }
        None => {
            return Err(RulesError::MissingField {
                symbol: symbol.to_string(),
                filter,
                field,
            })
        }
    };
    Decimal::from_str_exact(text).map_err(|_| RulesError::NotANumber {
        symbol: symbol.to_string(),
        filter,
        field,
        value: text.clone(),
    })
}

/// The grid a value must sit on: multiples of `step` with at most `places` decimal places. Binance checks both
/// the filter and the symbol's precision; they agree for listed symbols, and if they ever do not, a multiple of
/// both passes both. A step of 0 or less means no step, as in Binance's filters: only the places apply. `None`
/// when the grid does not fit in a `Decimal`.
fn grid(step: Decimal, places: u32) -> Option<Decimal> {
    let places = places.min(Decimal::MAX_SCALE);
    if step <= Decimal::ZERO {
        return Decimal::try_new(1, places).ok();
    }
    let step = step.normalize();
    if step.scale() <= places {
        return Some(step);
    }
    // step = m / 10^k with k > places, the unit 10^(k - places) / 10^k: the grid is lcm(m, 10^(k - places)) / 10^k.
    let mantissa = step.mantissa();
    let unit = 10i128.checked_pow(step.scale() - places)?;
    let lcm = (mantissa / gcd(mantissa, unit)).checked_mul(unit)?;
    Decimal::try_from_i128_with_scale(lcm, step.scale()).ok()
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `value` moved onto multiples of `grid` (> 0), towards minus or plus infinity, normalized. `None` when the result
/// does not fit in a `Decimal`.
fn round_to(value: Decimal, grid: Decimal, rounding: Rounding) -> Option<Decimal> {
    // The remainder is exact and takes the sign of `value`.
    let rem = value.checked_rem(grid)?;
    if rem.is_zero() {
        return Some(value.normalize());
    }
    let down = if rem.is_sign_negative() {
        value.checked_sub(rem)?.checked_sub(grid)?
    } else {
        value.checked_sub(rem)?
    };
    let rounded = match rounding {
        Rounding::Down => down,
        Rounding::Up => down.checked_add(grid)?,
    };
    // Sums past 28 digits are rounded by Decimal: refuse a result that slipped off the grid that way.
    rounded
        .checked_rem(grid)?
        .is_zero()
        .then(|| rounded.normalize())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::from_str_exact(text).unwrap()
    }

    fn sym(name: &str) -> Symbol {
        Symbol::new(name).unwrap()
    }

    /// One symbol as exchangeInfo lists it, with every filter Binance sends (the unread ones carry numbers).
    fn listing(name: &str, status: &str, tick: &str, step: &str, market_max: &str) -> Value {
        json!({
            "symbol": name, "pair": name, "contractType": "PERPETUAL", "deliveryDate": 4133404800000u64,
            "onboardDate": 1569398400000u64, "status": status, "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000", "baseAsset": "BTC", "quoteAsset": "USDT", "marginAsset": "USDT",
            "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8,
            "underlyingType": "COIN", "underlyingSubType": ["PoW"], "settlePlan": 0, "triggerProtect": "0.0500",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": tick},
                {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "1000", "stepSize": step},
                {"filterType": "MARKET_LOT_SIZE", "minQty": step, "maxQty": market_max, "stepSize": step},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": "100"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": 4}
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
            "liquidationFee": "0.012500", "marketTakeBound": "0.05"
        })
    }

    /// A document shaped like the one in Binance's docs for GET /fapi/v1/exchangeInfo.
    fn document(symbols: Vec<Value>, rate_limits: Option<Value>) -> Vec<u8> {
        let mut doc = json!({
            "exchangeFilters": [],
            "serverTime": 1565613908500u64,
            "assets": [{"asset": "USDT", "marginAvailable": true, "autoAssetExchange": "-10000"}],
            "symbols": symbols,
            "timezone": "UTC"
        });
        if let Some(limits) = rate_limits {
            doc["rateLimits"] = limits;
        }
        serde_json::to_vec(&doc).unwrap()
    }

    fn exchange() -> ExchangeRules {
        let limits = json!([
            {"interval": "MINUTE", "intervalNum": 1, "limit": 2400, "rateLimitType": "REQUEST_WEIGHT"},
            {"interval": "MINUTE", "intervalNum": 1, "limit": 1200, "rateLimitType": "ORDERS"},
            {"interval": "SECOND", "intervalNum": 10, "limit": 300, "rateLimitType": "ORDERS"}
        ]);
        let symbols = vec![
            listing("BTCUSDT", "TRADING", "0.10", "0.001", "120"),
            listing("LUNAUSDT", "SETTLING", "0.10", "0.001", "120"),
            listing("DOGEUSDT", "TRADING", "0.00001", "1", "30000000"),
            listing("ETHUSDT", "TRADING", "0.01", "0.1", "2000"),
            // A dated contract: Sentinel cannot name it, so it is left out.
            listing("BTCUSDT_250328", "TRADING", "0.10", "0.001", "120"),
        ];
        ExchangeRules::parse(&document(symbols, Some(limits))).unwrap()
    }

    fn btc() -> SymbolRules {
        exchange().symbol(&sym("BTCUSDT")).unwrap().clone()
    }

    #[test]
    fn a_realistic_document_parses() {
        let rules = exchange();
        assert_eq!(rules.len(), 4);
        assert!(!rules.is_empty());
        assert_eq!(rules.limits(), RateLimits::default());
        let btc = btc();
        assert_eq!(btc.status, "TRADING");
        assert_eq!((btc.price_precision, btc.quantity_precision), (2, 3));
        assert_eq!(btc.tick_size, d("0.10"));
        assert_eq!((btc.min_price, btc.max_price), (d("556.80"), d("4529764")));
        assert_eq!(
            (btc.step_size, btc.min_qty, btc.max_qty),
            (d("0.001"), d("0.001"), d("1000"))
        );
        assert_eq!(
            (btc.market_step_size, btc.market_min_qty, btc.market_max_qty),
            (d("0.001"), d("0.001"), d("120"))
        );
        assert_eq!(btc.min_notional, d("100"));
        assert_eq!(
            rules.symbol(&sym("XRPUSDT")),
            Err(RuleViolation::UnknownSymbol {
                symbol: sym("XRPUSDT")
            })
        );
    }

    #[test]
    fn rate_limits_fall_back_to_the_documented_ones() {
        let symbols = vec![listing("BTCUSDT", "TRADING", "0.10", "0.001", "120")];
        let none = ExchangeRules::parse(&document(symbols.clone(), None)).unwrap();
        assert_eq!(none.limits(), RateLimits::default());
        let some = json!([
            {"interval": "MINUTE", "intervalNum": 1, "limit": 6000, "rateLimitType": "REQUEST_WEIGHT"},
            {"interval": "SECOND", "intervalNum": 10, "limit": 100, "rateLimitType": "ORDERS"},
            {"interval": "SECOND", "intervalNum": 10, "limit": 50, "rateLimitType": "ORDERS"},
            {"interval": "DAY", "intervalNum": 1, "limit": 1, "rateLimitType": "RAW_REQUESTS"}
        ]);
        let parsed = ExchangeRules::parse(&document(symbols.clone(), Some(some))).unwrap();
        let expected = RateLimits {
            weight_per_minute: 6000,
            orders_per_10s: 50,
            orders_per_minute: 1200,
        };
        assert_eq!(parsed.limits(), expected);
        let zero = json!([{"interval": "MINUTE", "intervalNum": 1, "limit": 0, "rateLimitType": "ORDERS"}]);
        assert!(matches!(
            ExchangeRules::parse(&document(symbols, Some(zero))),
            Err(RulesError::ZeroRateLimit { .. })
        ));
    }

    #[test]
    fn market_quantities_round_down_to_the_step() {
        let btc = btc();
        let price = d("50000");
        assert_eq!(
            btc.market_quantity(d("0.0129"), price, false),
            Ok(d("0.012"))
        );
        assert_eq!(
            btc.market_quantity(d("0.012"), price, false),
            Ok(d("0.012"))
        );
        assert_eq!(
            btc.market_quantity(d("120.0009"), price, false),
            Ok(d("120"))
        );
        // Normalized: no trailing zeros for the venue to refuse.
        assert_eq!(
            btc.market_quantity(d("1.5000"), price, false)
                .unwrap()
                .to_string(),
            "1.5"
        );
        let doge = exchange().symbol(&sym("DOGEUSDT")).unwrap().clone();
        assert_eq!(
            doge.market_quantity(d("1234.9"), d("0.1"), false),
            Ok(d("1234"))
        );
        let eth = exchange().symbol(&sym("ETHUSDT")).unwrap().clone();
        assert_eq!(
            eth.market_quantity(d("2.57"), d("3000"), false),
            Ok(d("2.5"))
        );
    }

    #[test]
    fn market_quantities_are_checked_against_the_filters() {
        let btc = btc();
        let price = d("50000");
        assert_eq!(
            btc.market_quantity(d("0.0004"), price, false),
            Err(RuleViolation::BelowMinQuantity {
                quantity: d("0"),
                min: d("0.001")
            })
        );
        assert_eq!(
            btc.market_quantity(d("-1"), price, true),
            Err(RuleViolation::BelowMinQuantity {
                quantity: d("-1"),
                min: d("0.001")
            })
        );
        assert_eq!(
            btc.market_quantity(d("200"), price, false),
            Err(RuleViolation::AboveMaxQuantity {
                quantity: d("200"),
                max: d("120")
            })
        );
        assert_eq!(
            btc.market_quantity(d("0.001"), price, false),
            Err(RuleViolation::BelowMinNotional {
                notional: d("50"),
                min: d("100")
            })
        );
        assert_eq!(btc.market_quantity(d("0.001"), price, true), Ok(d("0.001")));
        assert_eq!(
            btc.market_quantity(d("0.002"), price, false),
            Ok(d("0.002"))
        );
        let luna = exchange().symbol(&sym("LUNAUSDT")).unwrap().clone();
        assert_eq!(
            luna.market_quantity(d("1"), price, true),
            Err(RuleViolation::NotTrading {
                symbol: sym("LUNAUSDT"),
                status: "SETTLING".into()
            })
        );
    }

    #[test]
    fn trigger_prices_round_to_the_tick_on_the_safe_side() {
        let btc = btc();
        assert_eq!(
            btc.trigger_price(d("49123.456"), Rounding::Down),
            Ok(d("49123.4"))
        );
        assert_eq!(
            btc.trigger_price(d("49123.456"), Rounding::Up),
            Ok(d("49123.5"))
        );
        assert_eq!(
            btc.trigger_price(d("49123.40"), Rounding::Up),
            Ok(d("49123.4"))
        );
        assert_eq!(
            btc.trigger_price(d("100"), Rounding::Down),
            Err(RuleViolation::PriceOutOfRange {
                price: d("100"),
                min: d("556.80"),
                max: d("4529764")
            })
        );
        assert_eq!(
            btc.trigger_price(d("4529764.01"), Rounding::Up),
            Err(RuleViolation::PriceOutOfRange {
                price: d("4529764.1"),
                min: d("556.80"),
                max: d("4529764")
            })
        );
        let mut open = btc.clone();
        open.max_price = Decimal::ZERO;
        open.min_price = Decimal::ZERO;
        assert_eq!(
            open.trigger_price(d("1000000000.00"), Rounding::Up),
            Ok(d("1000000000"))
        );
        assert!(open.trigger_price(d("0.04"), Rounding::Down).is_err());
        assert!(open.trigger_price(d("-5"), Rounding::Up).is_err());
        assert_eq!(
            open.trigger_price(Decimal::MAX, Rounding::Up),
            Ok(Decimal::MAX)
        );
        // Past Decimal's range is out of range, not a panic.
        open.tick_size = Decimal::TEN;
        assert!(open.trigger_price(Decimal::MAX, Rounding::Up).is_err());
        assert!(open.trigger_price(Decimal::MIN, Rounding::Down).is_err());
    }

    #[test]
    fn a_step_finer_than_the_precision_rounds_onto_both() {
        let mut rules = btc();
        rules.market_step_size = d("0.003");
        rules.quantity_precision = 2;
        rules.min_notional = Decimal::ZERO;
        // Multiples of both 0.003 and 0.01: 0.03, 0.06, ...
        assert_eq!(
            rules.market_quantity(d("0.059"), d("1"), false),
            Ok(d("0.03"))
        );
        rules.tick_size = d("0.25");
        rules.price_precision = 1;
        assert_eq!(
            rules.trigger_price(d("1000.3"), Rounding::Up),
            Ok(d("1000.5"))
        );
        // Hand-built rules with no step round to the precision only, and never panic.
        rules.market_step_size = Decimal::ZERO;
        rules.quantity_precision = 40;
        assert_eq!(
            rules.market_quantity(d("0.059"), d("1"), false),
            Ok(d("0.059"))
        );
    }

    /// One listing's rules after `edit`; the whole document still parses, leaving a listing it cannot read out.
    fn with_filter(edit: impl Fn(&mut Vec<Value>)) -> Result<SymbolRules, RulesError> {
        let mut btc = listing("BTCUSDT", "TRADING", "0.10", "0.001", "120");
        let eth = listing("ETHUSDT", "TRADING", "0.01", "0.001", "2000");
        edit(btc["filters"].as_array_mut().unwrap());
        let raw: RawSymbol = serde_json::from_value(btc.clone()).unwrap();
        let result = symbol_rules(Symbol::new("BTCUSDT").unwrap(), &raw);
        let rules = ExchangeRules::parse(&document(vec![btc, eth], None)).unwrap();
        assert!(rules.symbol(&Symbol::new("ETHUSDT").unwrap()).is_ok());
        assert_eq!(
            rules.symbol(&Symbol::new("BTCUSDT").unwrap()).is_ok(),
            result.is_ok()
        );
        result
    }

    #[test]
    fn malformed_documents_are_errors() {
        let missing = with_filter(|f| f.retain(|f| f["filterType"] != "MARKET_LOT_SIZE"));
        assert!(matches!(
            missing,
            Err(RulesError::MissingFilter {
                filter: "MARKET_LOT_SIZE",
                ..
            })
        ));
        let twice = with_filter(|f| f.push(json!({"filterType": "MIN_NOTIONAL", "notional": "5"})));
        assert!(matches!(
            twice,
            Err(RulesError::DuplicateFilter {
                filter: "MIN_NOTIONAL",
                ..
            })
        ));
        let text = with_filter(|f| f[0]["tickSize"] = json!("ten cents"));
        assert!(matches!(
            text,
            Err(RulesError::NotANumber {
                field: "tickSize",
                ..
            })
        ));
        let number = with_filter(|f| f[5]["notional"] = json!(100));
        assert!(matches!(
            number,
            Err(RulesError::NotANumber {
                field: "notional",
                ..
            })
        ));
        let absent = with_filter(|f| {
            f[1].as_object_mut().unwrap().remove("stepSize");
        });
        assert!(matches!(
            absent,
            Err(RulesError::MissingField {
                field: "stepSize",
                ..
            })
        ));
        let zero_step = with_filter(|f| f[2]["stepSize"] = json!("0"));
        assert!(matches!(
            zero_step,
            Err(RulesError::OutOfRange {
                field: "MARKET_LOT_SIZE.stepSize",
                ..
            })
        ));
        let zero_tick = with_filter(|f| f[0]["tickSize"] = json!("0.000"));
        assert!(matches!(
            zero_tick,
            Err(RulesError::OutOfRange {
                field: "PRICE_FILTER.tickSize",
                ..
            })
        ));
        let inverted = with_filter(|f| f[1]["minQty"] = json!("5000"));
        assert!(matches!(
            inverted,
            Err(RulesError::OutOfRange {
                field: "LOT_SIZE.maxQty",
                ..
            })
        ));
        let negative = with_filter(|f| f[5]["notional"] = json!("-1"));
        assert!(matches!(negative, Err(RulesError::OutOfRange { .. })));

        let mut precise = listing("BTCUSDT", "TRADING", "0.10", "0.001", "120");
        precise["pricePrecision"] = json!(29);
        let raw: RawSymbol = serde_json::from_value(precise).unwrap();
        let result = symbol_rules(Symbol::new("BTCUSDT").unwrap(), &raw);
        assert!(matches!(result, Err(RulesError::Precision { .. })));
        let btc = listing("BTCUSDT", "TRADING", "0.10", "0.001", "120");
        let result = ExchangeRules::parse(&document(vec![btc.clone(), btc], None));
        assert!(matches!(result, Err(RulesError::DuplicateSymbol { .. })));
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"{\"symbols\": {}}",
            b"{\"symbols\": [1]}",
            b"\xff",
        ] {
            assert!(matches!(
                ExchangeRules::parse(body),
                Err(RulesError::Json(_))
            ));
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ExchangeRules::parse(&body);
        }

        #[test]
        fn market_quantities_sit_on_the_step_within_the_bounds(
            // wanted in [0, 1e6) down to [0, 1e-2), at 12 to 20 places; price in [1, 1e6) at 6.
            wanted in 0i64..1_000_000_000_000_000_000,
            wanted_scale in 12u32..=20,
            price in 1_000_000i64..1_000_000_000_000,
            symbol in 0usize..3,
            reduce_only in any::<bool>(),
        ) {
            let name = ["BTCUSDT", "DOGEUSDT", "ETHUSDT"][symbol];
            let rules = exchange().symbol(&sym(name)).unwrap().clone();
            let wanted = Decimal::new(wanted, wanted_scale);
            let price = Decimal::new(price, 6);
            if let Ok(quantity) = rules.market_quantity(wanted, price, reduce_only) {
                prop_assert!((quantity % rules.market_step_size).is_zero());
                prop_assert!(quantity <= wanted);
                prop_assert!(quantity >= rules.market_min_qty && quantity <= rules.market_max_qty);
                prop_assert!(quantity.scale() <= rules.quantity_precision);
                prop_assert!(reduce_only || quantity * price >= rules.min_notional);
            }
        }

        #[test]
        fn trigger_prices_sit_on_the_tick_on_the_asked_side(
            level in 1i64..10_000_000_000_000,
            scale in 0u32..=6,
            up in any::<bool>(),
        ) {
            let btc = btc();
            let level = Decimal::new(level, scale);
            let rounding = if up { Rounding::Up } else { Rounding::Down };
            if let Ok(price) = btc.trigger_price(level, rounding) {
                prop_assert!((price % btc.tick_size).is_zero());
                prop_assert!((price - level).abs() < btc.tick_size);
                let on_side = if up { price >= level } else { price <= level };
                prop_assert!(on_side);
                prop_assert!(price >= btc.min_price && price <= btc.max_price);
                prop_assert!(price.scale() <= btc.price_precision);
            }
        }
    }
}
