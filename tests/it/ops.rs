//! Operations endpoints on the real binary: `/readyz` names the failing part, `/metrics` counts
//! what really happened (checked against the deliveries sent and the objects in the store), and
//! both live on `--admin-listen`, off the public listener.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use oncehub_bridge::commands::samples;
use serde_json::Value;

use crate::helpers::{Binary, DeadStore, S3Server, SECRET, free_port, parquet_files, post_signed_to, wait_for_port};

/// One scrape: `name{labels}` → value.
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    async fn take(client: &reqwest::Client, base: &str) -> Scrape {
        let resp = client.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        let text = resp.text().await.unwrap();
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (key, value) = l.rsplit_once(' ').unwrap();
                (key.to_owned(), value.parse().unwrap())
            })
            .collect();
        Scrape(samples)
    }

    fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }

    /// Sum over every label set of metric `name`.
    fn sum(&self, name: &str) -> f64 {
        self.0.iter().filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{"))).map(|(_, v)| v).sum()
    }
}

async fn readyz(client: &reqwest::Client, base: &str) -> (u16, Value) {
    let resp = client.get(format!("{base}/readyz")).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened_and_readyz_names_the_failing_part() {
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    let mut s3 = S3Server::start(&s3_root);
    let s3_port = s3.port;
    let admin_port = free_port();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let bin = Binary::serve(
        &dir.path().join("data"),
        &[
            "--storage-url",
            "s3://lake/oncehub",
            "--webhook-secret",
            SECRET,
            "--flush-interval",
            "300ms",
            "--admin-listen",
            &admin_listen,
            "--spool-max-bytes",
            "64KiB",
            "--spool-segment-bytes",
            "16KiB",
        ],
        &S3Server::env(s3_port),
    );
    wait_for_port(admin_port, Duration::from_secs(10));
    let admin = format!("http://127.0.0.1:{admin_port}");
    let public = format!("http://127.0.0.1:{}", bin.port);
    let client = reqwest::Client::new();

    let (status, body) = readyz(&client, &admin).await;
    assert_eq!(
        (status, &body["checks"]["spool"], &body["checks"]["store"]),
        (200, &"ok".into(), &"ok".into()),
        "{body}"
    );
    assert_eq!(
        client.get(format!("{public}/metrics")).send().await.unwrap().status(),
        404,
        "metrics stay off the public port"
    );
    assert_eq!(client.get(format!("{public}/readyz")).send().await.unwrap().status(), 404);
    assert_eq!(client.get(format!("{public}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(client.get(format!("{admin}/healthz")).send().await.unwrap().status(), 200);

    let events = samples::all_events("ops", Utc::now());
    for event in &events {
        assert_eq!(post_signed_to(&client, &bin.url(), serde_json::to_vec(event).unwrap()).await, 200);
    }
    assert_eq!(post_signed_to(&client, &bin.url(), serde_json::to_vec(&events[0]).unwrap()).await, 200);
    let wrong = client
        .post(bin.url())
        .header("Oncehub-Signature", format!("t={},s={}", Utc::now().timestamp(), "ab".repeat(32)));
    assert_eq!(wrong.body("{}").send().await.unwrap().status(), 401);
    assert_eq!(client.post(bin.url()).body("{}").send().await.unwrap().status(), 401);

    let start = Instant::now();
    let m = loop {
        let m = Scrape::take(&client, &admin).await;
        // Rows written, and committed: the lag is recorded when the commit makes them readable.
        let written = m.sum("oncehub_bridge_rows_written_total") >= events.len() as f64;
        if written && m.get("oncehub_bridge_event_to_queryable_seconds_count") >= events.len() as f64 {
            break m;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "rows never written: {}", bin.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let n = events.len() as f64;
    assert_eq!(m.sum("oncehub_bridge_deliveries_received_total"), n);
    let per_booking_trigger = samples::BOOKING_VARIANTS as f64;
    assert_eq!(m.get(r#"oncehub_bridge_deliveries_received_total{event_type="booking.no_show"}"#), per_booking_trigger);
    let per_conversation_trigger = samples::CONVERSATION_VARIANTS as f64;
    assert_eq!(
        m.get(r#"oncehub_bridge_deliveries_received_total{event_type="conversation.closed"}"#),
        per_conversation_trigger
    );
    assert_eq!(m.get(r#"oncehub_bridge_deliveries_rejected_total{reason="invalid_signature"}"#), 1.0);
    assert_eq!(m.get(r#"oncehub_bridge_deliveries_rejected_total{reason="missing_signature"}"#), 1.0);
    assert_eq!(m.get("oncehub_bridge_duplicates_total"), 1.0);
    assert_eq!(m.get("oncehub_bridge_ack_latency_seconds_count"), n + 1.0, "every 2xx is timed");
    assert_eq!(m.get("oncehub_bridge_event_to_queryable_seconds_count"), n, "one lag sample per row");
    assert_eq!(m.get(r#"oncehub_bridge_event_to_queryable_seconds_bucket{le="+Inf"}"#), n);
    let objects = parquet_files(&s3_root);
    assert_eq!(m.sum("oncehub_bridge_files_written_total"), objects.len() as f64);
    let object_bytes: u64 = objects.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert_eq!(m.sum("oncehub_bridge_bytes_written_total"), object_bytes as f64);
    assert_eq!(m.sum("oncehub_bridge_flushes_total"), objects.len() as f64);
    assert_eq!(m.get(r#"oncehub_bridge_rows_written_total{table="conversations"}"#), 3.0 * per_conversation_trigger);
    assert_eq!(m.sum("oncehub_bridge_store_errors_total"), 0.0);

    // The store goes down: readiness names it; deliveries are still kept until the spool is full.
    s3.stop();
    let dead = DeadStore::hold(s3_port);
    let (status, body) = readyz(&client, &admin).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["spool"], "ok", "{body}");
    assert_ne!(body["checks"]["store"], "ok", "{body}");
    let mut round = 0;
    let refused = loop {
        round += 1;
        let batch = samples::all_events(&format!("down{round}"), Utc::now());
        let mut refused = None;
        for event in batch {
            let status = post_signed_to(&client, &bin.url(), serde_json::to_vec(&event).unwrap()).await;
            if status != 200 {
                refused = Some(status);
                break;
            }
        }
        if let Some(status) = refused {
            break status;
        }
        assert!(round < 50, "the 64 KiB spool never filled");
    };
    assert_eq!(refused, 503);
    let (status, body) = readyz(&client, &admin).await;
    assert_eq!(status, 503);
    assert!(body["checks"]["spool"].as_str().unwrap().contains("limit"), "{body}");
    let start = Instant::now();
    let m = loop {
        let m = Scrape::take(&client, &admin).await;
        if m.sum("oncehub_bridge_store_errors_total") > 0.0 {
            break m;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no store error counted: {}", bin.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(m.get("oncehub_bridge_store_retries_total") > 0.0);
    assert!(m.get("oncehub_bridge_spool_records") > 0.0, "the backlog waits in the spool");
    assert!(m.get("oncehub_bridge_spool_bytes") > 0.0);
    assert_eq!(m.get(r#"oncehub_bridge_deliveries_rejected_total{reason="spool_full"}"#), 1.0);
    drop(dead);
}

/// The served process runs with transparent huge pages off (see `src/main.rs`): the kernel's
/// view of the process says so, whatever the machine's THP mode.
#[test]
fn the_service_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Binary::serve(&dir.path().join("data"), &["--webhook-secret", SECRET], &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", bin.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("the kernel reports THP_enabled");
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}
