//! Reading the journal for the operator: the API's signal and order pages, and `sentinel journal`.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};

use super::JournalError;

/// A page request: the newest `limit` rows with `seq < before`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Page {
    pub limit: Option<usize>,
    pub before: Option<i64>,
}

impl Page {
    pub const MAX: usize = 1000;

    fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).min(Self::MAX) as i64
    }

    fn before(&self) -> i64 {
        self.before.unwrap_or(i64::MAX)
    }
}

/// A read-only connection, shared (queries are short).
pub struct JournalReader {
    conn: Mutex<Connection>,
}

fn json_or_null(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

impl JournalReader {
    pub fn open(path: &Path) -> Result<JournalReader, JournalError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| JournalError::Open {
                path: path.display().to_string(),
                source,
            },
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self::from_connection(conn))
    }

    pub fn from_connection(conn: Connection) -> JournalReader {
        JournalReader {
            conn: Mutex::new(conn),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signals, newest first, each with its status (`pending` until done) and outcome.
    pub fn signals(&self, page: Page) -> Result<Vec<Value>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![page.before(), page.limit()], signal_json)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Order events (fills, denials, rejections), newest first.
    pub fn orders(&self, page: Page) -> Result<Vec<Value>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, at, kind, signal_id, symbol, client_order_id, data FROM events
             WHERE kind IN ('fill', 'denial', 'rejection') AND seq < ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![page.before(), page.limit()], event_json)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One signal's whole story: its row and every event about it, in order.
    pub fn story(&self, signal_id: &str) -> Result<Option<Value>, JournalError> {
        let conn = self.conn();
        let signal = conn
            .query_row(
                &format!("SELECT {SIGNAL_COLUMNS} FROM signals WHERE signal_id = ?1"),
                params![signal_id],
                signal_json,
            )
            .optional()?;
        let Some(mut signal) = signal else {
            return Ok(None);
        };
        let mut stmt = conn.prepare_cached(
            "SELECT seq, at, kind, signal_id, symbol, client_order_id, data FROM events WHERE signal_id = ?1 ORDER BY seq",
        )?;
        let events = stmt
            .query_map(params![signal_id], event_json)?
            .collect::<Result<Vec<_>, _>>()?;
        signal["events"] = Value::from(events);
        Ok(Some(signal))
    }

    /// Every signal and event, oldest first, one JSON object per call of `out`.
    pub fn export(
        &self,
        mut out: impl FnMut(Value) -> std::io::Result<()>,
    ) -> Result<(), JournalError> {
        let conn = self.conn();
        let mut signals = conn.prepare(
            "SELECT seq, signal_id, received_at, payload, signal, status, outcome, finished_at FROM signals ORDER BY seq",
        )?;
        let mut rows = signals.query([])?;
        while let Some(row) = rows.next()? {
            let line = json!({
                "type": "signal",
                "seq": row.get::<_, i64>(0)?,
                "signal_id": row.get::<_, String>(1)?,
                "received_at": row.get::<_, i64>(2)?,
                "payload": json_or_null(row.get(3)?),
                "signal": json_or_null(row.get(4)?),
                "status": row.get::<_, Option<String>>(5)?,
                "outcome": json_or_null(row.get(6)?),
                "finished_at": row.get::<_, Option<i64>>(7)?,
            });
            out(line).map_err(|e| JournalError::Corrupt(format!("export: {e}")))?;
        }
        let mut events = conn.prepare("SELECT seq, at, kind, signal_id, symbol, client_order_id, data FROM events ORDER BY seq")?;
        let mut rows = events.query([])?;
        while let Some(row) = rows.next()? {
            let mut line = event_json(row)?;
            line["type"] = Value::from("event");
            out(line).map_err(|e| JournalError::Corrupt(format!("export: {e}")))?;
        }
        Ok(())
    }
}

const SIGNAL_COLUMNS: &str = "seq, signal, status, outcome, payload, received_at, finished_at";

/// A row of `SIGNAL_COLUMNS` as the API and `sentinel journal` show it.
fn signal_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    Ok(json!({
        "seq": row.get::<_, i64>(0)?,
        "signal": json_or_null(row.get(1)?),
        "status": row.get::<_, Option<String>>(2)?.unwrap_or_else(|| "pending".into()),
        "outcome": json_or_null(row.get(3)?),
        "payload": json_or_null(row.get(4)?),
        "received_at": row.get::<_, i64>(5)?,
        "finished_at": row.get::<_, Option<i64>>(6)?,
    }))
}

fn event_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let mut data = json_or_null(row.get(6)?);
    let mut event = json!({
        "seq": row.get::<_, i64>(0)?,
        "at": row.get::<_, i64>(1)?,
        "kind": row.get::<_, String>(2)?,
        "signal_id": row.get::<_, Option<String>>(3)?,
        "symbol": row.get::<_, Option<String>>(4)?,
        "client_order_id": row.get::<_, Option<String>>(5)?,
    });
    if let (Some(event), Some(data)) = (event.as_object_mut(), data.as_object_mut()) {
        event.append(data);
    }
    Ok(event)
}
