//! What the journal says about a run: how many signals were received and finished inside the load window, how many
//! were still pending at its end, and how long a signal took to its first approved order and its first fill.
//! The journal's timestamps are Unix milliseconds, so these latencies are whole milliseconds.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};

/// Reads the journal at `path` (read-only, beside the running daemon) for the window `[from_ms, to_ms]`.
pub fn analyse(path: &Path, from_ms: u64, to_ms: u64) -> rusqlite::Result<Value> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let (from, to) = (from_ms as i64, to_ms as i64);
    let count =
        |sql: &str| -> rusqlite::Result<i64> { conn.query_row(sql, [from, to], |row| row.get(0)) };
    let received = count("SELECT count(*) FROM signals WHERE received_at BETWEEN ?1 AND ?2")?;
    let finished = count("SELECT count(*) FROM signals WHERE finished_at BETWEEN ?1 AND ?2")?;
    let pending_at_end = count(
        "SELECT count(*) FROM signals WHERE received_at BETWEEN ?1 AND ?2 AND (finished_at IS NULL OR finished_at > ?2)",
    )?;
    let last_finished: Option<i64> =
        conn.query_row("SELECT max(finished_at) FROM signals", [], |row| row.get(0))?;
    let mut statuses = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT coalesce(status, 'pending'), count(*) FROM signals WHERE received_at BETWEEN ?1 AND ?2 GROUP BY 1",
    )?;
    for row in stmt.query_map([from, to], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })? {
        let (status, n) = row?;
        statuses.insert(status, n);
    }
    Ok(json!({
        "received": received,
        "finished": finished,
        "pending_at_end": pending_at_end,
        "last_finish_after_end_ms": last_finished.map(|t| t - to),
        "statuses": statuses,
        // Event kinds as the journal has named them: before and after the event log.
        "signal_to_order_ms": stage_latency(&conn, ["approval", "order_sent"], from, to)?,
        "signal_to_fill_ms": stage_latency(&conn, ["fill", "filled"], from, to)?,
    }))
}

/// p50, p99 and max of (first event of either kind - signal received), over the window's signals that have one.
fn stage_latency(
    conn: &Connection,
    kinds: [&str; 2],
    from: i64,
    to: i64,
) -> rusqlite::Result<Value> {
    let mut stmt = conn.prepare(
        "SELECT min(e.at) - s.received_at FROM signals s
         JOIN events e ON e.signal_id = s.signal_id AND e.kind IN (?1, ?2)
         WHERE s.received_at BETWEEN ?3 AND ?4 GROUP BY s.seq",
    )?;
    let mut millis: Vec<i64> = stmt
        .query_map(rusqlite::params![kinds[0], kinds[1], from, to], |row| {
            row.get(0)
        })?
        .collect::<rusqlite::Result<_>>()?;
    if millis.is_empty() {
        return Ok(Value::Null);
    }
    millis.sort_unstable();
    let at =
        |p: f64| millis[((millis.len() as f64 * p).ceil() as usize).clamp(1, millis.len()) - 1];
    Ok(
        json!({ "0.5": at(0.5), "0.99": at(0.99), "max": millis[millis.len() - 1], "n": millis.len() }),
    )
}
