//! Start-up reconciliation: the account as Binance holds it (positions, open orders, open algo orders, balance)
//! against the log's fold. Binance is the truth for what it holds: its positions and their resting legs are adopted
//! (a position opened while the daemon was down included), and every difference is said in the log and the API.

use std::collections::BTreeMap;

use reqwest::Method;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use sentinel_actors::event::{AdoptedPosition, Event};
use sentinel_actors::exits::ArmedExits;
use sentinel_actors::ledger::Ledger;
use sentinel_actors::order::FillReason;
use sentinel_actors::portfolio::Position;
use sentinel_actors::types::{PositionSide, Symbol};
use sentinel_actors::venue::{Balance, VenuePosition};

use super::client::{CallError, Urgency};
use super::orders::open_order;
use super::wire::{dec, text};
use super::Inner;

/// The asset Sentinel's money is counted in.
const QUOTE: &str = "USDT";

/// What start-up found.
#[derive(Clone, Debug, Serialize)]
pub struct Reconciliation {
    pub wallet: Decimal,
    pub available: Decimal,
    /// Positions (and their legs) where Binance and the log differ, as Binance has them.
    pub adopted: Vec<AdoptedPosition>,
    /// Every difference, in words.
    pub mismatches: Vec<String>,
    /// Whether the log's wallet differs from Binance's.
    pub balance_differs: bool,
}

impl Reconciliation {
    /// The event that brings the log in line with Binance; `None` when they agree.
    pub fn event(&self) -> Option<Event> {
        if self.adopted.is_empty() && !self.balance_differs && self.mismatches.is_empty() {
            return None;
        }
        Some(Event::Reconciled {
            balance: self.balance_differs.then_some(self.wallet),
            positions: self.adopted.clone(),
            mismatches: self.mismatches.clone(),
        })
    }

    pub fn log(&self) {
        if self.mismatches.is_empty() {
            info!(wallet = %self.wallet, "Binance account and journal agree");
        }
        for mismatch in &self.mismatches {
            warn!(%mismatch, "reconciliation with Binance");
        }
    }

    pub fn summary(&self) -> Value {
        json!({
            "wallet": self.wallet,
            "available": self.available,
            "adopted": self.adopted,
            "mismatches": self.mismatches,
        })
    }
}

pub async fn read(inner: &Inner, ledger: &Ledger) -> anyhow::Result<Reconciliation> {
    let failed = |what: &'static str| {
        move |e: CallError| anyhow::anyhow!("Binance {what} cannot be read: {e}")
    };
    let positions = positions(inner).await.map_err(failed("positions"))?;
    let balance = balance(inner).await.map_err(failed("balance"))?;
    let algos = inner
        .client
        .signed(Method::GET, "/fapi/v1/openAlgoOrders", &[], Urgency::Exit)
        .await
        .map_err(failed("open algo orders"))?;
    let open = inner
        .client
        .signed(Method::GET, "/fapi/v1/openOrders", &[], Urgency::Exit)
        .await
        .map_err(failed("open orders"))?;

    let mut mismatches = Vec::new();
    for order in open.as_array().into_iter().flatten() {
        mismatches.push(format!(
            "{} has an open {} order {} that Sentinel did not place; it is left alone",
            text(order, "symbol").unwrap_or("?"),
            text(order, "type").unwrap_or("?"),
            text(order, "clientOrderId").unwrap_or("?"),
        ));
    }

    let venue: BTreeMap<Symbol, VenuePosition> = positions
        .into_iter()
        .map(|p| (p.symbol.clone(), p))
        .collect();
    let mut legs: BTreeMap<Symbol, (Option<(sentinel_actors::types::Price, _)>, Option<_>)> =
        BTreeMap::new();
    for algo in algos.as_array().into_iter().flatten() {
        match open_order(algo) {
            Some(order) => {
                let entry = legs.entry(order.symbol.clone()).or_default();
                let leg = Some((order.trigger, order.client_order_id));
                match order.reason {
                    FillReason::StopLoss => entry.0 = leg,
                    _ => entry.1 = leg,
                }
            }
            None => mismatches.push(format!(
                "{} has an open algo order {} of a kind Sentinel does not manage; it is left alone",
                text(algo, "symbol").unwrap_or("?"),
                text(algo, "clientAlgoId").unwrap_or("?"),
            )),
        }
    }

    let mut symbols: Vec<Symbol> = venue.keys().cloned().collect();
    for (symbol, position) in &ledger.portfolio.positions {
        if !position.is_flat() && !symbols.contains(symbol) {
            symbols.push(symbol.clone());
        }
    }
    for symbol in legs.keys() {
        if !symbols.contains(symbol) {
            symbols.push(symbol.clone());
        }
    }

    let mut adopted = Vec::new();
    {
        let mut book = inner.book();
        for symbol in symbols {
            let (quantity, entry) = venue
                .get(&symbol)
                .map_or((Decimal::ZERO, Decimal::ZERO), |p| {
                    (p.quantity, p.entry_price)
                });
            let ours = ledger.portfolio.position_quantity(&symbol);
            let side = if quantity > Decimal::ZERO {
                PositionSide::Long
            } else {
                PositionSide::Short
            };
            let exits = legs.remove(&symbol).and_then(|(stop_loss, take_profit)| {
                if quantity.is_zero() {
                    mismatches.push(format!(
                        "{symbol} has resting stop/target algo orders but no position; they are left alone"
                    ));
                    None
                } else {
                    Some(ArmedExits {
                        side,
                        stop_loss,
                        take_profit,
                        trailing: None,
                    })
                }
            });
            let known_exits = ledger.exits.get(&symbol);
            let exit_ids = |e: Option<&ArmedExits>| {
                e.map(|e| {
                    (
                        e.stop_loss.as_ref().map(|(_, id)| id.clone()),
                        e.take_profit.as_ref().map(|(_, id)| id.clone()),
                    )
                })
            };
            let exits_differ =
                !quantity.is_zero() && exit_ids(exits.as_ref()) != exit_ids(known_exits);
            if quantity != ours {
                mismatches.push(if ours.is_zero() {
                    format!("{symbol}: Binance holds {quantity} at {entry} that the journal does not know (opened while Sentinel was down?); adopted with its resting legs")
                } else {
                    format!("{symbol}: Binance holds {quantity}, the journal {ours}; Binance's position is adopted")
                });
            } else if exits_differ {
                mismatches.push(format!(
                    "{symbol}: the stop/target resting on Binance differ from the journal's; Binance's are adopted"
                ));
            }
            if quantity != ours || exits_differ {
                adopted.push(AdoptedPosition {
                    symbol: symbol.clone(),
                    quantity,
                    entry_price: entry,
                    exits: exits.clone(),
                });
            }
            book.positions.insert(
                symbol.clone(),
                Position {
                    quantity,
                    entry_price: entry,
                    ..Position::default()
                },
            );
            if let Some(exits) = exits {
                book.legs.insert(symbol, exits);
            }
        }
    }
    let balance_differs = ledger.portfolio.balance != balance.wallet;
    if balance_differs && !ledger.portfolio.starting_balance.is_zero() {
        mismatches.push(format!(
            "the wallet is {} on Binance and {} in the journal (funding, transfers, fees); Binance's is adopted",
            balance.wallet, ledger.portfolio.balance
        ));
    }
    Ok(Reconciliation {
        wallet: balance.wallet,
        available: balance.available,
        adopted,
        mismatches,
        balance_differs,
    })
}

/// Open positions (`GET /fapi/v3/positionRisk`), one-way mode.
pub async fn positions(inner: &Inner) -> Result<Vec<VenuePosition>, CallError> {
    let all = inner
        .client
        .signed(Method::GET, "/fapi/v3/positionRisk", &[], Urgency::Exit)
        .await?;
    Ok(all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let quantity = dec(p, "positionAmt")?;
            (!quantity.is_zero()).then_some(VenuePosition {
                symbol: Symbol::new(text(p, "symbol")?).ok()?,
                quantity,
                entry_price: dec(p, "entryPrice").unwrap_or_default(),
            })
        })
        .collect())
}

/// The USDT wallet (`GET /fapi/v3/balance`).
pub async fn balance(inner: &Inner) -> Result<Balance, CallError> {
    let all = inner
        .client
        .signed(Method::GET, "/fapi/v3/balance", &[], Urgency::Exit)
        .await?;
    let usdt = all
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| text(b, "asset") == Some(QUOTE))
        .ok_or_else(|| CallError::Unknown(format!("no {QUOTE} balance on the account")))?;
    Ok(Balance {
        wallet: dec(usdt, "balance").unwrap_or_default(),
        available: dec(usdt, "availableBalance").unwrap_or_default(),
    })
}
