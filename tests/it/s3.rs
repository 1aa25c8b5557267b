//! The real binary against a real S3-compatible server (s3s-fs) on 127.0.0.1, read back by DuckDB
//! over s3:// with httpfs.

use std::time::{Duration, Instant};

use chrono::Utc;
use oncehub_bridge::commands::samples;
use serde_json::json;

use crate::helpers::{Binary, DeadStore, S3_SECRET, S3Server, SECRET, free_port, post_signed_to};

async fn send_all(url: &str, tag: &str) -> usize {
    let client = reqwest::Client::new();
    let events = samples::all_events(tag, Utc::now());
    for e in &events {
        assert_eq!(post_signed_to(&client, url, serde_json::to_vec(e).unwrap()).await, 200);
    }
    events.len()
}

fn serve_s3(dir: &std::path::Path, name: &str, s3_port: u16, extra: &[&str]) -> Binary {
    let mut args = vec!["--storage-url", "s3://lake/oncehub", "--webhook-secret", SECRET];
    args.extend_from_slice(extra);
    Binary::serve(&dir.join(name), &args, &S3Server::env(s3_port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_land_in_s3_and_duckdb_reads_them_there() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    let mut bin = serve_s3(dir.path(), "a", s3.port, &[]);
    let sent = send_all(&bin.url(), "s3").await;
    assert!(bin.terminate(Duration::from_secs(30)).success(), "exit 0 after SIGTERM");

    let counts = s3.duck(
        "SELECT split_part(filename, '/', 5) AS t, count(*) FROM read_parquet('s3://lake/oncehub/*/dt=*/*.parquet', filename = true) GROUP BY ALL ORDER BY 1",
    );
    assert_eq!(counts.rows, vec![vec![json!("bookings"), json!(24)], vec![json!("conversations"), json!(6)]]);
    assert_eq!(sent, 30);
    let b = s3.duck(
        "SELECT * FROM read_parquet('s3://lake/oncehub/bookings/dt=*/*.parquet', hive_partitioning = true) LIMIT 1",
    );
    assert_eq!(b.type_of("starting_time"), "TIMESTAMP WITH TIME ZONE");
    assert_eq!(b.type_of("duration_minutes"), "BIGINT");
    assert_eq!(b.type_of("dt"), "DATE");

    let log = bin.stderr();
    assert!(log.contains("file written"), "{log}");
    assert!(!log.contains(S3_SECRET) && !log.contains(SECRET), "a secret reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_bucket_without_collisions() {
    // Object names never collide (the plain layout, where names are all there is; two replicas
    // committing to Delta tables: `delta::two_replicas_*`, on a store whose create is atomic).
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    let args = ["--flush-max-rows", "7", "--table-format", "parquet"];
    let mut a = serve_s3(dir.path(), "a", s3.port, &args);
    let mut b = serve_s3(dir.path(), "b", s3.port, &args);
    let (url_a, url_b) = (a.url(), b.url());
    let (na, nb) = tokio::join!(send_all(&url_a, "inst-a"), send_all(&url_b, "inst-b"));
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(b.terminate(Duration::from_secs(30)).success());
    let d = s3.duck(
        "SELECT count(*), count(DISTINCT event_id), count(DISTINCT filename) FROM read_parquet('s3://lake/oncehub/*/dt=*/*.parquet', filename = true, union_by_name = true)",
    );
    // Every file but the zero-row one each table of the plain layout starts with.
    let files = crate::helpers::parquet_files(&s3.root.join("lake"))
        .iter()
        .filter(|p| !p.to_string_lossy().contains("/part-empty-"))
        .count() as u64;
    assert_eq!(d.rows[0][0], serde_json::json!(na + nb), "every delivery of both instances is there");
    assert_eq!(d.rows[0][1], serde_json::json!(na + nb), "no row twice");
    assert_eq!(d.rows[0][2], serde_json::json!(files), "every object holds rows; none was overwritten");
    assert!(files >= 6, "max 7 rows per file gives several files per instance: {files}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_retried_until_the_store_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let s3_port = free_port();
    let dead = DeadStore::hold(s3_port);
    let mut bin = serve_s3(dir.path(), "a", s3_port, &["--flush-interval", "300ms"]);
    let sent = send_all(&bin.url(), "outage").await;
    let start = Instant::now();
    while !bin.stderr().contains("store write failed; retrying") {
        assert!(start.elapsed() < Duration::from_secs(30), "no retry logged: {}", bin.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dead.release();
    let s3 = S3Server::start_on(s3_port, &dir.path().join("s3"));
    assert!(bin.terminate(Duration::from_secs(60)).success(), "flushes once the store is back, then exits 0");
    let d = s3.duck(
        "SELECT count(DISTINCT event_id) FROM read_parquet('s3://lake/oncehub/*/dt=*/*.parquet', union_by_name = true)",
    );
    assert_eq!(d.rows[0][0], serde_json::json!(sent));
}

/// Issue 15: a refusal that retrying cannot fix (credentials the store rejects) is reported at
/// once, in the log, `/readyz` and a metric; the batch stays in the spool and lands once fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_reported_at_once_and_the_batch_lands_once_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    let admin_addr = format!("127.0.0.1:{}", free_port());
    let args = ["--admin-listen", &admin_addr, "--flush-interval", "300ms", "--shutdown-timeout", "2s"];
    let mut wrong = S3Server::env(s3.port);
    wrong.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    wrong.push(("AWS_SECRET_ACCESS_KEY", "not-the-secret".into()));
    let mut bin = Binary::serve(
        &dir.path().join("a"),
        &[&["--storage-url", "s3://lake/oncehub", "--webhook-secret", SECRET][..], &args].concat(),
        &wrong,
    );
    let sent = send_all(&bin.url(), "refused").await;
    let client = reqwest::Client::new();
    let start = Instant::now();
    let readyz = loop {
        let resp = client.get(format!("http://{admin_addr}/readyz")).send().await.unwrap();
        let body: serde_json::Value = resp.json().await.unwrap();
        if body["checks"]["store"].as_str().is_some_and(|s| s.contains("refuses writes")) {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "not reported: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(readyz["status"], "not_ready");
    let metrics = client.get(format!("http://{admin_addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let permanent = |l: &&str| l.starts_with("oncehub_bridge_store_errors_total") && l.contains("kind=\"permanent\"");
    assert!(metrics.lines().any(|l| permanent(&l)), "{metrics}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = bin.stderr();
    assert_eq!(log.matches("retrying will not fix it").count(), 1, "said once, not at every retry: {log}");
    assert!(!log.contains("not-the-secret"), "a credential reached the log");
    bin.terminate(Duration::from_secs(30)); // the deadline passes: the records stay in the spool
    let mut bin = Binary::serve(
        &dir.path().join("a"),
        &[&["--storage-url", "s3://lake/oncehub", "--webhook-secret", SECRET][..], &args].concat(),
        &S3Server::env(s3.port),
    );
    assert!(bin.terminate(Duration::from_secs(30)).success(), "lands with the right credentials: {}", bin.stderr());
    let d = s3.duck(
        "SELECT count(DISTINCT event_id) FROM read_parquet('s3://lake/oncehub/*/dt=*/*.parquet', union_by_name = true)",
    );
    assert_eq!(d.rows[0][0], serde_json::json!(sent), "no delivery was dropped");
}
