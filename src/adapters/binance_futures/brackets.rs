//! Binance's maintenance margin brackets (Notional and Leverage Brackets): read at start, so that the liquidation
//! prices and maintenance margins the API shows are Binance's, not a configured flat rate.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::Method;
use serde_json::Value;
use tracing::{info, warn};

use sentinel_actors::portfolio::Bracket;
use sentinel_actors::types::Symbol;

use super::client::{Client, Urgency};
use super::wire;

/// Each of `symbols`' brackets, lowest first. A symbol Binance lists none for, or an answer that cannot be read,
/// keeps its configured rate (with a warning): the brackets refine what is shown, they gate nothing.
pub async fn load(client: &Client, symbols: &[Symbol]) -> HashMap<Symbol, Arc<[Bracket]>> {
    let answer = match client
        .signed(Method::GET, "/fapi/v1/leverageBracket", &[], Urgency::Exit)
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            warn!(error = %e, "Binance's margin brackets could not be read; the configured maintenance rates apply");
            return HashMap::new();
        }
    };
    let listed = parse(&answer);
    let mut found = HashMap::new();
    for symbol in symbols {
        match listed.get(symbol.as_str()) {
            Some(brackets) => {
                found.insert(symbol.clone(), brackets.clone());
            }
            None => {
                warn!(%symbol, "Binance lists no margin brackets for it; its configured maintenance rate applies")
            }
        }
    }
    info!(symbols = found.len(), "margin brackets read from Binance");
    found
}

/// The answer's brackets by symbol; a bracket missing a number is dropped with its symbol.
fn parse(answer: &Value) -> HashMap<String, Arc<[Bracket]>> {
    let items = match answer {
        Value::Array(items) => items.as_slice(),
        one => std::slice::from_ref(one),
    };
    items
        .iter()
        .filter_map(|item| {
            let symbol = wire::text(item, "symbol")?;
            let mut brackets = item
                .get("brackets")?
                .as_array()?
                .iter()
                .map(|b| {
                    Some(Bracket {
                        floor: wire::dec(b, "notionalFloor")?,
                        cap: wire::dec(b, "notionalCap")?,
                        rate: wire::dec(b, "maintMarginRatio")?,
                        amount: wire::dec(b, "cum")?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            brackets.sort_by_key(|b| b.floor);
            Some((symbol.to_string(), Arc::from(brackets)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr;

    #[test]
    fn reads_the_documented_answer_exactly() {
        let answer = json!([{"symbol": "ETHUSDT", "notionalCoef": 1.50, "brackets": [
            {"bracket": 2, "initialLeverage": 50, "notionalCap": 100000, "notionalFloor": 10000,
             "maintMarginRatio": 0.0075, "cum": 12.5},
            {"bracket": 1, "initialLeverage": 75, "notionalCap": 10000, "notionalFloor": 0,
             "maintMarginRatio": 0.0065, "cum": 0.0},
        ]}]);
        let brackets = &parse(&answer)["ETHUSDT"];
        let d = |s: &str| rust_decimal::Decimal::from_str(s).unwrap();
        assert_eq!(brackets.len(), 2);
        assert_eq!(brackets[0].rate, d("0.0065"));
        assert_eq!(brackets[1].floor, d("10000"));
        assert_eq!(brackets[1].amount, d("12.5"));
        // A bracket without its ratio drops the symbol rather than guessing.
        let broken = json!({"symbol": "BTCUSDT", "brackets": [{"notionalCap": 1, "notionalFloor": 0, "cum": 0}]});
        assert!(parse(&broken).is_empty());
    }
}
