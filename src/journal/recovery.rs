//! Start-up: everything the daemon's state is rebuilt from, read from the journal in one pass of a few queries.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use sentinel_actors::order::{Fill, OrderRequest};
use sentinel_actors::portfolio::Portfolio;
use sentinel_actors::risk::TradingState;
use sentinel_actors::signal::Signal;
use sentinel_actors::types::{SignalId, Symbol, Timestamp};
use serde::Deserialize;

use super::JournalError;

/// What a restart needs.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The last snapshot: portfolio and the gateway's own state.
    pub portfolio: Option<Portfolio>,
    pub gateway: Option<serde_json::Value>,
    /// Fills after the snapshot, in order, to replay.
    pub fills: Vec<(Option<OrderRequest>, Fill)>,
    /// Fills of signals that are not finished: their client order ids must be known to have filled.
    pub pending_fills: Vec<(Option<OrderRequest>, Fill)>,
    pub trading_state: Option<TradingState>,
    pub paused: HashMap<Symbol, bool>,
    /// Idempotency keys accepted since `since`: (key, signal id, received at).
    pub deliveries: Vec<(String, SignalId, Timestamp)>,
    /// Signals acknowledged but not finished, in journal order, with the orders decided for them if any.
    pub pending: Vec<(Signal, Option<Vec<OrderRequest>>)>,
}

#[derive(Deserialize)]
struct FillData {
    order: Option<OrderRequest>,
    fill: Fill,
}

#[derive(Deserialize)]
struct Snapshot {
    portfolio: Portfolio,
    gateway: serde_json::Value,
}

#[derive(Deserialize)]
struct Decision {
    orders: Vec<OrderRequest>,
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, json: &str) -> Result<T, JournalError> {
    serde_json::from_str(json).map_err(|e| JournalError::Corrupt(format!("{what}: {e}")))
}

/// Reads what a restart needs; idempotency keys are loaded from `deliveries_since` on.
pub fn recover(conn: &Connection, deliveries_since: Timestamp) -> Result<Recovered, JournalError> {
    let mut out = Recovered::default();

    let snapshot: Option<(i64, String)> = conn
        .query_row(
            "SELECT upto_event, state FROM snapshots ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let upto = match snapshot {
        Some((upto, state)) => {
            let snapshot: Snapshot = parse("snapshot", &state)?;
            out.portfolio = Some(snapshot.portfolio);
            out.gateway = Some(snapshot.gateway);
            upto
        }
        None => 0,
    };

    let mut fills =
        conn.prepare("SELECT data FROM events WHERE kind = 'fill' AND seq > ?1 ORDER BY seq")?;
    for data in fills.query_map(params![upto], |row| row.get::<_, String>(0))? {
        let data: FillData = parse("fill", &data?)?;
        out.fills.push((data.order, data.fill));
    }

    if let Some(state) = conn
        .query_row(
            "SELECT value FROM state WHERE key = 'trading_state'",
            [],
            |row| row.get::<_, String>(0),
        )
        .optional()?
    {
        out.trading_state = Some(parse("trading state", &state)?);
    }
    let mut paused = conn.prepare("SELECT key, value FROM state WHERE key LIKE 'paused:%'")?;
    for row in paused.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })? {
        let (key, value) = row?;
        if let Ok(symbol) = Symbol::new(key.trim_start_matches("paused:")) {
            out.paused.insert(symbol, value == "true");
        }
    }

    let mut deliveries = conn.prepare(
        "SELECT delivery_key, signal_id, received_at FROM signals WHERE received_at >= ?1 ORDER BY seq",
    )?;
    for row in deliveries.query_map(params![deliveries_since.0], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })? {
        let (key, id, at) = row?;
        let id = SignalId::new(&id).map_err(|e| JournalError::Corrupt(e.to_string()))?;
        out.deliveries.push((key, id, Timestamp(at)));
    }

    let mut pending =
        conn.prepare("SELECT signal_id, signal FROM signals WHERE status IS NULL ORDER BY seq")?;
    let mut decision = conn.prepare(
        "SELECT data FROM events WHERE signal_id = ?1 AND kind = 'decision' ORDER BY seq LIMIT 1",
    )?;
    let mut pending_fills = conn
        .prepare("SELECT data FROM events WHERE signal_id = ?1 AND kind = 'fill' ORDER BY seq")?;
    for row in pending.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })? {
        let (id, json) = row?;
        let signal: Signal = parse("signal", &json)?;
        let decided = match decision
            .query_row(params![id], |row| row.get::<_, String>(0))
            .optional()?
        {
            Some(data) => Some(parse::<Decision>("decision", &data)?.orders),
            None => None,
        };
        for data in pending_fills.query_map(params![id], |row| row.get::<_, String>(0))? {
            let data: FillData = parse("fill", &data?)?;
            out.pending_fills.push((data.order, data.fill));
        }
        out.pending.push((signal, decided));
    }
    Ok(out)
}
