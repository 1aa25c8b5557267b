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

    // Rows were dropped, so the OPTIMIZE commit says its data changed.
    let entry = last_log_entry(&Path::new(&lake).join("bookings"));
    assert!(entry.contains(r#""operation":"OPTIMIZE""#) && entry.contains(r#""remove":"#), "{entry}");
    assert!(entry.contains(r#""dataChange":true"#) && !entry.contains(r#""dataChange":false"#));

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

/// The newest `_delta_log/<version>.json` of a table.
fn last_log_entry(table: &Path) -> String {
    let newest = walk(&table.join("_delta_log"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max()
        .unwrap();
    std::fs::read_to_string(newest).unwrap()
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

/// One replica's lake of `days` past days in small files; stopped cleanly. The ids acknowledged.
async fn one_replica_lake(
    data: &Path,
    lake: &str,
    extra: &[&str],
    deliveries: &[(String, Vec<u8>)],
) -> BTreeSet<String> {
    let mut args = vec!["--flush-max-rows", "3"];
    args.extend_from_slice(extra);
    let mut a = serve(data, lake, &args);
    let acked = post_all(&a.url(), deliveries).await;
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert_eq!(acked.len(), deliveries.len());
    acked
}

fn files_named(dir: &Path, part: &str) -> usize {
    walk(dir).iter().filter(|p| p.to_string_lossy().contains(part)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_killed_before_its_commit_changes_nothing_and_vacuum_keeps_the_retention_window() {
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let lake = lake_dir.display().to_string();
    let acked = one_replica_lake(&dir.path().join("a"), &lake, &[], &past_deliveries("kx", &[2, 3], 3)).await;
    let before = delta_read(&lake, &EVENT_TABLES, &[], &[]);
    let files_before = total_files(&before);

    // SIGKILL once the first partition's compacted file is in the store, before its commit.
    let killed =
        bridge(&["compact", "--storage-url", &lake], &[("ONCEHUB_BRIDGE_TEST_CRASH_AT", "compact-before-commit")]);
    assert!(!killed.status.success(), "the compaction was killed");
    let unchanged = delta_read(&lake, &EVENT_TABLES, &[], &[]);
    for t in EVENT_TABLES {
        assert_eq!(unchanged[t]["version"], before[t]["version"], "{t}: no commit");
        assert_eq!(unchanged[t]["files"], before[t]["files"], "{t}");
    }
    assert_eq!(id_counts(&unchanged), id_counts(&before));
    assert_eq!(files_named(&lake_dir, "part-compacted-"), 1, "the killed run left its file, uncommitted");

    let out = bridge(&["compact", "--storage-url", &lake], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = delta_read(&lake, &EVENT_TABLES, &[], &[]);
    assert_eq!(id_counts(&after).keys().cloned().collect::<BTreeSet<_>>(), acked);
    assert!(id_counts(&after).values().all(|n| *n == 1));
    assert_eq!(total_files(&after), 4, "one file per table and day");
    // The same rows in fewer files: `dataChange=false`, so streaming readers skip the commit.
    let entry = last_log_entry(&lake_dir.join("bookings"));
    assert!(entry.contains(r#""operation":"OPTIMIZE""#), "{entry}");
    assert!(entry.contains(r#""dataChange":false"#) && !entry.contains(r#""dataChange":true"#), "{entry}");
    let on_disk = |dir: &Path| {
        walk(dir)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet") && !p.to_string_lossy().contains("_delta_log"))
            .count()
    };
    let data_files = on_disk(&lake_dir);

    // Inside the window (1h) nothing is deleted: the removed files and the orphan are recent.
    let kept = bridge(&["vacuum", "--storage-url", &lake], &[]);
    assert!(kept.status.success(), "{}", String::from_utf8_lossy(&kept.stderr));
    assert!(stdout(&kept).contains("bookings: 0 files"), "{}", stdout(&kept));
    assert_eq!(on_disk(&lake_dir), data_files);
    // A short window needs saying so.
    let refused = bridge(&["vacuum", "--storage-url", &lake, "--vacuum-retention", "1s"], &[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-short-retention"));

    // Past the window: every removed file and the orphan go, the live ones stay.
    std::thread::sleep(Duration::from_secs(2));
    let dry = bridge(
        &["vacuum", "--storage-url", &lake, "--vacuum-retention", "1s", "--allow-short-retention", "--dry-run"],
        &[],
    );
    assert!(stdout(&dry).contains("would be deleted"), "{}", stdout(&dry));
    assert_eq!(on_disk(&lake_dir), data_files, "a dry run deletes nothing");
    let swept = bridge(&["vacuum", "--storage-url", &lake, "--vacuum-retention", "1s", "--allow-short-retention"], &[]);
    assert!(swept.status.success(), "{}", String::from_utf8_lossy(&swept.stderr));
    assert_eq!(on_disk(&lake_dir), 4, "only the four live files are left:\n{}", stdout(&swept));
    assert_eq!(data_files - 4, files_before as usize + 1, "vacuum deleted every removed file and the orphan");
    let read = delta_read(&lake, &EVENT_TABLES, &[], &[]);
    assert_eq!(id_counts(&read), id_counts(&after), "the table reads the same");
    for t in EVENT_TABLES {
        let d = duck(&format!("SELECT count(*) FROM delta_scan('{lake}/{t}')"));
        assert_eq!(d.rows[0][0].as_i64(), read[t]["rows"].as_i64(), "{t}: DuckDB reads it after the vacuum");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactions_racing_live_commits_and_each_other_lose_no_row_and_double_none() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake").display().to_string();
    let first = one_replica_lake(&dir.path().join("a"), &lake, &[], &past_deliveries("rx", &[2, 3], 3)).await;
    // The replica runs again and takes late events into the same closed days while two
    // compactions of those days run at once.
    let mut a = serve(&dir.path().join("a"), &lake, &["--flush-max-rows", "2"]);
    let late = past_deliveries("late", &[2, 3], 2);
    let url = a.url();
    let posting = tokio::spawn(async move { post_all(&url, &late).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = |n: u8| {
        let lake = lake.clone();
        std::thread::spawn(move || (n, bridge(&["compact", "--storage-url", &lake], &[])))
    };
    let (one, two) = (run(1), run(2));
    let outs = [one.join().unwrap(), two.join().unwrap()];
    let late_acked = posting.await.unwrap();
    assert!(a.terminate(Duration::from_secs(30)).success());
    let mut lines = String::new();
    for (n, out) in &outs {
        assert!(out.status.success(), "compaction {n}: {}\n{}", stdout(out), String::from_utf8_lossy(&out.stderr));
        lines.push_str(&stdout(out));
    }
    eprintln!("{lines}");
    assert!(lines.contains(" compacted (version "), "{lines}");

    let read = delta_read(&lake, &EVENT_TABLES, &[], &[]);
    let counts = id_counts(&read);
    let expected: BTreeSet<String> = first.union(&late_acked).cloned().collect();
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected, "every acknowledged event is there");
    assert!(counts.values().all(|n| *n == 1), "no row twice");
    for t in EVENT_TABLES {
        assert_eq!(read[t]["files"], read[t]["distinct_files"], "{t}");
    }
    // The late files are compacted on the next run.
    let out = bridge(&["compact", "--storage-url", &lake], &[]);
    assert!(out.status.success());
    let read = delta_read(&lake, &EVENT_TABLES, &[], &[]);
    assert_eq!(total_files(&read), 4);
    assert_eq!(id_counts(&read).len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_compacts_closed_days_by_itself_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake").display().to_string();
    let args = ["--flush-max-rows", "3", "--compact-after", "1s", "--maintenance-interval", "1s"];
    let mut a = serve(&dir.path().join("a"), &lake, &args);
    let acked = post_all(&a.url(), &past_deliveries("ax", &[3], 2)).await;
    let mut compacted = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let read = delta_read(&lake, &EVENT_TABLES, &[], &[]);
        if EVENT_TABLES.iter().all(|t| read[*t]["files"] == 1) && id_counts(&read).len() == acked.len() {
            compacted = true;
            break;
        }
    }
    assert!(compacted, "the closed day became one file per table");
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", a.port)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("oncehub_bridge_partitions_compacted_total{table=\"bookings\"} ")),
        "{metrics}"
    );
    assert!(metrics.contains("oncehub_bridge_compaction_files_removed_total"));
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(a.stderr().contains("compacted (version"), "the compaction is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_layout_is_compacted_by_writing_first_and_deleting_after() {
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let lake = lake_dir.display().to_string();
    let acked = one_replica_lake(
        &dir.path().join("a"),
        &lake,
        &["--table-format", "parquet"],
        &past_deliveries("px", &[2, 3], 2),
    )
    .await;
    let glob = |t: &str| format!("{lake}/{t}/dt=*/*.parquet");
    let before: i64 = EVENT_TABLES
        .iter()
        .map(|t| duck(&format!("SELECT count(*) FROM read_parquet('{}')", glob(t))).rows[0][0].as_i64().unwrap())
        .sum();
    assert_eq!(before as usize, acked.len());
    let out = bridge(&["compact", "--storage-url", &lake, "--table-format", "parquet"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = stdout(&out);
    assert_eq!(lines.lines().filter(|l| l.contains(" dt=") && l.contains(" compacted: ")).count(), 4, "{lines}");
    for t in EVENT_TABLES {
        let d = duck(&format!(
            "SELECT count(*), count(DISTINCT event_id), count(DISTINCT filename) FROM read_parquet('{}', filename = true) WHERE NOT filename LIKE '%part-empty-%'",
            glob(t)
        ));
        assert_eq!(d.rows[0][0], d.rows[0][1], "{t}: one row per event id");
        assert_eq!(d.rows[0][2].as_i64(), Some(2), "{t}: one file per day");
    }
    assert!(lake_dir.join("bookings/dt=1970-01-01").is_dir(), "the zero-row file that keeps globs working stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_and_vacuum_work_on_s3_and_storage_errors_name_no_credential() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = crate::helpers::S3Server::start(&dir.path().join("s3"));
    let env = crate::helpers::S3Server::env(s3.port);
    let data = dir.path().join("a");
    let root = "s3://lake/oncehub";
    let args = ["--webhook-secret", SECRET, "--storage-url", root, "--flush-interval", "50ms", "--flush-max-rows", "3"];
    let mut a = Binary::serve(&data, &args, &env);
    let acked = post_all(&a.url(), &past_deliveries("sx", &[2, 3], 2)).await;
    assert!(a.terminate(Duration::from_secs(30)).success());
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let out = bridge(&["compact", "--storage-url", root], &envs);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = s3.delta_read(root, &EVENT_TABLES, &[]);
    assert_eq!(id_counts(&read).keys().cloned().collect::<BTreeSet<_>>(), acked);
    assert!(id_counts(&read).values().all(|n| *n == 1));
    assert_eq!(total_files(&read), 4);
    for t in EVENT_TABLES {
        let d = s3.duck(&format!("SELECT count(*) FROM delta_scan('{root}/{t}')"));
        assert_eq!(d.rows[0][0].as_i64(), read[t]["rows"].as_i64(), "{t}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let swept =
        bridge(&["vacuum", "--storage-url", root, "--vacuum-retention", "1s", "--allow-short-retention"], &envs);
    assert!(swept.status.success(), "{}", String::from_utf8_lossy(&swept.stderr));
    let left = walk(&s3.root.join("lake/oncehub/bookings"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet") && !p.to_string_lossy().contains("_delta_log"))
        .count();
    assert_eq!(left, 2, "only the two live bookings files are left");
    assert_eq!(s3.delta_read(root, &EVENT_TABLES, &[])["bookings"]["rows"], read["bookings"]["rows"]);

    // The store down: a clear error, non-zero, no credential in it.
    s3.stop();
    let down = bridge(&["compact", "--storage-url", root], &envs);
    assert!(!down.status.success());
    let said = format!("{}{}", stdout(&down), String::from_utf8_lossy(&down.stderr));
    assert!(said.contains("cannot list the partitions of"), "{said}");
    assert!(!said.contains(crate::helpers::S3_SECRET), "{said}");
}

#[test]
fn compact_on_a_lake_without_tables_has_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake").display().to_string();
    std::fs::create_dir_all(&lake).unwrap();
    let out = bridge(&["compact", "--storage-url", &lake], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("nothing to compact"), "{}", stdout(&out));
    let out = bridge(&["vacuum", "--storage-url", &lake], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("bookings: no delta table yet"), "{}", stdout(&out));
}
