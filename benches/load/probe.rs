//! What the run reads about the server besides its answers: memory and CPU time from /proc, the journal's commit
//! counters from `GET /api/security`, the daemon's latency histograms from `GET /api/latency` where it serves them,
//! and how long one fsync takes on the journal's disk.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use crate::client;

/// A `/proc/<pid>/status` figure in KiB: `VmRSS` now, `VmHWM` the peak since the process started.
pub fn memory_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User plus system CPU time of a process (`self` or a pid), all threads, in seconds.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name, the state is the first field, utime the 12th and stime the 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks = fields.next()?.parse::<f64>().ok()? + fields.next()?.parse::<f64>().ok()?;
    // The kernel counts in USER_HZ, 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

/// CPU seconds of each thread of a process, by `<thread name>/<tid>` (names are cut to 15 bytes by the kernel).
pub fn thread_cpu_seconds(pid: &str) -> Vec<(String, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut threads: Vec<(String, f64)> = tasks
        .filter_map(|task| {
            let tid = task.ok()?.file_name().into_string().ok()?;
            let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
            let secs = cpu_seconds(&format!("{pid}/task/{tid}"))?;
            Some((format!("{}/{tid}", name.trim()), secs))
        })
        .collect();
    threads.sort_by(|a, b| a.0.cmp(&b.0));
    threads
}

/// Busy and total jiffies of each CPU (`cpu0`, `cpu1`, ...) from /proc/stat: with the server's and the generator's
/// own CPU time, it shows how much of their cores other processes took during a cell.
pub fn core_jiffies() -> Vec<(u64, u64)> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let n: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal ...: idle and iowait are the idle time.
            let total: u64 = n.iter().take(8).sum();
            let idle = n.get(3).copied().unwrap_or(0) + n.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// Each core's busy percentage between two `core_jiffies` readings.
pub fn busy_percent(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|((b0, t0), (b1, t1))| 100.0 * (b1 - b0) as f64 / (t1 - t0).max(1) as f64)
        .collect()
}

/// The journal's counters so far, from `/api/security`: commits (each one fsync of the write-ahead log), writes,
/// and, where the daemon reports it, the microseconds spent committing.
pub async fn journal_counters(addr: SocketAddr, token: &str) -> Option<JournalCounters> {
    let (status, body) = client::get(addr, "/api/security", token).await.ok()?;
    let security: Value = serde_json::from_slice(&body)
        .ok()
        .filter(|_| status == 200)?;
    let journal = security.get("journal")?;
    Some(JournalCounters {
        commits: journal.get("commits")?.as_u64()?,
        writes: journal.get("writes")?.as_u64()?,
        commit_micros: journal.get("commit_micros_total").and_then(Value::as_u64),
    })
}

#[derive(Clone, Copy)]
pub struct JournalCounters {
    pub commits: u64,
    pub writes: u64,
    pub commit_micros: Option<u64>,
}

impl JournalCounters {
    /// Writes per commit, and the mean commit in milliseconds, between `self` and a later reading.
    pub fn per_commit(&self, later: &JournalCounters) -> (Option<f64>, Option<f64>) {
        let commits = later.commits.saturating_sub(self.commits);
        if commits == 0 {
            return (None, None);
        }
        let writes = later.writes.saturating_sub(self.writes) as f64 / commits as f64;
        let micros = self
            .commit_micros
            .zip(later.commit_micros)
            .map(|(a, b)| b.saturating_sub(a) as f64 / commits as f64 / 1000.0);
        (Some(writes), micros)
    }
}

/// The daemon's own latency histograms (`GET /api/latency`: ack, signal_to_order and signal_to_fill, each with count,
/// p50, p99, p999 and max in microseconds, since start): `null` where the daemon does not serve them.
pub async fn daemon_latency(addr: SocketAddr, token: &str) -> Value {
    match client::get(addr, "/api/latency", token).await {
        Ok((200, body)) => serde_json::from_slice(&body).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The median time of a 4 KiB write plus `fdatasync` in `dir`, over 200 rounds, in milliseconds.
pub fn fsync_millis(dir: &Path) -> std::io::Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file = File::create(&path)?;
    let block = [0u8; 4096];
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    std::fs::remove_file(&path)?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
