//! `sentinel journal backup`: a copy of a running daemon's journal that holds what the daemon had, and that a daemon
//! started on it carries on from.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{free_config, Daemon};
use rusqlite::{Connection, OpenFlags};
use serde_json::json;

fn backup(journal: &Path, to: &Path, force: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sentinel"));
    command
        .arg("journal")
        .arg("--path")
        .arg(journal)
        .arg("backup")
        .arg(to);
    if force {
        command.arg("--force");
    }
    command.output().expect("the binary runs")
}

/// Every event of a journal file: (offset, kind, signal id, data), oldest first.
fn events(path: &Path) -> Vec<(i64, String, Option<String>, String)> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut query = conn
        .prepare("SELECT seq, kind, signal_id, data FROM events ORDER BY seq")
        .unwrap();
    let rows = query
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

#[actix_web::test]
async fn a_backup_taken_while_the_daemon_runs_holds_its_events_and_position() {
    let config = free_config();
    let daemon = Daemon::start(&config);
    let c = daemon.client();
    let mut ids = Vec::new();
    for (n, action) in ["open_long", "buy", "buy"].iter().enumerate() {
        let record = c
            .act(
                json!({"symbol":"BTCUSDT","action":action,"position_size":"0.1",
                        "price":"40000","id":format!("backup-{n}")}),
            )
            .await;
        ids.push(record["signal"]["id"].as_str().unwrap().to_string());
    }
    let position = c.position("BTCUSDT").await.expect("a position is open");

    let copies = tempfile::tempdir().unwrap();
    let to = copies.path().join("sentinel.db");
    let out = backup(&daemon.journal_path(), &to, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let copied = events(&to);
    let last = copied.last().expect("the backup holds events").0;
    assert!(
        stdout.contains(&format!("{} events, last offset {last}", copied.len())),
        "{stdout}"
    );
    for id in &ids {
        assert!(
            copied.iter().any(|e| e.2.as_deref() == Some(id.as_str())),
            "{id} is not in the backup"
        );
    }
    // The daemon may write after the copy, never before it: the backup is what the journal held up to its offset.
    let live: Vec<_> = events(&daemon.journal_path())
        .into_iter()
        .take_while(|e| e.0 <= last)
        .collect();
    assert_eq!(copied, live);

    // Restore: a daemon on the copy is where the original was.
    drop(daemon);
    let restored = Daemon::start_at(copies, &config);
    let c = restored.client();
    assert_eq!(c.position("BTCUSDT").await, Some(position));
    let signals = c.get("/api/signals?limit=1000").await;
    for id in &ids {
        assert!(
            signals["signals"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["signal"]["id"] == id.as_str() && s["status"] != "pending"),
            "{id} is not done after the restore: {signals}"
        );
    }
}

#[actix_web::test]
async fn a_backup_does_not_overwrite_a_file_unless_forced() {
    let daemon = Daemon::start(&free_config());
    daemon
        .client()
        .act(json!({"symbol":"BTCUSDT","action":"open_long","position_size":"0.1","price":"40000"}))
        .await;
    let copies = tempfile::tempdir().unwrap();
    let to = copies.path().join("kept.db");
    std::fs::write(&to, "an earlier backup").unwrap();

    let refused = backup(&daemon.journal_path(), &to, false);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("already exists: pass --force"), "{stderr}");
    assert_eq!(std::fs::read(&to).unwrap(), b"an earlier backup");

    let forced = backup(&daemon.journal_path(), &to, true);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert!(!events(&to).is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(copies.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("kept.db")]);
}
