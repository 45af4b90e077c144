//! Mapping the tickers senders use (`BINANCE:BTCUSDT.P`, `btcusdt`, aliases) to configured symbols.

use std::collections::HashMap;

use sentinel_actors::types::Symbol;

use crate::config::SymbolConfig;

/// Every name a configured symbol is known by, upper-cased.
#[derive(Debug, Clone, Default)]
pub struct SymbolMap {
    names: HashMap<String, (Symbol, String)>,
}

impl SymbolMap {
    pub fn new(symbols: &[SymbolConfig]) -> Self {
        let mut names = HashMap::new();
        for s in symbols {
            let entry = (s.symbol().clone(), s.quote_currency.clone());
            names.insert(s.symbol().as_str().to_string(), entry.clone());
            for alias in &s.aliases {
                names.insert(alias.clone(), entry.clone());
            }
        }
        Self { names }
    }

    /// The configured symbol (and its quote currency) a ticker names: exact first, then without an exchange prefix
    /// (`BINANCE:`) and a perpetual suffix (`.P`, `PERP`).
    pub fn resolve(&self, ticker: &str) -> Option<(&Symbol, &str)> {
        let upper = ticker.trim().to_ascii_uppercase();
        let bare = upper.rsplit_once(':').map_or(upper.as_str(), |(_, t)| t);
        let candidates = [
            upper.as_str(),
            bare,
            bare.strip_suffix(".P").unwrap_or(bare),
            bare.strip_suffix("PERP").unwrap_or(bare),
            bare.strip_suffix(".PERP").unwrap_or(bare),
        ];
        let found = candidates.into_iter().find_map(|name| self.names.get(name));
        found.map(|(symbol, quote)| (symbol, quote.as_str()))
    }
}
