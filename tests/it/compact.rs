//! Compaction and vacuum (issue 17), through the real binary on a lake two replicas wrote, read
//! back by the `deltalake` package and DuckDB's delta extension.
//!
//! The lake: events of four past days, every one delivered to both replicas (a OnceHub retry
//! that a load balancer sent to the other one), so each event id is stored twice, in hundreds of
//! small files. After `compact`, each day of each table is one file and each event id one row.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::Utc;
use oncehub_bridge::commands::samples;
use serde_json::Value;

use crate::helpers::{Binary, SECRET, delta_read, duck};

/// Tables the sample events land in.
const EVENT_TABLES: [&str; 2] = ["bookings", "conversations"];

/// Sample events of `days` past days, `tags` sets per day, interleaved by day (so every flush
/// round cuts a file per table and day): (event id, body).
fn past_deliveries(prefix: &str, days: &[i64], tags: usize) -> Vec<(String, Vec<u8>)> {
    let per_day: Vec<Vec<Value>> = days
        .iter()
        .map(|d| {
            let at = Utc::now() - chrono::Duration::days(*d);
            (0..tags).flat_map(|t| samples::all_events(&format!("{prefix}d{d}t{t}"), at)).collect()
        })
        .collect();
    let longest = per_day.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| per_day.iter().filter_map(move |day| day.get(i)))
        .map(|e| (e["id"].as_str().unwrap().to_owned(), serde_json::to_vec(e).unwrap()))
        .collect()
}

async fn post_all(url: &str, deliveries: &[(String, Vec<u8>)]) -> BTreeSet<String> {
    let client = reqwest::Client::new();
    let secret = oncehub_bridge::secret::WebhookSecret::parse(SECRET).unwrap();
    let mut acked = BTreeSet::new();
    for (id, body) in deliveries {
        let sig = oncehub_bridge::oncehub::signature::sign(&secret, Utc::now().timestamp(), body);
        let sent = client.post(url).header("Oncehub-Signature", sig).body(body.clone()).send().await;
        if sent.is_ok_and(|r| r.status() == 200) {
            acked.insert(id.clone());
        }
    }
    acked
}

fn serve(data: &Path, lake: &str, extra: &[&str]) -> Binary {
    let mut args = vec!["--webhook-secret", SECRET, "--storage-url", lake, "--flush-interval", "50ms"];
    args.extend_from_slice(extra);
    Binary::serve(data, &args, &[])
}

/// Two replicas on one lake, each sent every delivery; stopped cleanly. The ids acknowledged.
async fn two_replica_lake(dir: &Path, lake: &str, deliveries: &[(String, Vec<u8>)]) -> BTreeSet<String> {
    let mut a = serve(&dir.join("a"), lake, &["--flush-max-rows", "3"]);
    let mut b = serve(&dir.join("b"), lake, &["--flush-max-rows", "3"]);
    let (url_a, url_b) = (a.url(), b.url());
    let (acked_a, acked_b) = tokio::join!(post_all(&url_a, deliveries), post_all(&url_b, deliveries));
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(b.terminate(Duration::from_secs(30)).success());
    assert_eq!(acked_a, acked_b, "both replicas acknowledged every delivery");
    acked_a
}

fn bridge(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Event id -> rows, over the event tables, from the `deltalake` package.
fn id_counts(read: &Value) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in EVENT_TABLES {
        for id in read[t]["ids"].as_array().unwrap() {
            *counts.entry(id.as_str().unwrap().to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// Data files per `dt` partition of `table`.
fn files_per_day(read: &Value, table: &str) -> BTreeMap<String, u64> {
    let days = read[table]["files_per_dt"].as_object().unwrap();
    days.iter().map(|(dt, n)| (dt.clone(), n.as_u64().unwrap())).collect()
}

fn total_files(read: &Value) -> u64 {
    EVENT_TABLES.iter().map(|t| read[*t]["files"].as_u64().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_turns_two_replicas_small_files_into_one_file_per_day_with_one_row_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake").display().to_string();
    let deliveries = past_deliveries("cx", &[2, 3, 4, 5], 10);
    let acked = two_replica_lake(dir.path(), &lake, &deliveries).await;
    let before = delta_read(&lake, &EVENT_TABLES, &[], &[]);
    let counts = id_counts(&before);
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), acked);
    assert!(counts.values().all(|n| *n == 2), "each event stored once per replica");
    let files_before = total_files(&before);
    assert!(files_before >= 200, "many small files: {files_before}");

    // A reader polls while compaction runs: every event id is always there, and never in both
    // the removed files and their replacement (which would read as three rows).
    let watch = Watch::start(dir.path(), &lake);
    let out = bridge(&["compact", "--storage-url", &lake], &[]);
    let seen = watch.stop();
    assert!(out.status.success(), "{}\n{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    let report = stdout(&out);
    assert_eq!(report.matches(" compacted (version ").count(), 8, "one line per table and day:\n{report}");
    for read in &seen {
        assert_eq!(read["distinct"].as_u64(), Some(acked.len() as u64), "a reader missed rows: {read}");
        assert!(read["max"].as_u64().is_some_and(|m| m <= 2), "a reader saw old and new files at once: {read}");
    }
    let partly = seen
        .iter()
        .filter(|r| r["rows"].as_u64().is_some_and(|n| n > acked.len() as u64 && n < 2 * acked.len() as u64));
    eprintln!("{} reads during compaction, {} of a partly compacted lake", seen.len(), partly.count());

    let after = delta_read(&lake, &EVENT_TABLES, &[], &[]);
    let counts = id_counts(&after);
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), acked);
    assert!(counts.values().all(|n| *n == 1), "one row per event id");
    for t in EVENT_TABLES {
        let days = files_per_day(&after, t);
        assert_eq!(days.len(), 4, "{t}: {days:?}");
        assert!(days.values().all(|n| *n == 1), "{t}: one file per day: {days:?}");
        let d = duck(&format!("SELECT count(*), count(DISTINCT event_id) FROM delta_scan('{lake}/{t}')"));
        let rows = after[t]["rows"].as_i64().unwrap();
        assert_eq!(
            (d.rows[0][0].as_i64().unwrap(), d.rows[0][1].as_i64().unwrap()),
            (rows, rows),
            "{t}: DuckDB agrees"
        );
    }
    // Rows are sorted by event time inside each compacted file.
    let file = walk(Path::new(&lake).join("bookings").as_path())
        .into_iter()
        .find(|p| p.to_string_lossy().contains("part-compacted-"))
        .unwrap();
    let d = duck(&format!(
        "SELECT count(*) FROM (SELECT event_time < lag(event_time) OVER () AS back FROM read_parquet('{}')) WHERE back",
        file.display()
    ));
    assert_eq!(d.rows[0][0].as_i64(), Some(0), "rows in event_time order");

    // Nothing is left to compact: a second run changes nothing.
    let again = bridge(&["compact", "--storage-url", &lake], &[]);
    assert!(again.status.success());
    assert!(stdout(&again).contains("nothing to compact"), "{}", stdout(&again));
    assert_eq!(delta_read(&lake, &["bookings"], &[], &[])["bookings"]["version"], after["bookings"]["version"]);
}

/// `tests/delta_watch.py` reading the event tables in a loop.
struct Watch {
    child: std::process::Child,
    stop_file: std::path::PathBuf,
}

impl Watch {
    fn start(dir: &Path, lake: &str) -> Watch {
        let stop_file = dir.join("watch.stop");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delta_watch.py");
        let child = Command::new(crate::helpers::tool("venv/bin/python"))
            .arg(script)
            .args([lake, &EVENT_TABLES.join(","), &stop_file.display().to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the reader starts");
        // Its first read, before the compaction starts.
        std::thread::sleep(Duration::from_millis(1500));
        Watch { child, stop_file }
    }

    /// Every read it made.
    fn stop(self) -> Vec<Value> {
        std::fs::write(&self.stop_file, b"").unwrap();
        let out = self.child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
