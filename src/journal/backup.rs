//! `sentinel journal backup`: a consistent copy of a journal, taken while the daemon writes to it, with SQLite's
//! online backup API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::JournalError;

/// Pages copied per step: 4 MiB with SQLite's default 4 KiB page, short enough that the daemon's writer never waits
/// long on the copy.
const PAGES_PER_STEP: i32 = 1024;
/// The pause between steps, in which the daemon's writer runs.
const PAUSE: Duration = Duration::from_millis(5);
/// A write by the daemon between two steps makes SQLite start the copy over. Under sustained load that could go on
/// forever, so after this many rounds over the file the rest is copied in one step (one read transaction: in WAL
/// mode it does not block the writer).
const ROUNDS_BEFORE_ONE_STEP: usize = 4;

/// What a backup copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// The copy's size in database pages.
    pub pages: i64,
    /// Rows of `events` in the copy.
    pub events: i64,
    /// The copy's last event offset (`events.seq`), 0 for an empty journal.
    pub last_offset: i64,
}

/// Why a backup was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} already exists: pass --force to overwrite it", .0.display())]
    Exists(PathBuf),
    #[error("{} is not a journal file", .0.display())]
    Missing(PathBuf),
    #[error("cannot write the backup {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Copies the journal at `from` to `to`, consistently even while a daemon writes to it. The copy is made next to
/// `to` and renamed into place when complete, so `to` never holds half a backup. An existing `to` is refused unless
/// `force`.
pub fn backup(from: &Path, to: &Path, force: bool) -> Result<BackupReport, BackupError> {
    if !from.is_file() {
        return Err(BackupError::Missing(from.to_path_buf()));
    }
    if to.exists() && !force {
        return Err(BackupError::Exists(to.to_path_buf()));
    }
    let partial = partial_path(to);
    let result = copy(from, &partial).and_then(|report| {
        std::fs::rename(&partial, to).map_err(|source| BackupError::Write {
            path: to.to_path_buf(),
            source,
        })?;
        Ok(report)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn copy(from: &Path, to: &Path) -> Result<BackupReport, BackupError> {
    let opened = |path: &Path| {
        let path = path.display().to_string();
        move |source| JournalError::Open { path, source }
    };
    // A left-over partial copy from an interrupted run is not worth keeping.
    let _ = std::fs::remove_file(to);
    let source = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(opened(from))?;
    source
        .busy_timeout(Duration::from_secs(5))
        .map_err(opened(from))?;
    let mut target = Connection::open(to).map_err(opened(to))?;
    {
        let backup = Backup::new(&source, &mut target).map_err(JournalError::Query)?;
        let mut steps = 0;
        loop {
            let pages = backup.progress().pagecount.max(1);
            let one_round = (pages / PAGES_PER_STEP + 1) as usize;
            let step = if steps >= ROUNDS_BEFORE_ONE_STEP * one_round {
                -1
            } else {
                PAGES_PER_STEP
            };
            steps += 1;
            if backup.step(step).map_err(JournalError::Query)? == StepResult::Done {
                break;
            }
            std::thread::sleep(PAUSE);
        }
    }
    // The copy took the journal's WAL mode; a backup is one self-contained file (the daemon turns WAL back on).
    target
        .pragma_update(None, "journal_mode", "DELETE")
        .map_err(JournalError::Query)?;
    let pages = target
        .pragma_query_value(None, "page_count", |row| row.get(0))
        .map_err(JournalError::Query)?;
    let (events, last_offset) = target
        .query_row(
            "SELECT count(*), coalesce(max(seq), 0) FROM events",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(JournalError::Query)?;
    target.close().map_err(|(_, e)| JournalError::Query(e))?;
    Ok(BackupReport {
        pages,
        events,
        last_offset,
    })
}

/// `<to>.partial`, in the same folder so that the final rename stays on one file system.
fn partial_path(to: &Path) -> PathBuf {
    let mut name = to.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}
