//! Reading the journal for the operator: the API's signal and order pages, `sentinel journal`, and the idempotency
//! keys a start-up loads. Rows are JSON objects: an event row is `seq`, `at`, `kind`, `signal_id`, `symbol`,
//! `client_order_id` and the event's own fields.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sentinel_actors::event::Offset;
use sentinel_actors::types::{SignalId, Symbol, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{schema, JournalError};

/// A page request: the newest `limit` rows with `seq < before`; for signals, only those with `status`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Page {
    pub limit: Option<usize>,
    pub before: Option<i64>,
    /// Signals only (orders ignore it).
    pub status: Option<SignalStatus>,
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

/// Where a signal stands: `pending` until its `signal_finished` event, then how it ended
/// (`SignalOutcome::status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalStatus {
    Pending,
    Filled,
    Partial,
    Denied,
    Rejected,
    Ignored,
    ExitsMoved,
    Failed,
}

impl SignalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalStatus::Pending => "pending",
            SignalStatus::Filled => "filled",
            SignalStatus::Partial => "partial",
            SignalStatus::Denied => "denied",
            SignalStatus::Rejected => "rejected",
            SignalStatus::Ignored => "ignored",
            SignalStatus::ExitsMoved => "exits_moved",
            SignalStatus::Failed => "failed",
        }
    }
}

/// A rule's last firing for one symbol (`None`: events without one), as the journal has it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFiring {
    pub rule: String,
    pub symbol: Option<Symbol>,
    /// The offset of the last event it acted on.
    pub trigger: Offset,
    /// When that event arrived.
    pub observed_at: Timestamp,
}

/// A read-only connection, shared (queries are short).
pub struct JournalReader {
    conn: Mutex<Connection>,
}

const SIGNAL_COLUMNS: &str = "seq, signal, status, outcome, payload, received_at, finished_at";
const EVENT_COLUMNS: &str = "seq, at, kind, signal_id, symbol, client_order_id, data";
/// The orders page's kinds: the `events_orders` index's WHERE, which a query must repeat to use that index.
const ORDER_EVENTS: &str = "(kind IN ('filled', 'rejected') \
     OR (kind = 'risk_checked' AND json_extract(data, '$.verdict.verdict') = 'denied'))";

impl JournalReader {
    /// Opens a journal file to read, refusing one whose schema this Sentinel does not read (an old file is upgraded
    /// by the daemon, never by a reader).
    pub fn open(path: &Path) -> Result<JournalReader, JournalError> {
        let failed = |source| JournalError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(failed)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(failed)?;
        let found = schema::version(&conn).map_err(failed)?;
        if found != schema::VERSION {
            return Err(JournalError::Version {
                path: path.display().to_string(),
                found,
                expected: schema::VERSION,
            });
        }
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
        let (filter, status) = match page.status {
            None => ("1", None),
            // The partial index `signals_pending` answers this one.
            Some(SignalStatus::Pending) => ("status IS NULL", None),
            Some(status) => ("status = ?3", Some(status.as_str())),
        };
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals WHERE {filter} AND seq < ?1 ORDER BY seq DESC LIMIT ?2"
        ))?;
        let rows = match status {
            None => stmt.query_map(params![page.before(), page.limit()], signal_json)?,
            Some(status) => {
                stmt.query_map(params![page.before(), page.limit(), status], signal_json)?
            }
        };
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many signals are acknowledged but not finished.
    pub fn pending_count(&self) -> Result<u64, JournalError> {
        let count: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM signals WHERE status IS NULL",
            [],
            |row| row.get(0),
        )?;
        Ok(count.max(0) as u64)
    }

    /// When the oldest unfinished signal was received, if any is unfinished.
    pub fn oldest_pending(&self) -> Result<Option<Timestamp>, JournalError> {
        let at = self
            .conn()
            .query_row(
                "SELECT received_at FROM signals WHERE status IS NULL ORDER BY seq LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()?;
        Ok(at.map(Timestamp))
    }

    /// Order events (fills, denials, rejections), newest first.
    pub fn orders(&self, page: Page) -> Result<Vec<Value>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            // Named: left to itself, SQLite merges two scans of `events_kind` and sorts every fill ever made.
            "SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_orders
             WHERE {ORDER_EVENTS} AND seq < ?1 ORDER BY seq DESC LIMIT ?2"
        ))?;
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
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE signal_id = ?1 ORDER BY seq"
        ))?;
        let events = stmt
            .query_map(params![signal_id], event_json)?
            .collect::<Result<Vec<_>, _>>()?;
        signal["events"] = Value::from(events);
        Ok(Some(signal))
    }

    /// Each rule's last firing per symbol, from `rule_fired` entries: what the rule runner starts from.
    pub fn rule_firings(&self) -> Result<Vec<RuleFiring>, JournalError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT json_extract(data, '$.rule'), json_extract(data, '$.symbol'),
                    MAX(json_extract(data, '$.trigger')), MAX(json_extract(data, '$.observed_at'))
               FROM events WHERE kind = 'rule_fired'
              GROUP BY 1, 2",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (rule, symbol, trigger, observed_at) = row?;
            let symbol = symbol
                .map(|s| Symbol::new(&s))
                .transpose()
                .map_err(|e| JournalError::Corrupt(format!("rule_fired symbol: {e}")))?;
            Ok(RuleFiring {
                rule,
                symbol,
                trigger: Offset(trigger.max(0) as u64),
                observed_at: Timestamp(observed_at),
            })
        })
        .collect()
    }

    /// The offset of the first event observed at or after `since`, if any. Read from the newest back, so a journal
    /// with months of venue events costs only the recent ones.
    pub fn first_observed_since(&self, since: Timestamp) -> Result<Option<u64>, JournalError> {
        let conn = self.conn();
        let older: Option<i64> = conn
            .query_row(
                "SELECT seq FROM events WHERE kind = 'observed' AND at < ?1 ORDER BY seq DESC LIMIT 1",
                params![since.0],
                |row| row.get(0),
            )
            .optional()?;
        let first: Option<i64> = conn.query_row(
            "SELECT MIN(seq) FROM events WHERE kind = 'observed' AND seq > ?1",
            params![older.unwrap_or(0)],
            |row| row.get(0),
        )?;
        Ok(first.map(|seq| seq.max(0) as u64))
    }

    /// Idempotency keys of the signals and webhook events received since `since`, oldest first: (keys as `Delivery::keys` held them,
    /// signal id, received at).
    pub fn deliveries_since(
        &self,
        since: Timestamp,
    ) -> Result<Vec<(String, SignalId, Timestamp)>, JournalError> {
        let conn = self.conn();
        // Signals, and events posted to webhooks (their keys are in the `observed` event), in the log's order.
        let mut stmt = conn.prepare_cached(
            "SELECT delivery_key, signal_id, received_at FROM (
                 SELECT seq, delivery_key, signal_id, received_at FROM signals WHERE received_at >= ?1
                 UNION ALL
                 SELECT seq,
                        json_extract(data, '$.observation.delivery.keys'),
                        json_extract(data, '$.observation.delivery.id'),
                        json_extract(data, '$.observation.received_at')
                   FROM events
                  WHERE kind = 'observed' AND at >= ?1
                    AND json_extract(data, '$.observation.delivery.id') IS NOT NULL)
             ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![since.0], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (keys, id, at) = row?;
            let id = SignalId::new(&id)
                .map_err(|e| JournalError::Corrupt(format!("signal id {id:?}: {e}")))?;
            Ok((keys, id, Timestamp(at)))
        })
        .collect()
    }

    /// Every signal, event and diagnostic, oldest first, one JSON object per call of `out` (`type` says which).
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
            out(line).map_err(JournalError::Output)?;
        }
        let mut events =
            conn.prepare(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq"))?;
        let mut rows = events.query([])?;
        while let Some(row) = rows.next()? {
            let mut line = event_json(row)?;
            line["type"] = Value::from("event");
            out(line).map_err(JournalError::Output)?;
        }
        let mut diagnostics = conn.prepare(
            "SELECT id, at, kind, signal_id, client_order_id, data FROM diagnostics ORDER BY id",
        )?;
        let mut rows = diagnostics.query([])?;
        while let Some(row) = rows.next()? {
            let line = json!({
                "type": "diagnostic",
                "id": row.get::<_, i64>(0)?,
                "at": row.get::<_, i64>(1)?,
                "kind": row.get::<_, String>(2)?,
                "signal_id": row.get::<_, Option<String>>(3)?,
                "client_order_id": row.get::<_, Option<String>>(4)?,
                "data": json_or_null(row.get(5)?),
            });
            out(line).map_err(JournalError::Output)?;
        }
        Ok(())
    }
}

fn json_or_null(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// A row of `SIGNAL_COLUMNS` as the API and `sentinel journal` show it.
fn signal_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    Ok(json!({
        "seq": row.get::<_, i64>(0)?,
        "signal": json_or_null(row.get(1)?),
        "status": row.get::<_, Option<String>>(2)?.unwrap_or_else(|| SignalStatus::Pending.as_str().into()),
        "outcome": json_or_null(row.get(3)?),
        "payload": json_or_null(row.get(4)?),
        "received_at": row.get::<_, i64>(5)?,
        "finished_at": row.get::<_, Option<i64>>(6)?,
    }))
}

/// A row of `EVENT_COLUMNS`: the columns, then the event's own fields.
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
        // The columns win: they say the same, and a row stays one shape whatever the event holds.
        data.retain(|key, _| !event.contains_key(key));
        event.append(data);
    }
    Ok(event)
}
