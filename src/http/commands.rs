//! Operator commands that act on the account (admin token): `POST /api/flatten` closes every open position.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_decimal::Decimal;
use serde_json::json;
use std::time::Instant;

use sentinel_actors::event::Delivery;
use sentinel_actors::messages::{Admit, SetTradingState};
use sentinel_actors::risk::TradingState;
use sentinel_actors::signal::{Intent, Signal};
use sentinel_actors::types::{SignalId, Timestamp};
use tracing::warn;

use super::error::ApiError;
use super::AppState;

/// The source name operator signals carry in the journal.
pub const OPERATOR_SOURCE: &str = "operator";

/// Checks the admin token; operator writes are off without one.
pub fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(token) = &state.config.server.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "operator writes are off: set server.admin_token_env",
        ));
    };
    state.admin.authorize(req, &state.config.server, token)
}

/// Puts the account in `reducing` (no new entries; closes, stops and targets run) and closes every open position,
/// each with a close signal of its own, journaled before the answer like any webhook's, so a crash in the middle
/// finishes the job after the restart.
pub async fn flatten(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    state
        .risk
        .send(SetTradingState {
            state: TradingState::Reducing,
        })
        .await
        .map_err(|e| ApiError::unavailable(format!("risk actor unavailable: {e}")))?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let open: Vec<_> = {
        let view = state.view.borrow();
        view.portfolio
            .positions
            .iter()
            .filter(|(_, p)| p.quantity != Decimal::ZERO)
            .map(|(symbol, _)| symbol.clone())
            .collect()
    };
    let now = Timestamp::now();
    let mut signals = Vec::new();
    for symbol in open {
        let id = SignalId::new(&format!("{OPERATOR_SOURCE}:flatten-{}-{symbol}", now.0))
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let signal = Signal {
            id: id.clone(),
            source: OPERATOR_SOURCE.into(),
            symbol: symbol.clone(),
            received_at: now,
            sent_at: None,
            price: None,
            intent: Intent::Close { side: None },
            comment: Some("flatten".into()),
        };
        let admit = Admit {
            signal,
            delivery: Delivery {
                keys: String::new(),
                payload: json!({ "command": "flatten" }).to_string(),
            },
            arrived: Instant::now(),
        };
        match state.ingress.send(admit).await {
            Ok(Ok(receipt)) => {
                receipt.durable().await.map_err(|e| {
                    ApiError::unavailable(format!("the close of {symbol} could not be stored: {e}"))
                })?;
                signals.push(json!({ "symbol": symbol, "signal_id": id }));
            }
            Ok(Err(e)) => {
                return Err(ApiError::overloaded(format!(
                    "the close of {symbol} was not taken: {e}"
                )))
            }
            Err(e) => return Err(ApiError::unavailable(format!("ingress unavailable: {e}"))),
        }
    }
    warn!(
        positions = signals.len(),
        "FLATTEN: trading is reducing and every open position is being closed"
    );
    Ok(HttpResponse::Accepted()
        .json(json!({ "trading_state": TradingState::Reducing, "closing": signals })))
}
