//! The read-only operator API: positions, orders, signals, account, health.

use actix_web::{web, HttpResponse};
use rust_decimal::Decimal;
use sentinel_actors::messages::GetTradingState;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::AppState;

const DEFAULT_LIMIT: usize = 100;

#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<usize>,
}

impl Page {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).min(1000)
    }
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn positions(state: web::Data<AppState>) -> HttpResponse {
    let portfolio = state.portfolio.read().unwrap_or_else(|e| e.into_inner());
    let positions = portfolio
        .positions
        .iter()
        .filter(|(_, p)| !p.is_flat())
        .map(|(symbol, p)| {
            let mark = portfolio.last_price(symbol);
            json!({
                "symbol": symbol,
                "side": if p.quantity > Decimal::ZERO { "long" } else { "short" },
                "quantity": p.quantity.abs(),
                "entry_price": p.entry_price,
                "mark_price": mark,
                "unrealized_pnl": p.unrealized_pnl(mark),
                "realized_pnl": p.realized_pnl,
                "fees": p.fees,
            })
        })
        .collect::<Vec<_>>();
    HttpResponse::Ok().json(json!({ "positions": positions }))
}

pub async fn account(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let trading_state = state
        .risk
        .send(GetTradingState)
        .await
        .map_err(|e| ApiError::unavailable(format!("risk actor unavailable: {e}")))?;
    let portfolio = state.portfolio.read().unwrap_or_else(|e| e.into_inner());
    let realized: Decimal = portfolio.positions.values().map(|p| p.realized_pnl).sum();
    let fees: Decimal = portfolio.positions.values().map(|p| p.fees).sum();
    Ok(HttpResponse::Ok().json(json!({
        "exchange": "paper",
        "starting_balance": portfolio.starting_balance,
        "balance": portfolio.balance,
        "equity": portfolio.equity(),
        "realized_pnl": realized,
        "unrealized_pnl": portfolio.unrealized_pnl(),
        "fees": fees,
        "trading_state": trading_state,
    })))
}

pub async fn signals(state: web::Data<AppState>, page: web::Query<Page>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "signals": state.activity.signals(page.limit()) }))
}

pub async fn orders(state: web::Data<AppState>, page: web::Query<Page>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "orders": state.activity.orders(page.limit()) }))
}

/// Refused webhooks per source and reason, and the size of the protection state.
pub async fn security(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "refusals": state.refusals.snapshot(),
        "remembered_deliveries": state.deduper.len(),
        "tracked_addresses": state.limits.per_address.tracked(),
    }))
}
