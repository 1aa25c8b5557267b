//! The generated DDL of the plain layout (`--table-format parquet`) run by real engines on a lake
//! where some tables have no rows yet: Spark 3.5 (pyspark on a Java runtime) and DuckDB. (The
//! Delta statements are run by DuckDB in `cli` and `delta`; Spark cannot fetch the delta-spark
//! jars offline.)

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use oncehub_bridge::commands::samples;
use serde_json::{Value, json};

use crate::helpers::{Binary, SECRET, duck, post_signed_to, tool};

/// Runs `statements` then `query` in Spark; the query's rows as strings.
pub fn spark(statements: &str, query: &str, dir: &Path) -> Vec<Vec<Value>> {
    let file = dir.join("statements.sql");
    std::fs::write(&file, statements).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spark_sql.py");
    let out = Command::new(tool("venv/bin/python"))
        .arg(script)
        .arg(&file)
        .arg(query)
        .arg(dir.join("warehouse"))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "spark failed on {query}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(out.stdout.rsplit(|b| *b == b'\n').find(|l| !l.is_empty()).unwrap()).unwrap();
    v["rows"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect()
}

fn ddl(engine: &str, lake: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["schema", "ddl", "--engine", engine, "--table-format", "parquet", "--location"])
        .arg(lake)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A plain-layout lake whose only rows are `bookings` ones.
async fn bookings_only_lake(dir: &Path) -> (std::path::PathBuf, usize) {
    let data = dir.join("data");
    let mut bin = Binary::serve(&data, &["--webhook-secret", SECRET, "--table-format", "parquet"], &[]);
    let client = reqwest::Client::new();
    let bookings: Vec<_> = samples::all_events("wh", Utc::now())
        .into_iter()
        .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("booking.")))
        .collect();
    for e in &bookings {
        assert_eq!(post_signed_to(&client, &bin.url(), serde_json::to_vec(e).unwrap()).await, 200);
    }
    assert!(bin.terminate(Duration::from_secs(30)).success());
    (data.join("lake"), bookings.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_runs_the_plain_layout_ddl_on_a_lake_with_empty_tables() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, n) = bookings_only_lake(dir.path()).await;
    let rows = spark(
        &ddl("spark", &lake),
        "SELECT (SELECT count(*) FROM bookings), (SELECT count(*) FROM conversations), \
         (SELECT count(*) FROM other_events), (SELECT count(*) FROM dead_letter), \
         (SELECT count(DISTINCT dt) FROM bookings WHERE dt <> '1970-01-01'), (SELECT count(*) FROM contacts), \
         (SELECT count(*) FROM bookings_current) = (SELECT count(DISTINCT booking_id) FROM bookings)",
        dir.path(),
    );
    let want = [json!(n.to_string()), json!("0"), json!("0"), json!("0"), json!("1"), json!("0"), json!("True")];
    assert_eq!(rows, vec![want.to_vec()], "bookings_current is a view Spark runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_views_of_the_plain_layout_bind_on_empty_tables() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, n) = bookings_only_lake(dir.path()).await;
    let d = duck(&format!(
        "{} SELECT (SELECT count(*) FROM bookings), (SELECT count(*) FROM conversations), \
         (SELECT count(*) FROM other_events), (SELECT count(*) FROM dead_letter), \
         (SELECT typeof(dt) FROM bookings LIMIT 1), (SELECT count(*) FROM contacts), \
         (SELECT count(*) FROM bookings_current), (SELECT count(DISTINCT booking_id) FROM bookings), \
         (SELECT count(*) FROM (SELECT booking_id FROM bookings_current GROUP BY 1 HAVING count(*) > 1))",
        ddl("duckdb", &lake)
    ));
    assert_eq!(d.rows[0][..6], vec![json!(n), json!(0), json!(0), json!(0), json!("DATE"), json!(0)]);
    assert_eq!(d.rows[0][6], d.rows[0][7], "the bookings_current view: one row per booking");
    assert_eq!(d.rows[0][8], json!(0));
}
