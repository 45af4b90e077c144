//! Schema 2: turns a v1 journal (accepts in `signals`, string-kind events, a `state` table) into the typed event log,
//! in one transaction, in SQL: every row of `events` becomes an `Event` (its JSON in `data`, `seq` its offset).
//!
//! The v1 accepts become `signal_accepted` events merged in by time; the latest `state` values become events at the
//! end (the events that set them may have been pruned); the v1 snapshot is dropped because its positions are v1 seqs.
//! See docs/journal.md for the mapping of each kind.

/// The migration from version 1 to 2 (on a fresh file it only reshapes empty tables).
pub const TO_V2: &str = r#"
-- Rows that are not events of the log (nothing reads them back as events), kept for the operator.
CREATE TABLE diagnostics (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    kind            TEXT NOT NULL,   -- duplicate_fill; unmigrated (a v1 row with no v2 meaning)
    signal_id       TEXT,
    client_order_id TEXT,
    data            TEXT NOT NULL    -- JSON
);

-- AUTOINCREMENT: an offset is never handed out twice, even after retention deleted the newest events.
CREATE TABLE events_v2 (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    signal_id       TEXT,
    symbol          TEXT,
    client_order_id TEXT,
    data            TEXT NOT NULL
);

-- Each v1 accept with a sort key that never decreases in acceptance order, so a clock that stepped back cannot
-- reorder signals.
CREATE TEMP TABLE v1_accepts AS
SELECT seq AS orig, signal_id, symbol,
       MAX(received_at) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) AS key
FROM signals;
CREATE UNIQUE INDEX temp.v1_accepts_id ON v1_accepts(signal_id);

-- Each v1 event with a sort key that never decreases in commit order and is at least its own accept's key: the merge
-- below keeps the commit order of the events and puts every accept before its signal's events.
-- The columns are what the v2 event says (`Event::signal_id`, `symbol`, `client_order_id`): an order's or a fill's
-- own fields where it has one; the symbol of an outcome (NULL in v1) comes from its signal, or another event of the
-- signal, or its first order.
CREATE TEMP TABLE v1_events AS
SELECT e.seq AS orig, e.at, e.kind AS old_kind, e.data,
       CASE WHEN e.kind IN ('approval', 'denial', 'rejection', 'fill') THEN e.data ->> '$.order.signal_id'
            ELSE e.signal_id END AS signal_id,
       CASE WHEN e.kind IN ('approval', 'denial', 'rejection') THEN e.data ->> '$.order.symbol'
            WHEN e.kind = 'fill' THEN e.data ->> '$.fill.symbol'
            ELSE COALESCE(e.symbol, a.symbol,
                          (SELECT o.symbol FROM events o
                           WHERE o.signal_id = e.signal_id AND o.symbol IS NOT NULL LIMIT 1),
                          e.data ->> '$.orders[0].order.symbol') END AS symbol,
       CASE WHEN e.kind IN ('approval', 'denial', 'rejection') THEN e.data ->> '$.order.client_order_id'
            WHEN e.kind = 'fill' THEN e.data ->> '$.fill.client_order_id'
            ELSE e.client_order_id END AS client_order_id,
       MAX(MAX(e.at, COALESCE(a.key, e.at))) OVER (ORDER BY e.seq ROWS UNBOUNDED PRECEDING) AS key
FROM events e LEFT JOIN v1_accepts a ON a.signal_id = e.signal_id;

CREATE TEMP TABLE v1_mapped AS
SELECT orig, at, key, old_kind, signal_id, symbol, client_order_id, data,
       CASE old_kind
           WHEN 'decision' THEN 'decided'
           WHEN 'approval' THEN 'risk_checked'
           WHEN 'denial' THEN 'risk_checked'
           WHEN 'fill' THEN 'filled'
           WHEN 'rejection' THEN 'rejected'
           WHEN 'outcome' THEN 'signal_finished'
           WHEN 'strategy_state' THEN 'strategy_state_changed'
           WHEN 'trading_state' THEN 'trading_state_changed'
       END AS kind,
       -- Whether the row has what its v2 event needs; the rest goes to `diagnostics`, nothing is lost.
       CASE old_kind
           WHEN 'decision' THEN signal_id IS NOT NULL AND symbol IS NOT NULL
                                AND json_type(data, '$.orders') = 'array'
           WHEN 'approval' THEN json_type(data, '$.order') = 'object'
           WHEN 'denial' THEN json_type(data, '$.order') = 'object' AND json_type(data, '$.reason') = 'object'
           WHEN 'fill' THEN json_type(data, '$.fill') = 'object'
           WHEN 'rejection' THEN json_type(data, '$.order') = 'object' AND json_type(data, '$.error') = 'text'
           WHEN 'outcome' THEN signal_id IS NOT NULL AND symbol IS NOT NULL
           WHEN 'strategy_state' THEN symbol IS NOT NULL AND json_type(data, '$.paused') IN ('true', 'false')
           WHEN 'trading_state' THEN json_type(data, '$.state') = 'text'
           ELSE 0
       END AS ok
FROM v1_events;

INSERT INTO events_v2 (at, kind, signal_id, symbol, client_order_id, data)
SELECT at, kind, signal_id, symbol, client_order_id, data FROM (
    SELECT a.key AS key, 0 AS rank, a.orig AS orig, s.received_at AS at, 'signal_accepted' AS kind,
           s.signal_id AS signal_id, s.symbol AS symbol, NULL AS client_order_id,
           json_object('kind', 'signal_accepted', 'signal', json(s.signal),
                       'delivery', json_object('keys', s.delivery_key, 'payload', s.payload)) AS data
    FROM v1_accepts a JOIN signals s ON s.seq = a.orig
    UNION ALL
    SELECT key, 1, orig, at, kind, signal_id, symbol, client_order_id,
           CASE old_kind
               WHEN 'decision' THEN json_set(data, '$.kind', 'decided', '$.signal_id', signal_id, '$.symbol', symbol)
               WHEN 'approval' THEN json_set(data, '$.kind', 'risk_checked',
                                             '$.verdict', json_object('verdict', 'approved'))
               WHEN 'denial' THEN json_remove(json_set(data, '$.kind', 'risk_checked',
                   '$.verdict', json_object('verdict', 'denied', 'reason', data -> '$.reason')), '$.reason')
               WHEN 'fill' THEN json_remove(json_set(data, '$.kind', 'filled'), '$.position')
               -- v1 kept the venue's error as text; v2 types it. Unknown then, so: unavailable (retrying may help).
               WHEN 'rejection' THEN json_set(data, '$.kind', 'rejected',
                   '$.error', json_object('code', 'unavailable', 'detail', data ->> '$.error'))
               WHEN 'outcome' THEN json_object('kind', 'signal_finished', 'signal_id', signal_id, 'symbol', symbol,
                                               'outcome', json(data))
               WHEN 'strategy_state' THEN json_set(data, '$.kind', 'strategy_state_changed', '$.symbol', symbol)
               WHEN 'trading_state' THEN json_set(data, '$.kind', 'trading_state_changed')
           END
    FROM v1_mapped WHERE ok
)
ORDER BY key, rank, orig;

-- The latest trading state and pauses, as events after everything else: what a fold of the log must end up with.
INSERT INTO events_v2 (at, kind, signal_id, symbol, client_order_id, data)
SELECT at, 'trading_state_changed', NULL, NULL, NULL,
       json_object('kind', 'trading_state_changed', 'state', json(value))
FROM state WHERE key = 'trading_state';
INSERT INTO events_v2 (at, kind, signal_id, symbol, client_order_id, data)
SELECT at, 'strategy_state_changed', NULL, substr(key, 8), NULL,
       json_object('kind', 'strategy_state_changed', 'symbol', substr(key, 8), 'paused', json(value))
FROM state WHERE key LIKE 'paused:%' ORDER BY key;

INSERT INTO diagnostics (at, kind, signal_id, client_order_id, data)
SELECT at, CASE old_kind WHEN 'duplicate_fill' THEN 'duplicate_fill' ELSE 'unmigrated' END, signal_id,
       client_order_id,
       CASE old_kind WHEN 'duplicate_fill' THEN data
            ELSE json_object('v1_kind', old_kind, 'symbol', symbol, 'data', json(data)) END
FROM v1_mapped WHERE NOT ok ORDER BY orig;

-- A signal's seq is its accept's offset, as for signals written from now on.
CREATE TABLE signals_v2 (
    seq          INTEGER PRIMARY KEY,   -- the offset of its signal_accepted event
    signal_id    TEXT NOT NULL UNIQUE,
    source       TEXT NOT NULL,
    symbol       TEXT NOT NULL,
    action       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    delivery_key TEXT NOT NULL,
    payload      TEXT NOT NULL,
    signal       TEXT NOT NULL,
    status       TEXT,
    outcome      TEXT,
    finished_at  INTEGER
);
INSERT INTO signals_v2 (seq, signal_id, source, symbol, action, received_at, delivery_key, payload, signal, status,
                        outcome, finished_at)
SELECT e.seq, s.signal_id, s.source, s.symbol, s.action, s.received_at, s.delivery_key, s.payload, s.signal,
       s.status, s.outcome, s.finished_at
FROM signals s JOIN events_v2 e ON e.kind = 'signal_accepted' AND e.signal_id = s.signal_id;

DROP TABLE temp.v1_mapped;
DROP TABLE temp.v1_events;
DROP TABLE temp.v1_accepts;
DROP TABLE signals;
DROP TABLE events;
DROP TABLE state;
ALTER TABLE signals_v2 RENAME TO signals;
ALTER TABLE events_v2 RENAME TO events;

CREATE INDEX signals_pending ON signals(seq) WHERE status IS NULL;
CREATE INDEX signals_received ON signals(received_at);
CREATE INDEX events_signal ON events(signal_id);
CREATE INDEX events_kind ON events(kind, seq);
-- A client order id fills once, whatever happens above.
CREATE UNIQUE INDEX events_fill_once ON events(client_order_id) WHERE kind = 'filled';
-- The API's orders page: fills, denials and rejections, newest first. The query repeats this WHERE to use it.
CREATE INDEX events_orders ON events(seq)
    WHERE kind IN ('filled', 'rejected')
       OR (kind = 'risk_checked' AND json_extract(data, '$.verdict.verdict') = 'denied');

-- Checkpoints now name an offset of the log: a v1 snapshot (v1 seqs, v1 shape) means nothing to a fold.
DROP TABLE snapshots;
CREATE TABLE snapshots (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    upto_event INTEGER NOT NULL,     -- the offset it covers: every event with seq <= this is folded into `state`
    state      TEXT NOT NULL         -- JSON: the ledger, as the daemon checkpoints it
);
"#;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use rusqlite::{params, Connection};
    use sentinel_actors::event::{Event, EventKind, Offset};
    use sentinel_actors::log::{EventLog, SystemClock};
    use sentinel_actors::venue::VenueError;

    use crate::journal::{open, schema, Journal};

    type V1Row<'a> = (i64, &'a str, Option<&'a str>, Option<&'a str>, &'a str);

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journal-v1.db");

    /// A copy of the fixture, so the test never changes it.
    fn fixture_copy(dir: &Path) -> PathBuf {
        let path = dir.join("journal-v1.db");
        std::fs::copy(FIXTURE, &path).unwrap();
        path
    }

    /// Every event row, checked: its `data` is an `Event` and its columns say what the event says.
    fn events(conn: &Connection) -> Vec<(i64, Event)> {
        let mut stmt = conn
            .prepare("SELECT seq, kind, signal_id, symbol, client_order_id, data FROM events ORDER BY seq")
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .unwrap();
        rows.map(|row| {
            let (seq, kind, signal_id, symbol, client_order_id, data) = row.unwrap();
            let event: Event = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("event {seq} ({kind}) is not an Event: {e}\n{data}"));
            assert_eq!(kind, event.kind().as_str(), "event {seq}");
            assert_eq!(
                signal_id.as_deref(),
                event.signal_id().map(|s| s.as_str()),
                "event {seq}"
            );
            assert_eq!(
                symbol.as_deref(),
                event.symbol().map(|s| s.as_str()),
                "event {seq}"
            );
            assert_eq!(
                client_order_id.as_deref(),
                event.client_order_id().map(|c| c.as_str()),
                "event {seq}"
            );
            (seq, event)
        })
        .collect()
    }

    /// Offsets 1..=n without gaps, and every signal's accept (whose offset is its `signals.seq`) before its other
    /// events.
    fn assert_log_shape(conn: &Connection, events: &[(i64, Event)]) {
        for (i, (seq, _)) in events.iter().enumerate() {
            assert_eq!(*seq, i as i64 + 1, "offsets without gaps");
        }
        let mut accepted: HashMap<String, i64> = HashMap::new();
        for (seq, event) in events {
            let Some(id) = event.signal_id() else {
                continue;
            };
            if event.kind() == EventKind::SignalAccepted {
                assert!(
                    accepted.insert(id.to_string(), *seq).is_none(),
                    "{id} accepted twice"
                );
                let row: i64 = conn
                    .query_row(
                        "SELECT seq FROM signals WHERE signal_id = ?1",
                        [id.as_str()],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(row, *seq, "signals.seq of {id}");
            } else {
                // Retention may have deleted a finished signal's row (and accept) and kept some of its events.
                let kept: bool = conn
                    .query_row(
                        "SELECT COUNT(*) > 0 FROM signals WHERE signal_id = ?1",
                        [id.as_str()],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert!(
                    !kept || accepted.contains_key(id.as_str()),
                    "event {seq} of {id} before its accept"
                );
            }
        }
        let signals: i64 = conn
            .query_row("SELECT COUNT(*) FROM signals", [], |r| r.get(0))
            .unwrap();
        assert_eq!(signals as usize, accepted.len(), "one accept per signal");
    }

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[tokio::test]
    async fn the_v1_fixture_becomes_a_log_of_typed_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = fixture_copy(dir.path());
        let (store, reader) = open(Some(&path)).unwrap();

        let conn = Connection::open(&path).unwrap();
        assert_eq!(schema::version(&conn).unwrap(), schema::VERSION);
        assert_eq!(
            tables(&conn),
            ["diagnostics", "events", "signals", "snapshots"]
        );
        let events = events(&conn);
        assert_log_shape(&conn, &events);
        // 7 accepts, the 19 v1 events, and the pause from the `state` table at the end.
        assert_eq!(events.len(), 7 + 19 + 1);
        let kinds = |kind: EventKind| events.iter().filter(|(_, e)| e.kind() == kind).count();
        assert_eq!(kinds(EventKind::SignalAccepted), 7);
        assert_eq!(kinds(EventKind::SignalFinished), 6);
        assert_eq!(kinds(EventKind::Filled), 4);
        assert_eq!(kinds(EventKind::RiskChecked), 4);
        match &events.last().unwrap().1 {
            Event::StrategyStateChanged { symbol, paused } => {
                assert_eq!((symbol.as_str(), *paused), ("BTCUSDT", true))
            }
            other => panic!("the state table's pause is not last: {other:?}"),
        }
        let diagnostics: i64 = conn
            .query_row("SELECT COUNT(*) FROM diagnostics", [], |r| r.get(0))
            .unwrap();
        assert_eq!(diagnostics, 0, "every fixture row has a v2 meaning");
        let snapshots: i64 = conn
            .query_row("SELECT COUNT(*) FROM snapshots", [], |r| r.get(0))
            .unwrap();
        assert_eq!(snapshots, 0, "the v1 snapshot counts v1 seqs");

        // The acknowledged but unfinished signal is still unfinished, and the only one.
        let pending: Vec<String> = conn
            .prepare("SELECT signal_id FROM signals WHERE status IS NULL")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(pending, ["tradingview:v1-g"]);
        assert_eq!(reader.pending_count().unwrap(), 1);
        let outcome: String = conn
            .query_row(
                "SELECT outcome FROM signals WHERE signal_id = 'tradingview:v1-a'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            outcome.contains("\"status\":\"filled\""),
            "outcomes stay: {outcome}"
        );
        assert_eq!(
            reader
                .deliveries_since(sentinel_actors::types::Timestamp(0))
                .unwrap()
                .len(),
            7,
            "idempotency keys survive"
        );

        // The log reads it all back, and goes on after it.
        let journal = Journal::start(store, std::sync::Arc::new(SystemClock), 16);
        assert_eq!(*journal.head().borrow(), Offset(27));
        assert_eq!(journal.read(Offset(1), 100).unwrap().len(), 27);
        assert_eq!(journal.last_checkpoint().unwrap(), None);
        let next = journal.append(vec![events[0].1.clone()]).durable().await;
        assert_eq!(next, Err(sentinel_actors::log::LogError::DuplicateSignal));
    }

    /// v1 rows the fixture lacks: denials, rejections, the kill switch, a duplicate fill, an outcome whose signal row
    /// retention deleted, and a row nothing maps.
    #[test]
    fn every_v1_kind_is_mapped_or_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate_to(&mut conn, 1).unwrap();
        let fixture = Connection::open(fixture_copy(dir.path())).unwrap();
        let order: String = fixture
            .query_row(
                "SELECT json_extract(data, '$.order') FROM events WHERE kind = 'approval' LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let fill: String = fixture
            .query_row(
                "SELECT data FROM events WHERE kind = 'fill' LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let signal: (String, String) = fixture
            .query_row(
                "SELECT signal_id, signal FROM signals WHERE seq = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        conn.execute(
            "INSERT INTO signals (signal_id, source, symbol, action, received_at, delivery_key, payload, signal)
             VALUES (?1, 'tradingview', 'BTCUSDT', 'open_long', 100, 'id:x', '{}', ?2)",
            params![signal.0, signal.1],
        )
        .unwrap();
        let denial = format!(r#"{{"order":{order},"reason":{{"code":"halted"}}}}"#);
        let rejection = format!(r#"{{"order":{order},"error":"binance said no"}}"#);
        let orphan_outcome = format!(
            r#"{{"status":"rejected","orders":[{{"status":"rejected","order":{order},"error":"binance said no"}}]}}"#
        );
        // (at, kind, signal_id, symbol, data)
        let rows: [V1Row<'_>; 8] = [
            (
                99,
                "decision",
                Some(&signal.0),
                Some("BTCUSDT"),
                r#"{"orders":[]}"#,
            ), // before its accept's time
            (101, "denial", Some(&signal.0), Some("BTCUSDT"), &denial),
            (
                102,
                "rejection",
                Some(&signal.0),
                Some("BTCUSDT"),
                &rejection,
            ),
            (103, "fill", Some(&signal.0), Some("BTCUSDT"), &fill),
            (
                104,
                "duplicate_fill",
                Some(&signal.0),
                Some("BTCUSDT"),
                &fill,
            ),
            (105, "trading_state", None, None, r#"{"state":"halted"}"#),
            (
                106,
                "outcome",
                Some("tradingview:gone"),
                None,
                &orphan_outcome,
            ),
            (107, "mystery", None, None, r#"{"what":1}"#),
        ];
        for (at, kind, signal_id, symbol, data) in rows {
            conn.execute(
                "INSERT INTO events (at, kind, signal_id, symbol, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![at, kind, signal_id, symbol, data],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO state (key, value, at) VALUES ('trading_state', '\"reducing\"', 108)",
            [],
        )
        .unwrap();
        drop(conn);

        drop(open(Some(&path)).unwrap());
        let conn = Connection::open(&path).unwrap();
        let events = events(&conn);
        assert_log_shape(&conn, &events);
        let kinds: Vec<&str> = events.iter().map(|(_, e)| e.kind().as_str()).collect();
        assert_eq!(
            kinds,
            [
                "signal_accepted",
                "decided",
                "risk_checked",
                "rejected",
                "filled",
                "trading_state_changed",
                "signal_finished",
                "trading_state_changed"
            ]
        );
        match &events[3].1 {
            Event::Rejected { error, .. } => assert_eq!(
                error,
                &VenueError::Unavailable {
                    detail: "binance said no".into()
                }
            ),
            other => panic!("{other:?}"),
        }
        let finished = &events[6].1;
        assert_eq!(
            finished.symbol().map(|s| s.as_str()),
            Some("BTCUSDT"),
            "from its orders"
        );
        let aside: Vec<(String, String)> = conn
            .prepare("SELECT kind, data FROM diagnostics ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(aside.len(), 2, "{aside:?}");
        assert_eq!(aside[0].0, "duplicate_fill");
        assert_eq!(aside[1].0, "unmigrated");
        assert!(
            aside[1].1.contains("\"v1_kind\":\"mystery\""),
            "{}",
            aside[1].1
        );
    }
}
