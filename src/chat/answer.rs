//! What each command does and says: the read-outs from the ledger's view, and the changes through the same paths
//! the operator API takes (`set_state`, `flatten_account`, `close_position`).

use std::sync::atomic::Ordering;

use rust_decimal::Decimal;
use sentinel_actors::messages::GetTradingState;
use sentinel_actors::risk::TradingState;
use sentinel_actors::types::Timestamp;

use super::command::ChatCommand;
use crate::http::commands::{close_position, flatten_account, set_state};
use crate::http::AppState;

/// The answer to a read-only command, from the state as it is now.
pub async fn read_out(state: &AppState, command: &ChatCommand) -> String {
    match command {
        ChatCommand::Status => status(state).await,
        ChatCommand::Positions => positions(state),
        ChatCommand::Pnl => pnl(state),
        _ => help(),
    }
}

pub fn help() -> String {
    [
        "Commands:",
        "/status: trading state, equity, open positions, readiness",
        "/positions: each open position",
        "/pnl: realized and unrealized PnL, fees, today's loss",
        "/halt, /resume: the kill switch (asks for a code)",
        "/flatten [SYMBOL]: close one position, or every one and set trading to reducing (asks for a code)",
    ]
    .join("\n")
}

async fn status(state: &AppState) -> String {
    let trading = state.risk.send(GetTradingState).await.ok();
    let view = state.view.borrow().clone();
    let open = view
        .portfolio
        .positions
        .values()
        .filter(|p| !p.is_flat())
        .count();
    let mut not_ready = Vec::new();
    if !state.recovered.load(Ordering::Acquire) {
        not_ready.push("recovering");
    }
    if !state.journal.is_healthy() {
        not_ready.push("journal: the last commit failed");
    }
    if trading.is_none() {
        not_ready.push("risk actor does not answer");
    }
    let config = state.config();
    if config
        .risk
        .limits
        .drawdown_reached(&view.limits, &view.portfolio)
        .is_some()
    {
        not_ready.push("drawdown limit reached");
    }
    let trading = trading.map_or_else(|| "unknown".to_string(), |t| t.to_string());
    let ready = if not_ready.is_empty() {
        "yes".to_string()
    } else {
        format!("no ({})", not_ready.join("; "))
    };
    format!(
        "Trading: {trading}\nEquity: {}\nOpen positions: {open}\nReady: {ready}",
        view.portfolio.equity()
    )
}

fn positions(state: &AppState) -> String {
    let view = state.view.borrow().clone();
    let portfolio = &view.portfolio;
    let config = state.config();
    let spec_of = |symbol: &sentinel_actors::types::Symbol| config.margin_of(symbol);
    let lines: Vec<String> = portfolio
        .positions
        .iter()
        .filter(|(_, p)| !p.is_flat())
        .map(|(symbol, p)| {
            let mark = portfolio.last_price(symbol);
            let side = if p.quantity > Decimal::ZERO {
                "long"
            } else {
                "short"
            };
            let liquidation = portfolio
                .liquidation_price(symbol, &spec_of)
                .map_or_else(|| "none".to_string(), |d| d.to_string());
            format!(
                "{symbol} {side} {} @ {}, mark {}, uPnL {}, liq. {liquidation}",
                p.quantity.abs(),
                p.entry_price,
                mark.map_or_else(|| "unknown".to_string(), |m| m.to_string()),
                p.unrealized_pnl(mark),
            )
        })
        .collect();
    if lines.is_empty() {
        "No open positions.".into()
    } else {
        lines.join("\n")
    }
}

fn pnl(state: &AppState) -> String {
    let view = state.view.borrow().clone();
    let portfolio = &view.portfolio;
    let limits = view.limits.summary(portfolio, Timestamp::now());
    format!(
        "Realized: {}\nUnrealized: {}\nFees: {}\nLoss today: {}",
        portfolio.realized_pnl(),
        portfolio.unrealized_pnl(),
        portfolio.fees(),
        limits.loss_today
    )
}

/// Carries out a confirmed destructive command; the answer says what happened, or why nothing did.
pub async fn carry_out(state: &AppState, command: &ChatCommand) -> Result<String, String> {
    match command {
        ChatCommand::Halt => set_state(state, TradingState::Halted)
            .await
            .map(|()| "Trading is halted.".to_string())
            .map_err(|e| e.to_string()),
        ChatCommand::Resume => set_state(state, TradingState::Active)
            .await
            .map(|()| "Trading is active.".to_string())
            .map_err(|e| e.to_string()),
        ChatCommand::Flatten(None) => {
            let closing = flatten_account(state)
                .await
                .map_err(|e| e.to_string())?
                .len();
            Ok(format!(
                "Trading is reducing; closing {closing} position(s)."
            ))
        }
        ChatCommand::Flatten(Some(symbol)) => {
            let open = state
                .view
                .borrow()
                .portfolio
                .positions
                .get(symbol)
                .is_some_and(|p| !p.is_flat());
            if !open {
                return Err(format!("{symbol} has no open position."));
            }
            let id = close_position(state, symbol, Timestamp::now())
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("Closing {symbol} (signal {id})."))
        }
        other => Err(format!("{} needs no confirmation", other.text())),
    }
}
