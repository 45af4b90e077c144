//! Venue adapters: each turns one venue's API into the execution port (`sentinel_actors::venue::ExecutionVenue`).
//! `connect` is the one place that knows which venue runs; everything else holds an `Arc<dyn ExecutionVenue>`.

pub mod binance_futures;
mod live_paper;
pub mod paper;

/// The paper venue's name (also paper on live prices).
pub const PAPER: &str = "paper";
/// Binance USD-M futures' name; its events for rules come under it.
pub const BINANCE_FUTURES: &str = "binance-futures";
/// Every venue's name. Venue events come under these, so no webhook source may take one.
pub const VENUE_NAMES: [&str; 2] = [PAPER, BINANCE_FUTURES];

use std::collections::HashMap;
use std::sync::Arc;

use sentinel_actors::event::Event;
use sentinel_actors::ledger::Ledger;
use sentinel_actors::portfolio::Bracket;
use sentinel_actors::types::Symbol;
use sentinel_actors::venue::ExecutionVenue;

use crate::config::{ExchangeConfig, SymbolConfig};
use binance_futures::BinanceFutures;
use live_paper::LivePaper;
use paper::{PaperSymbol, PaperVenue};

/// The venue, connected, and what the log must record before trading starts.
pub struct Connected {
    pub venue: Arc<dyn ExecutionVenue>,
    /// The account as the venue holds it, where it differs from the log (a real venue only).
    pub reconciled: Option<Event>,
    /// The venue's maintenance margin brackets per symbol (Binance); none for paper, which uses the configured rates.
    pub brackets: HashMap<Symbol, Arc<[Bracket]>>,
}

/// The configured venue, picking up where the log left off: `ledger` is the fold of the log at start-up.
pub async fn connect(
    config: &ExchangeConfig,
    symbols: &[SymbolConfig],
    ledger: &Ledger,
) -> anyhow::Result<Connected> {
    // Paper trades each symbol on its configured margin and tick.
    let terms = PaperSymbol::of_all(symbols);
    let symbols: Vec<Symbol> = symbols.iter().map(|s| s.symbol().clone()).collect();
    let venue: Arc<dyn ExecutionVenue> = match config {
        ExchangeConfig::Paper {
            market_data: Some(market),
            costs,
            ..
        } => Arc::new(
            LivePaper::connect(
                market,
                symbols,
                PaperVenue::restore(*costs, ledger).with_symbols(terms),
            )
            .await?,
        ),
        // The starting balance is already in the ledger: it was put there when the log began.
        ExchangeConfig::Paper {
            starting_balance: _,
            costs,
            latency,
            latency_by_symbol,
            market_data: None,
        } => Arc::new(
            PaperVenue::restore(*costs, ledger)
                .with_symbols(terms)
                .with_latency(*latency, latency_by_symbol.clone()),
        ),
        ExchangeConfig::BinanceFutures(binance) => {
            let venue = BinanceFutures::connect(binance, symbols, ledger).await?;
            let reconciled = venue.reconciliation().and_then(|r| r.event());
            let brackets = venue.brackets.clone();
            return Ok(Connected {
                venue: Arc::new(venue),
                reconciled,
                brackets,
            });
        }
    };
    Ok(Connected {
        venue,
        reconciled: None,
        brackets: HashMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rust_decimal::Decimal;

    use super::*;
    use crate::Config;

    #[actix_web::test]
    async fn the_default_configuration_runs_paper_from_the_ledger() {
        let text = include_str!("../../config.toml");
        let config = Config::parse(text, PathBuf::from("."), &|_| None).unwrap();
        // A ledger that already booked a loss: the wallet is the ledger's, not the configured starting balance.
        let mut ledger = Ledger::new(Decimal::from(10_000));
        ledger.portfolio.balance = Decimal::from(9_000);
        let connected = connect(&config.exchange, &[], &ledger).await.unwrap();
        assert_eq!(connected.venue.name(), "paper");
        assert!(connected.reconciled.is_none());
        assert_eq!(
            connected.venue.balance().await.unwrap().wallet,
            Decimal::from(9_000)
        );
    }
}
