//! The read-only operator API: positions, orders, signals, account, health.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpRequest, HttpResponse};
use rust_decimal::Decimal;
use sentinel_actors::latency::Span;
use sentinel_actors::messages::{GetTradingState, SetTradingState};
use sentinel_actors::risk::TradingState;
use sentinel_actors::types::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::webhook::read_body;
use super::AppState;
use crate::journal::{JournalError, JournalReader, Page};

/// The process is up and answering: 200 whatever else is wrong.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// 200 `{"ready":true}` once the daemon can take signals and act on them: recovery finished, the journal's last
/// commit succeeded, the venue is reachable and trading is not halted by a fault (an operator's halt is a choice,
/// not a fault). Otherwise 503 with the reasons.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let trading = state.risk.send(GetTradingState).await.ok();
    let view = state.view.borrow().clone();
    let config = state.config();
    let drawdown = config
        .risk
        .limits
        .drawdown_reached(&view.limits, &view.portfolio)
        .is_some();
    let venue = (!config.exchange.is_paper()).then(|| state.venue.status());
    let reasons = not_ready(&Readiness {
        recovered: state.recovered.load(Ordering::Acquire),
        journal_healthy: state.journal.is_healthy(),
        venue: venue.as_ref(),
        trading,
        drawdown_reached: drawdown,
    });
    if reasons.is_empty() {
        HttpResponse::Ok().json(json!({ "ready": true }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({ "ready": false, "reasons": reasons }))
    }
}

/// What readiness is judged on.
struct Readiness<'a> {
    recovered: bool,
    journal_healthy: bool,
    /// The venue's status; `None` for paper, which is always reachable.
    venue: Option<&'a Value>,
    /// `None`: the risk actor did not answer.
    trading: Option<TradingState>,
    drawdown_reached: bool,
}

/// Why the daemon is not ready; empty when it is.
fn not_ready(r: &Readiness<'_>) -> Vec<String> {
    let mut reasons = Vec::new();
    if !r.recovered {
        reasons.push("recovering: the unfinished signals are not handed back yet".to_string());
    }
    if !r.journal_healthy {
        reasons.push("journal: the last commit failed; see the log".to_string());
    }
    if let Some(status) = r.venue {
        if let Some(why) = status["standing"]["halted"].as_str() {
            reasons.push(format!("venue: trading is halted: {why}"));
        }
        if let Some(feeds) = status["feeds"].as_object() {
            for (feed, mode) in feeds {
                if mode == "connecting" {
                    reasons.push(format!("venue: the {feed} feed is still connecting"));
                }
            }
        }
    }
    match r.trading {
        None => reasons.push("risk: the risk actor does not answer".to_string()),
        Some(TradingState::Halted) if r.drawdown_reached => {
            reasons.push("trading: halted by the drawdown limit".to_string())
        }
        Some(_) => {}
    }
    reasons
}

/// Open positions with their margin: initial and maintenance margin at the mark (the entry price until one is known),
/// the liquidation price by the symbol's margin mode, the open position's own realized PnL and fees (since it last
/// opened from flat) and the symbol's whole `history`.
pub async fn positions(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "positions": positions_json(&state) }))
}

/// The open positions as `GET /api/positions` lists them (the dashboard's stream sends the same).
pub(super) fn positions_json(state: &AppState) -> Vec<Value> {
    let view = state.view.borrow().clone();
    let portfolio = &view.portfolio;
    let config = state.config();
    let spec_of = |symbol: &sentinel_actors::types::Symbol| config.margin_of(symbol);
    portfolio
        .positions
        .iter()
        .filter(|(_, p)| !p.is_flat())
        .map(|(symbol, p)| {
            let mark = portfolio.last_price(symbol);
            let spec = spec_of(symbol);
            json!({
                "symbol": symbol,
                "side": if p.quantity > Decimal::ZERO { "long" } else { "short" },
                "quantity": p.quantity.abs(),
                "entry_price": p.entry_price,
                "mark_price": mark,
                "leverage": p.leverage.get(),
                "margin_mode": spec.mode.as_str(),
                "initial_margin": p.initial_margin(mark),
                "maintenance_margin": p.maintenance_margin(mark, &spec),
                "liquidation_price": portfolio.liquidation_price(symbol, &spec_of),
                "unrealized_pnl": p.unrealized_pnl(mark),
                "realized_pnl": p.open_realized_pnl,
                "fees": p.open_fees,
                "history": {
                    "realized_pnl": p.realized_pnl,
                    "fees": p.fees,
                },
            })
        })
        .collect()
}

pub async fn account(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(account_json(&state).await?))
}

/// The account as `GET /api/account` shows it (the dashboard's stream sends the same).
pub(super) async fn account_json(state: &AppState) -> Result<Value, ApiError> {
    let trading_state = state
        .risk
        .send(GetTradingState)
        .await
        .map_err(|e| ApiError::unavailable(format!("risk actor unavailable: {e}")))?;
    let view = state.view.borrow().clone();
    let portfolio = &view.portfolio;
    let oldest_age_ms = view
        .oldest_pending
        .map(|at| Timestamp::now().0.saturating_sub(at.0).max(0));
    Ok(json!({
        "exchange": state.venue.name(),
        // Feeds (stream or polling), rate-limit standing, a halt, and what start-up reconciliation found.
        "venue": state.venue.status(),
        "starting_balance": portfolio.starting_balance,
        "balance": portfolio.balance,
        "equity": portfolio.equity(),
        "realized_pnl": portfolio.realized_pnl(),
        "unrealized_pnl": portfolio.unrealized_pnl(),
        "fees": portfolio.fees(),
        "trading_state": trading_state,
        // Signals acknowledged and not finished: how many, how old the oldest, and the bound past which webhooks
        // are answered 503.
        "backlog": {
            "pending": view.pending,
            "oldest_age_ms": oldest_age_ms,
            "admitted": state.admission.in_use(),
            "limit": state.admission.limit(),
        },
        "log_offset": view.upto,
        // Risk denials by code since the log began, and the account limits' state: today's loss, the peak and
        // drawdown, orders in the last minute.
        "denials": view.limits.denials,
        "limits": view.limits.summary(portfolio, Timestamp::now()),
    }))
}

/// Signals from the journal, newest first: `?limit=N&before=SEQ` pages back, `?status=pending` (or any outcome)
/// filters; `pending` counts every unfinished signal.
pub async fn signals(
    state: web::Data<AppState>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let reader = state.reader.clone();
    let page = page.into_inner();
    let (rows, pending) =
        web::block(move || Ok::<_, JournalError>((reader.signals(page)?, reader.pending_count()?)))
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let next_before = rows.last().map_or(Value::Null, |row| row["seq"].clone());
    Ok(HttpResponse::Ok()
        .json(json!({ "signals": rows, "next_before": next_before, "pending": pending })))
}

/// What rests on the venue now, from the ledger: limit entries waiting for their price, and each position's stop loss
/// and take profit.
pub async fn open_orders(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(open_orders_json(&state))
}

/// What rests, as `GET /api/open-orders` lists it (the dashboard's stream sends the same).
pub(super) fn open_orders_json(state: &AppState) -> Value {
    let view = state.view.borrow().clone();
    let entries: Vec<Value> = view
        .resting
        .values()
        .map(|o| {
            let limit = o.limit.as_ref();
            json!({
                "client_order_id": o.client_order_id,
                "signal_id": o.signal_id,
                "symbol": o.symbol,
                "side": o.side,
                "quantity": o.quantity,
                "limit_price": limit.map(|l| l.price),
                "time_in_force": limit.map(|l| l.time_in_force.as_str()),
                "expires_at": limit.and_then(|l| l.expires_at),
                "leverage": o.leverage.get(),
                "protection": o.protection,
            })
        })
        .collect();
    let exits: Vec<Value> = view
        .exits
        .iter()
        .map(|(symbol, armed)| {
            json!({
                "symbol": symbol,
                "stop_loss": armed.stop_loss.as_ref().map(|(price, _)| price),
                "take_profit": armed.take_profit.as_ref().map(|(price, _)| price),
            })
        })
        .collect();
    json!({ "entries": entries, "exits": exits })
}

/// Fills, denials and rejections from the journal, newest first, paged like `signals`.
pub async fn orders(
    state: web::Data<AppState>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    read_page(&state, "orders", page.into_inner(), JournalReader::orders).await
}

/// Reads a page off the HTTP workers (SQLite blocks) and answers it with `next_before`, the oldest row's sequence
/// number, to page back with.
async fn read_page(
    state: &AppState,
    name: &str,
    page: Page,
    read: fn(&JournalReader, Page) -> Result<Vec<Value>, JournalError>,
) -> Result<HttpResponse, ApiError> {
    let reader = state.reader.clone();
    let rows = web::block(move || read(&reader, page))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let next_before = rows.last().map_or(Value::Null, |row| row["seq"].clone());
    Ok(HttpResponse::Ok().json(json!({ name: rows, "next_before": next_before })))
}

pub async fn trading_state(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let current = state
        .risk
        .send(GetTradingState)
        .await
        .map_err(|e| ApiError::unavailable(format!("risk actor unavailable: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({ "trading_state": current })))
}

#[derive(Debug, Deserialize)]
pub struct TradingStateChange {
    state: TradingState,
}

/// `POST /api/trading-state {"state":"halted"}` with `Authorization: Bearer <admin token>`: the kill switch.
/// Answered once the change is durable, so it survives a restart.
pub async fn set_trading_state(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    super::commands::authorize(&req, &state)?;
    // Read only after the token checked out, and like every body within the size and time limits, so a slow body
    // cannot hold the connection; parsed only then, so strangers learn nothing about its expected shape.
    let config = state.config();
    let server = &config.server;
    let body = read_body(
        payload,
        req.headers(),
        server.body_limit,
        server.body_timeout,
    )
    .await?;
    let body: TradingStateChange = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_field(
            "state",
            format!("send {{\"state\":\"active|reducing|halted\"}}: {e}"),
        )
    })?;
    state
        .risk
        .send(SetTradingState { state: body.state })
        .await
        .map_err(|e| ApiError::unavailable(format!("risk actor unavailable: {e}")))?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(HttpResponse::Ok().json(json!({ "trading_state": body.state })))
}

/// Refused webhooks per source and reason, and the size of the protection state.
pub async fn security(state: web::Data<AppState>) -> HttpResponse {
    let journal = state.journal.stats();
    HttpResponse::Ok().json(json!({
        "refusals": state.refusals.snapshot(),
        "remembered_deliveries": state.deduper.len(),
        "tracked_addresses": state.limits.per_address.tracked(),
        // `writes` (appends) per commit is what group commit buys.
        "journal": {
            "commits": journal.commits,
            "writes": journal.batches,
            "events": journal.events,
            "commit_micros_total": journal.commit_micros_total,
            "commit_micros_max": journal.commit_micros_max,
        },
    }))
}

/// The daemon's own latency histograms, in microseconds: webhook to 202, to its first order, to its first fill.
pub async fn latency(state: web::Data<AppState>) -> HttpResponse {
    let l = &state.latencies;
    HttpResponse::Ok().json(json!({
        "ack": l.summary(Span::Ack),
        "signal_to_order": l.summary(Span::SignalToOrder),
        "signal_to_fill": l.summary(Span::SignalToFill),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Readiness<'static> {
        Readiness {
            recovered: true,
            journal_healthy: true,
            venue: None,
            trading: Some(TradingState::Active),
            drawdown_reached: false,
        }
    }

    #[test]
    fn readiness_names_every_reason() {
        assert!(not_ready(&ready()).is_empty());
        let operator_halt = Readiness {
            trading: Some(TradingState::Halted),
            ..ready()
        };
        assert!(
            not_ready(&operator_halt).is_empty(),
            "an operator's halt is still ready"
        );
        let venue = json!({
            "feeds": { "user_data": "connecting", "market": "stream" },
            "standing": { "halted": "API key refused" },
        });
        let cases: Vec<(Readiness<'_>, &str)> = vec![
            (
                Readiness {
                    recovered: false,
                    ..ready()
                },
                "recovering",
            ),
            (
                Readiness {
                    journal_healthy: false,
                    ..ready()
                },
                "journal",
            ),
            (
                Readiness {
                    trading: None,
                    ..ready()
                },
                "risk",
            ),
            (
                Readiness {
                    trading: Some(TradingState::Halted),
                    drawdown_reached: true,
                    ..ready()
                },
                "trading: halted by the drawdown limit",
            ),
            (
                Readiness {
                    venue: Some(&venue),
                    ..ready()
                },
                "venue: trading is halted: API key refused",
            ),
            (
                Readiness {
                    venue: Some(&venue),
                    ..ready()
                },
                "user_data feed is still connecting",
            ),
        ];
        for (readiness, reason) in cases {
            let reasons = not_ready(&readiness);
            assert!(
                reasons.iter().any(|r| r.contains(reason)),
                "{reason} not in {reasons:?}"
            );
        }
        let polling =
            json!({ "feeds": { "user_data": "polling" }, "standing": { "halted": null } });
        assert!(not_ready(&Readiness {
            venue: Some(&polling),
            ..ready()
        })
        .is_empty());
    }
}
