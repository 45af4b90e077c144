//! The journal's tables, created and upgraded by numbered migrations (`PRAGMA user_version`).

use rusqlite::Connection;

use super::upgrade;

/// Each entry upgrades the schema from version `index` to `index + 1`, in one transaction. Append only; never edit a
/// released one: files in the field were made by them.
const MIGRATIONS: &[&str] = &[
    // 1: signals, events (string kinds), snapshots, state. What Sentinel 0.1 wrote.
    r#"
    CREATE TABLE signals (
        seq          INTEGER PRIMARY KEY,
        signal_id    TEXT NOT NULL UNIQUE,
        source       TEXT NOT NULL,
        symbol       TEXT NOT NULL,
        action       TEXT NOT NULL,
        received_at  INTEGER NOT NULL,   -- Unix milliseconds
        delivery_key TEXT NOT NULL,      -- idempotency key: id:<source>:<id> or body:<source>:<sha256 hex>
        payload      TEXT NOT NULL,      -- the body as received, secret fields removed
        signal       TEXT NOT NULL,      -- the normalised signal, JSON
        status       TEXT,               -- NULL until the signal is done: filled, partial, denied, ...
        outcome      TEXT,               -- JSON
        finished_at  INTEGER
    );
    CREATE INDEX signals_pending ON signals(seq) WHERE status IS NULL;
    CREATE INDEX signals_received ON signals(received_at);

    CREATE TABLE events (
        seq             INTEGER PRIMARY KEY,
        at              INTEGER NOT NULL,
        kind            TEXT NOT NULL,   -- decision, approval, denial, fill, rejection, strategy_state, trading_state
        signal_id       TEXT,
        symbol          TEXT,
        client_order_id TEXT,
        data            TEXT NOT NULL    -- JSON
    );
    CREATE INDEX events_signal ON events(signal_id);
    CREATE INDEX events_kind ON events(kind, seq);
    -- A client order id fills once, whatever happens above.
    CREATE UNIQUE INDEX events_fill_once ON events(client_order_id) WHERE kind = 'fill';

    CREATE TABLE snapshots (
        seq        INTEGER PRIMARY KEY,
        at         INTEGER NOT NULL,
        upto_event INTEGER NOT NULL,     -- every fill event with seq <= this is in the state
        state      TEXT NOT NULL         -- JSON: portfolio and gateway
    );

    CREATE TABLE state (
        key   TEXT PRIMARY KEY,          -- trading_state, paused:<symbol>
        value TEXT NOT NULL,
        at    INTEGER NOT NULL
    );
    "#,
    // 2: the typed event log: every event a row (seq = offset), accepts included; no `state` table.
    upgrade::TO_V2,
];

pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// The schema version of an open file.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Brings the schema up to `VERSION`. Refuses a journal written by a newer Sentinel.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    migrate_to(conn, VERSION)
}

/// Brings the schema up to `target` (tests make old files with it).
pub(super) fn migrate_to(conn: &mut Connection, target: i64) -> rusqlite::Result<()> {
    let current = version(conn)?;
    if current > VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the journal has schema version {current}, newer than this Sentinel's {VERSION}: upgrade Sentinel"
        )));
    }
    let upto = MIGRATIONS.iter().take(target.clamp(0, VERSION) as usize);
    for (version, sql) in upto.enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
        if current > 0 {
            tracing::info!(version = version + 1, "journal schema upgraded");
        }
    }
    Ok(())
}
