//! Delta Lake tables (issue 16), read back by code we did not write: the Python `deltalake`
//! package (delta-rs) and DuckDB's delta extension. Local files and a real S3-compatible server
//! (s3s-fs, which enforces the create-only PUT every commit relies on); SIGKILL at the two points
//! where a crash leaves a file's commit uncertain; two replicas committing to one bucket at once.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use oncehub_bridge::commands::samples;
use serde_json::{Value, json};

use crate::helpers::{Binary, S3Server, SECRET, TABLES, app_id, delta_read, duck, send_test_events, test_event_counts};

/// `samples::all_events` for each tag: (event id, body).
fn deliveries(tags: &[String]) -> Vec<(String, Vec<u8>)> {
    tags.iter()
        .flat_map(|t| samples::all_events(t, Utc::now()))
        .map(|e| (e["id"].as_str().unwrap().to_owned(), serde_json::to_vec(&e).unwrap()))
        .collect()
}

/// Posts every delivery; the ids answered 200.
async fn post_all(url: &str, deliveries: &[(String, Vec<u8>)]) -> BTreeSet<String> {
    let client = reqwest::Client::new();
    let mut acked = BTreeSet::new();
    for (id, body) in deliveries {
        let sig = oncehub_bridge::oncehub::signature::sign(
            &oncehub_bridge::secret::WebhookSecret::parse(SECRET).unwrap(),
            Utc::now().timestamp(),
            body,
        );
        let sent = client.post(url).header("Oncehub-Signature", sig).body(body.clone()).send().await;
        if sent.is_ok_and(|r| r.status() == 200) {
            acked.insert(id.clone());
        }
    }
    acked
}

/// Every event id in the tables, and a check that no table references a file twice.
fn ids_once(read: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    for t in TABLES {
        let table = &read[t];
        assert_eq!(table["files"], table["distinct_files"], "{t}: a file is referenced twice");
        ids.extend(table["ids"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_owned()));
    }
    ids.sort();
    ids
}

fn serve_local(data: &Path, extra: &[&str], envs: &[(&str, String)]) -> Binary {
    let mut args = vec!["--webhook-secret", SECRET];
    if !extra.contains(&"--flush-interval") {
        args.extend(["--flush-interval", "400ms"]);
    }
    args.extend_from_slice(extra);
    Binary::serve(data, &args, envs)
}

/// Row counts per table from DuckDB's `delta_scan`, as `[(table, rows, distinct ids)]`.
fn duck_counts(root: &str, run: impl Fn(&str) -> crate::helpers::Duck) -> Vec<(String, i64, i64)> {
    TABLES
        .iter()
        .map(|t| {
            let d = run(&format!("SELECT count(*), count(DISTINCT event_id) FROM delta_scan('{root}/{t}')"));
            (t.to_string(), d.rows[0][0].as_i64().unwrap(), d.rows[0][1].as_i64().unwrap())
        })
        .collect()
}

fn delta_counts(read: &Value) -> Vec<(String, i64, i64)> {
    TABLES
        .iter()
        .map(|t| {
            let ids = read[t]["ids"].as_array().unwrap();
            let distinct: BTreeSet<_> = ids.iter().map(|i| i.as_str().unwrap()).collect();
            (t.to_string(), read[t]["rows"].as_i64().unwrap(), distinct.len() as i64)
        })
        .collect()
}

/// What both readers must see of every table: `dt` partitions, the types of `schemas/`.
fn assert_table_shapes(read: &Value) {
    for t in TABLES {
        let table = &read[t];
        assert_eq!(table["partition_columns"], json!(["dt"]), "{t}");
        assert_eq!(table["schema"]["dt"], "date32[day]", "{t}");
        assert_eq!(table["schema"]["received_at"], "timestamp[us, tz=UTC]", "{t}");
        assert_eq!(table["schema"]["event_id"], "string", "{t}");
    }
    assert_eq!(read["bookings"]["schema"]["starting_time"], "timestamp[us, tz=UTC]");
    assert_eq!(read["bookings"]["schema"]["duration_minutes"], "int64");
    assert_eq!(read["bookings"]["schema"]["in_trash"], "bool");
    assert_eq!(read["dead_letter"]["schema"]["raw_body"], "binary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_serve_writes_delta_tables_that_deltalake_and_duckdb_read_alike() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut bin = Binary::serve(&data, &["--flush-interval", "400ms"], &[]);
    let out = send_test_events(&bin.url(), &data);
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let (_, rows) = test_event_counts();
    assert_eq!(out.matches("-> 200 OK").count(), rows + 1, "{out}");

    let lake = data.join("lake");
    let root = lake.display().to_string();
    let app = app_id(&data);
    let read = delta_read(&root, &TABLES, std::slice::from_ref(&app), &[]);
    assert_table_shapes(&read);
    let ids = ids_once(&read);
    assert_eq!(ids.len(), rows, "every row once: {read}");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), rows, "no event twice");
    assert_eq!(duck_counts(&root, duck), delta_counts(&read), "DuckDB's delta_scan and deltalake agree");
    for t in TABLES {
        assert!(read[t]["rows"].as_i64().unwrap() > 0, "{t} has rows in the full story");
        // The marker of the instance that wrote the table: its highest spool sequence or above.
        assert!(read[t]["txn"][&app].as_i64().is_some_and(|v| v > 0), "{t}: {}", read[t]["txn"]);
        assert!(lake.join(t).join("_delta_log/00000000000000000000.json").is_file());
    }
    // The Delta types are what DuckDB sees too (a DATE partition, UTC timestamps).
    let d = duck(&format!("SELECT dt, received_at, starting_time FROM delta_scan('{root}/bookings') LIMIT 1"));
    assert_eq!((d.type_of("dt"), d.type_of("received_at")), ("DATE", "TIMESTAMP WITH TIME ZONE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_rows_is_an_empty_table_with_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut bin = serve_local(&data, &[], &[]);
    let is_booking = |body: &[u8]| {
        let v: Value = serde_json::from_slice(body).unwrap();
        v["type"].as_str().is_some_and(|t| t.starts_with("booking."))
    };
    let one: Vec<_> = deliveries(&["empty".into()]).into_iter().filter(|(_, b)| is_booking(b)).take(1).collect();
    assert_eq!(post_all(&bin.url(), &one).await.len(), 1);
    assert!(bin.terminate(Duration::from_secs(30)).success());

    let root = data.join("lake").display().to_string();
    let read = delta_read(&root, &TABLES, &[], &[]);
    assert_table_shapes(&read);
    assert_eq!(read["bookings"]["rows"], 1);
    for t in ["conversations", "other_events", "dead_letter", "contacts"] {
        assert_eq!((&read[t]["rows"], &read[t]["files"]), (&json!(0), &json!(0)), "{t}");
        let d = duck(&format!("SELECT * FROM delta_scan('{root}/{t}')"));
        assert!(d.rows.is_empty(), "{t}");
        assert!(
            d.columns.iter().any(|c| c == "event_id") && d.columns.iter().any(|c| c == "dt"),
            "{t}: {:?}",
            d.columns
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_tables_on_s3_read_back_with_both_readers() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    let data = dir.path().join("a");
    let args = ["--storage-url", "s3://lake/oncehub", "--flush-interval", "400ms"];
    let mut bin = Binary::serve(&data, &args, &S3Server::env(s3.port));
    let out = send_test_events(&bin.url(), &data);
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let (_, rows) = test_event_counts();
    assert_eq!(out.matches("-> 200 OK").count(), rows + 1, "{out}");

    let read = s3.delta_read("s3://lake/oncehub", &TABLES, &[app_id(&data)]);
    assert_table_shapes(&read);
    assert_eq!(ids_once(&read).len(), rows);
    assert_eq!(duck_counts("s3://lake/oncehub", |sql| s3.duck(sql)), delta_counts(&read));
    assert!(s3.root.join("lake/oncehub/bookings/_delta_log/00000000000000000001.json").is_file());
}

/// SIGKILL at `point` (through the test hook) on the first run, a clean run after it: every
/// acknowledged event is in the tables exactly once, and no file is referenced twice. With
/// `compact`, the lake holds files of the same days before, and `compact` runs while the
/// service is down (so a committed file the spool still lists may be gone from the table).
async fn sigkill_at(point: &str, compact: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lake = data.join("lake").display().to_string();
    let earlier = deliveries(&["before-a".into()]);
    if compact {
        let mut bin = serve_local(&data, &["--flush-max-rows", "5"], &[]);
        assert_eq!(post_all(&bin.url(), &earlier).await.len(), earlier.len());
        assert!(bin.terminate(Duration::from_secs(30)).success());
    }
    let crash = [("ONCEHUB_BRIDGE_TEST_CRASH_AT", point.to_owned())];
    let mut bin = serve_local(&data, &["--flush-max-rows", "9", "--flush-interval", "1h"], &crash);
    let sent = deliveries(&["crash-a".into(), "crash-b".into()]);
    let acked = post_all(&bin.url(), &sent).await;
    assert!(acked.len() >= 9, "the first file was cut before the crash: {}", acked.len());
    let status = bin.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "killed at {point}: {status:?}");
    if compact {
        let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
            .args(["compact", "--storage-url", &lake])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(" compacted (version "));
    }

    let mut bin = serve_local(&data, &[], &[]);
    // Deliveries refused during the crash are sent again, as OnceHub retries them.
    let retried = post_all(&bin.url(), &sent).await;
    assert_eq!(retried.len(), sent.len(), "every delivery answered 200 (or duplicate) after the restart");
    assert!(bin.terminate(Duration::from_secs(30)).success());

    let read = delta_read(&lake, &TABLES, &[app_id(&data)], &[]);
    let ids = ids_once(&read);
    let all: Vec<String> = sent
        .iter()
        .chain(if compact { earlier.iter() } else { [].iter() })
        .map(|(id, _)| id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(ids, all, "every event exactly once after a SIGKILL at {point}");
    assert!(acked.iter().all(|id| ids.binary_search(id).is_ok()));
    bin.stderr()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_between_upload_and_commit_commits_the_file_once_after_restart() {
    let log = sigkill_at("after-upload", false).await;
    assert!(log.contains(r#""existed":true"#), "the replay found the uploaded file: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_between_commit_and_checkpoint_adds_nothing_twice() {
    let log = sigkill_at("after-commit", false).await;
    assert!(log.contains("are in the delta table already"), "the restart found the committed files: {log}");
}

/// The committed file the spool still lists was compacted into another while the service was
/// down: it is not in the table any more, and must not come back (its rows are in the new file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_committed_before_a_sigkill_and_compacted_before_the_restart_is_not_added_again() {
    let log = sigkill_at("after-commit", true).await;
    assert!(log.contains("were committed and compacted since"), "the restart read the log for it: {log}");
}

/// Two replicas on one lake. Local files, whose create-only write (a hard link) is atomic, as on
/// S3: s3s-fs checks for the object and then writes it, so two writers can both "create" the same
/// log entry there (the bridge reads each commit back and makes a replaced one again, see
/// `lake::delta::verify`, but a check-then-write store can still lose one in a narrow window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_commit_to_one_lake_under_load_and_nothing_is_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake_arg = lake.display().to_string();
    let args = ["--storage-url", &lake_arg, "--flush-max-rows", "5", "--commit-interval", "100ms"];
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = serve_local(&a_dir, &args, &[]);
    let mut b = serve_local(&b_dir, &args, &[]);
    let tags = |p: &str| (0..16).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    let (sent_a, sent_b) = (deliveries(&tags("ra")), deliveries(&tags("rb")));
    let (url_a, url_b) = (a.url(), b.url());
    let (acked_a, acked_b) = tokio::join!(post_all(&url_a, &sent_a), post_all(&url_b, &sent_b));
    assert_eq!((acked_a.len(), acked_b.len()), (sent_a.len(), sent_b.len()));
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(b.terminate(Duration::from_secs(30)).success());

    let apps = [app_id(&a_dir), app_id(&b_dir)];
    let read = delta_read(&lake_arg, &TABLES, &apps, &[]);
    let ids = ids_once(&read);
    let expected: Vec<String> = acked_a.union(&acked_b).cloned().collect();
    assert_eq!(ids, expected, "every acknowledged event of both replicas, once");
    let bookings = &read["bookings"];
    for app in &apps {
        assert!(bookings["txn"][app].as_i64().is_some(), "both replicas committed: {}", bookings["txn"]);
    }
    let log = format!("{}{}", a.stderr(), b.stderr());
    let commits = log.matches("committed to the delta table").count();
    assert!(commits >= 20, "several commits per replica: {commits}");
    eprintln!("two replicas: {commits} commits, bookings at version {}", bookings["version"]);
    // More than ten versions: the kernel's checkpoint and its `_last_checkpoint` pointer are there.
    assert!(bookings["version"].as_i64().unwrap() >= 10, "{bookings}");
    assert!(lake.join("bookings/_delta_log/_last_checkpoint").is_file());
}

/// Rewrites the schema in the metadata action of `table`'s first log entry (a table no file was
/// added to yet, as an older release would have created it) with `edit`.
fn edit_first_schema(lake: &Path, table: &str, edit: impl Fn(&mut Value)) {
    let path = lake.join(table).join("_delta_log/00000000000000000000.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut action: Value = serde_json::from_str(line).unwrap();
            if let Some(schema) = action["metaData"]["schemaString"].as_str() {
                let mut schema: Value = serde_json::from_str(schema).unwrap();
                edit(&mut schema);
                action["metaData"]["schemaString"] = Value::String(schema.to_string());
            }
            action.to_string()
        })
        .collect();
    let edited = path.with_extension("edited");
    std::fs::write(&edited, lines.join("\n") + "\n").unwrap();
    std::fs::rename(&edited, &path).unwrap();
}

fn field<'a>(fields: &'a mut Value, name: &str) -> &'a mut Value {
    fields["fields"].as_array_mut().unwrap().iter_mut().find(|f| f["name"] == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_to_schemas_becomes_a_metadata_commit_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lake = data.join("lake");
    let mut bin = serve_local(&data, &[], &[]);
    assert!(bin.terminate(Duration::from_secs(30)).success());
    // The table as a release without `customer_timezone` and `owner.email` made it.
    edit_first_schema(&lake, "bookings", |schema| {
        schema["fields"].as_array_mut().unwrap().retain(|f| f["name"] != "customer_timezone");
        field(&mut field(schema, "owner")["type"], "email");
        field(schema, "owner")["type"]["fields"].as_array_mut().unwrap().retain(|f| f["name"] != "email");
    });
    let before = delta_read(&lake.display().to_string(), &["bookings"], &[], &[]);
    assert!(before["bookings"]["schema"].get("customer_timezone").is_none(), "{before}");

    let mut bin = serve_local(&data, &[], &[]);
    let sent = deliveries(&["evolve".into()]);
    assert_eq!(post_all(&bin.url(), &sent).await.len(), sent.len());
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let log = bin.stderr();
    assert!(log.contains("added columns to the delta table"), "{log}");
    assert!(log.contains("customer_timezone") && log.contains("owner.email"), "{log}");

    let read = delta_read(&lake.display().to_string(), &["bookings"], &[], &[]);
    assert_eq!(read["bookings"]["schema"]["customer_timezone"], "string", "{read}");
    assert!(read["bookings"]["schema"]["owner"].as_str().unwrap().contains("email"), "{read}");
    let root = lake.display();
    let d = duck(&format!(
        "SELECT count(*) FILTER (WHERE customer_timezone IS NOT NULL), count(*) FILTER (WHERE owner.email IS NOT NULL) FROM delta_scan('{root}/bookings')"
    ));
    assert!(d.rows[0].iter().all(|n| n.as_i64().unwrap() > 0), "the new columns hold values: {:?}", d.rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_schema_change_stops_the_start_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut bin = serve_local(&data, &[], &[]);
    assert!(bin.terminate(Duration::from_secs(30)).success());
    edit_first_schema(&data.join("lake"), "bookings", |schema| {
        field(schema, "duration_minutes")["type"] = json!("string")
    });
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--webhook-secret", SECRET, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("column duration_minutes changed type from string to long"), "{stderr}");
}
