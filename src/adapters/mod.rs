//! Venue adapters: each turns one venue's API into the execution port (`sentinel_actors::venue::ExecutionVenue`).
//! `venue` is the one place that knows which venue runs; everything else holds an `Arc<dyn ExecutionVenue>`.

pub mod paper;

use std::sync::Arc;

use sentinel_actors::ledger::Ledger;
use sentinel_actors::venue::ExecutionVenue;

use crate::config::ExchangeConfig;
use paper::PaperVenue;

/// The configured venue, picking up where the log left off: `ledger` is the fold of the log at start-up.
pub fn venue(config: &ExchangeConfig, ledger: &Ledger) -> Arc<dyn ExecutionVenue> {
    match config {
        // The starting balance is already in the ledger: it was put there when the log began.
        ExchangeConfig::Paper {
            starting_balance: _,
            costs,
            latency,
            latency_by_symbol,
        } => Arc::new(
            PaperVenue::restore(*costs, ledger).with_latency(*latency, latency_by_symbol.clone()),
        ),
    }
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
        let venue = venue(&config.exchange, &ledger);
        assert_eq!(venue.name(), "paper");
        assert_eq!(venue.balance().await.unwrap().wallet, Decimal::from(9_000));
    }
}
