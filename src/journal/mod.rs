//! The durable journal: the daemon's event log (`sentinel_actors::log::EventLog`) in one SQLite file (WAL,
//! `synchronous=FULL`). Every event is a row of `events` whose `seq` is its offset; the writer also keeps two
//! projections in the same transaction (`signals` for the API and idempotency, `snapshots` for checkpoints), so the
//! file stays readable with `sqlite3`. Layout, kinds and the v1 upgrade: docs/journal.md.

pub mod backup;
mod lock;
mod log;
mod queue;
mod read;
mod ring;
mod schema;
mod upgrade;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sentinel_actors::event::Offset;
use thiserror::Error;

pub use lock::{lock, JournalLock};
pub use log::{Journal, JournalStats, DEFAULT_QUEUE, DEFAULT_RING};
pub use read::{JournalReader, Page, SignalStatus};
pub use schema::VERSION as SCHEMA_VERSION;

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("cannot open the journal {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("journal query failed: {0}")]
    Query(#[from] rusqlite::Error),
    #[error("the journal holds unreadable data: {0}")]
    Corrupt(String),
    #[error(
        "the journal {path} has schema version {found}, this sentinel reads version {expected}: {}",
        if found < expected { "run the daemon on it once to upgrade it" } else { "upgrade sentinel" }
    )]
    Version {
        path: String,
        found: i64,
        expected: i64,
    },
    #[error("another sentinel{} is running on {}; stop it first", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), path.display())]
    Locked { pid: Option<u32>, path: PathBuf },
    #[error("cannot lock the journal {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing what was read failed (a closed pipe, a full disk): the journal itself is fine.
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
}

/// An opened, migrated journal, ready for `Journal::start`: the writer's connection, and the connection the log
/// reads old offsets and checkpoints through.
pub struct Store {
    writer: Connection,
    reader: Connection,
    /// The last offset handed out, where the log's head starts.
    head: Offset,
}

/// Opens (creating if needed) and migrates the journal file at `path`, or an in-memory one for `None`; returns the
/// store for `Journal::start` and a reader for the API. Take `lock(path)` first: one daemon per file.
pub fn open(path: Option<&Path>) -> Result<(Store, JournalReader), JournalError> {
    static MEMORY: AtomicU64 = AtomicU64::new(0);
    let (target, flags) = match path {
        Some(path) => (path.display().to_string(), OpenFlags::empty()),
        None => {
            let n = MEMORY.fetch_add(1, Ordering::Relaxed);
            let uri = format!(
                "file:sentinel-{}-{n}?mode=memory&cache=shared",
                std::process::id()
            );
            (uri, OpenFlags::SQLITE_OPEN_URI)
        }
    };
    let failed = |source| JournalError::Open {
        path: target.clone(),
        source,
    };
    let mut writer = Connection::open_with_flags(
        &target,
        flags
            | OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    let setup = |conn: &mut Connection| -> rusqlite::Result<()> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk (WAL fsynced) before it returns, so an acknowledged webhook survives a crash
        // or power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Checkpointing the WAL into the database costs the writer a few percent under load (profiled): every 16 MiB
        // of WAL instead of every 4 MiB, and the WAL file is cut back to that size afterwards.
        conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
        conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        schema::migrate(conn)
    };
    setup(&mut writer).map_err(failed)?;
    let head = writer::last_offset(&writer).map_err(failed)?;
    let read_only = || -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &target,
            flags | OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(conn)
    };
    let reader = read_only().map_err(failed)?;
    let api = read_only().map_err(failed)?;
    Ok((
        Store {
            writer,
            reader,
            head,
        },
        JournalReader::from_connection(api),
    ))
}

/// Where a journal's lock lives: next to it, `<file name>.lock`.
fn lock_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}
