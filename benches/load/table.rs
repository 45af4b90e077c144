//! The run's summary: one Markdown table row per cell, read back from the JSON lines the cells appended.

use serde_json::Value;

/// Above this much CPU elsewhere (% of one core), a cell is reported as disturbed.
const OTHERS_LIMIT: f64 = 25.0;

const HEADER: &str = "| server | conn | symbols | acked/s | x bare | finished/s | pending at end | ack p50 | ack p99 \
| ack p99.9 | ack max | signal to order p50/p99 | signal to fill p50/p99 | RSS idle/peak/after | writes per fsync \
| server CPU | load CPU | cores busy | not 2xx |";

pub fn print(rows_file: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(rows_file)?;
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for row in rows.iter().filter(|r| r.get("fsync_ms").is_some()) {
        println!(
            "one 4 KiB write + fdatasync on the journal's disk: p50 {:.3} ms",
            row["fsync_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!();
    println!("{HEADER}");
    println!("|{}", "---|".repeat(HEADER.matches(" |").count()));
    let cells: Vec<&Value> = rows.iter().filter(|r| r.get("server").is_some()).collect();
    for row in &cells {
        let bare = cells.iter().find(|b| {
            b["server"] == "bare"
                && b["connections"] == row["connections"]
                && b["interval_ms"].is_null()
        });
        println!("{}", line(row, bare.copied()));
    }
    let disturbed: Vec<String> = cells
        .iter()
        .filter_map(|row| {
            let pct = others(row).filter(|p| *p > OTHERS_LIMIT)?;
            Some(format!("{}: {pct:.0} %", label(row)))
        })
        .collect();
    if !disturbed.is_empty() {
        println!();
        println!(
            "CPU went elsewhere during {} cell(s) (other processes, kernel threads; % of one core): {}",
            disturbed.len(),
            disturbed.join("; ")
        );
        println!("those figures are low by an unknown amount: repeat on a quiet machine (BUILD=0 skips the build)");
    }
    Ok(())
}

/// Busy CPU that was neither the server's nor the generator's, in % of one core: other processes, and kernel threads
/// working for the server (the journal's writeback, loopback softirqs: up to about 20 % here).
fn others(row: &Value) -> Option<f64> {
    let busy: f64 = row["cores_busy_pct"]
        .as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .sum();
    let ours = row["server_cpu_pct"].as_f64()? + row["load_cpu_pct"].as_f64()?;
    Some(busy - ours)
}

/// `sentinel 64 conn 100 sym`, `sentinel idle 100 sym`, `bare 64 conn`.
fn label(row: &Value) -> String {
    let server = row["server"].as_str().unwrap_or("?");
    match (server, row["interval_ms"].is_null()) {
        ("bare", _) => format!("bare {} conn", row["connections"]),
        (_, true) => format!(
            "{server} {} conn {} sym",
            row["connections"], row["symbols"]
        ),
        (_, false) => format!("{server} idle {} sym", row["symbols"]),
    }
}

fn line(row: &Value, bare: Option<&Value>) -> String {
    let f = |v: &Value| v.as_f64();
    let elapsed = f(&row["elapsed_s"]).unwrap_or(f64::NAN);
    let journal = &row["journal"];
    // Only a daemon cell sending back to back compares with the bare handler at its connection count.
    let ratio = match bare.and_then(|b| f(&b["ok_per_s"])) {
        Some(bare_rate) if row["server"] != "bare" && row["interval_ms"].is_null() => {
            f(&row["ok_per_s"]).map(|r| format!("{:.2}", r / bare_rate))
        }
        _ => None,
    };
    let finished = f(&journal["finished"]).map(|n| format!("{:.0}", n / elapsed));
    let micros = |key: &str| f(&row[key]).map(|us| format!("{:.2} ms", us / 1000.0));
    let mib = |key: &str| f(&row["rss_kib"][key]).map(|k| format!("{:.1}", k / 1024.0));
    let rss = match (mib("idle"), mib("peak"), mib("after")) {
        (None, None, None) => None,
        (a, b, c) => Some(format!("{}/{}/{} MiB", or_na(a), or_na(b), or_na(c))),
    };
    let not_ok: u64 = row["statuses"]
        .as_object()
        .map(|s| {
            s.iter()
                .filter(|(k, _)| !k.starts_with('2'))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
        + row["io_errors"].as_u64().unwrap_or(0);
    let percent = |key: &str| f(&row[key]).map(|p| format!("{p:.0} %"));
    let conn = match f(&row["interval_ms"]) {
        Some(ms) => format!("{} (idle: 1 per {ms} ms)", row["connections"]),
        None => row["connections"].to_string(),
    };
    let cols = [
        row["server"].as_str().map(String::from),
        Some(conn),
        Some(row["symbols"].to_string()).filter(|_| row["server"] != "bare"),
        f(&row["ok_per_s"]).map(|r| format!("{r:.0}")),
        ratio,
        finished,
        journal["pending_at_end"].as_u64().map(|n| n.to_string()),
        micros("p50_us"),
        micros("p99_us"),
        micros("p999_us"),
        micros("max_us"),
        stage(
            &row["daemon_latency"]["signal_to_order"],
            &journal["signal_to_order_ms"],
        ),
        stage(
            &row["daemon_latency"]["signal_to_fill"],
            &journal["signal_to_fill_ms"],
        ),
        rss,
        f(&row["writes_per_commit"]).map(|w| format!("{w:.1}")),
        percent("server_cpu_pct"),
        percent("load_cpu_pct"),
        row["cores_busy_pct"]
            .as_array()
            .filter(|c| !c.is_empty())
            .map(|cores| {
                let each: Vec<String> = cores
                    .iter()
                    .filter_map(|c| c.as_f64())
                    .map(|c| format!("{c:.0}"))
                    .collect();
                format!("{} %", each.join("/"))
            }),
        Some(not_ok.to_string()),
    ];
    let cols: Vec<String> = cols.into_iter().map(or_na).collect();
    format!("| {} |", cols.join(" | "))
}

/// The daemon's own histogram where it serves one (microseconds), else the journal's whole milliseconds.
fn stage(daemon: &Value, journal: &Value) -> Option<String> {
    if let (Some(p50), Some(p99)) = (daemon["p50"].as_f64(), daemon["p99"].as_f64()) {
        if daemon["count"].as_u64() > Some(0) {
            return Some(format!("{:.2}/{:.2} ms", p50 / 1000.0, p99 / 1000.0));
        }
    }
    let (p50, p99) = (journal["0.5"].as_i64()?, journal["0.99"].as_i64()?);
    Some(format!("{p50}/{p99} ms (journal)"))
}

fn or_na(v: Option<String>) -> String {
    v.unwrap_or_else(|| "n/a".to_string())
}
