//! One daemon per journal: an exclusive advisory lock on `<journal>.lock`, held for the daemon's life.
//!
//! Two daemons on one file would both write (SQLite serialises them, so nothing is corrupted) but each would act on
//! signals the other accepted and fill orders twice. The lock is the operating system's (`flock` on Unix, `LockFileEx`
//! on Windows), so it goes away with the process: a daemon killed with SIGKILL never blocks its restart, and there is
//! no stale lock to clean up.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{lock_path, JournalError};

/// Held while the daemon runs; dropping it releases the journal.
#[derive(Debug)]
pub struct JournalLock {
    // Only held: the lock lives as long as this open file.
    _file: File,
    path: PathBuf,
}

impl JournalLock {
    /// The lock file (`<journal>.lock`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the lock of the journal at `journal`, or says which process holds it. The holder's pid is written into the
/// lock file for that message (and for an operator with `cat`); the file itself is left in place when released,
/// because removing it could let a third process lock a file that a second one is about to open.
pub fn lock(journal: &Path) -> Result<JournalLock, JournalError> {
    let path = lock_path(journal);
    let failed = |source| JournalError::Lock {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(JournalError::Locked {
                pid: holder(&mut file),
                path: journal.to_path_buf(),
            })
        }
        Err(TryLockError::Error(e)) => return Err(failed(e)),
    }
    let write_pid = |file: &mut File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_data()
    };
    write_pid(&mut file).map_err(failed)?;
    Ok(JournalLock { _file: file, path })
}

/// The pid the holder wrote, if it has written it yet (it writes right after locking).
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_pid_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("sentinel.db");
        let first = lock(&journal).expect("a free journal locks");
        assert_eq!(first.path(), dir.path().join("sentinel.db.lock"));

        let refused = lock(&journal).expect_err("a second holder is refused");
        assert!(
            matches!(&refused, JournalError::Locked { pid: Some(pid), path }
                if *pid == std::process::id() && path == &journal),
            "{refused:?}"
        );
        let message = refused.to_string();
        assert_eq!(
            message,
            format!(
                "another sentinel (pid {}) is running on {}; stop it first",
                std::process::id(),
                journal.display()
            )
        );

        drop(first);
        let again = lock(&journal).expect("free once dropped");
        drop(again);
    }
}
