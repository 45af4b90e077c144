//! Adding isolated margin to a position (`POST /fapi/v1/positionMargin`, type 1), to keep it away from liquidation.
//! Binance's refusals come back with their code, as documented for USDⓈ-M futures:
//! -4049 the position is not isolated, -4050 the cross wallet cannot cover the amount, -4054 there is no position,
//! -4055 the amount is not positive.

use reqwest::Method;
use rust_decimal::Decimal;
use tracing::{info, warn};

use sentinel_actors::types::Symbol;
use sentinel_actors::venue::VenueError;

use super::client::Urgency;
use super::wire::{dec, param};
use super::{venue_error, Inner};

/// `type` 1: add margin (2 would take it away).
const ADD: &str = "1";

/// Adds `amount` to the symbol's isolated margin; the amount Binance says it added. One-way mode sends no
/// `positionSide` (Binance defaults it to `BOTH`), as every other call of this adapter. Sent with the urgency of an
/// exit: it protects a position, so a pause on entries must not hold it back.
pub async fn add(inner: &Inner, symbol: &Symbol, amount: Decimal) -> Result<Decimal, VenueError> {
    let params = [
        ("symbol", symbol.to_string()),
        ("amount", param(amount)),
        ("type", ADD.to_string()),
    ];
    let answer = inner
        .client
        .signed(
            Method::POST,
            "/fapi/v1/positionMargin",
            &params,
            Urgency::Exit,
        )
        .await
        .map_err(venue_error)?;
    let added = dec(&answer, "amount").unwrap_or_else(|| {
        warn!(%symbol, "Binance added margin without saying how much; taking the amount asked for");
        amount
    });
    info!(%symbol, %added, "isolated margin added on Binance");
    Ok(added)
}
