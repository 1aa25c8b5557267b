//! Nothing stops ingestion (issue 14): each defect found by the hostile campaign, reproduced
//! against the real binary or the in-process service, with the lake read back by DuckDB.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Binary, SECRET, TestApp, duck, free_port, parquet_files, post_signed_to, wait_for_port};

const POISON: &[u8] = br#"{"id":"EVNT-POISON-1","type":"","data":{"object":"booking","id":"X1"}}"#;

fn booking(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","type":"booking.scheduled","creation_time":"2026-11-30T10:00:00Z","data":{{"object":"booking","id":"B-{id}"}}}}"#).into_bytes()
}

fn serve(data: &Path, extra: &[&str]) -> Binary {
    let lake = data.with_extension("lake");
    let mut args = vec!["--storage-url", lake.to_str().unwrap(), "--webhook-secret", SECRET];
    args.extend_from_slice(extra);
    Binary::serve(data, &args, &[])
}

fn rows(lake: &Path, table: &str, columns: &str) -> Vec<Vec<Value>> {
    if parquet_files(&lake.join(table)).is_empty() {
        return Vec::new();
    }
    duck(&format!("SELECT {columns} FROM read_parquet('{}/{table}/dt=*/*.parquet') ORDER BY ALL", lake.display())).rows
}

async fn status_of(resp: reqwest::Response) -> (u16, Value) {
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Item 1: the poison delivery used to exit 1 at the first flush and at every restart after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poison_delivery_is_a_dead_letter_and_the_service_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let mut bin = serve(&data, &["--flush-interval", "1s"]);
    assert_eq!(post_signed_to(&client, &bin.url(), POISON.to_vec()).await, 200);
    assert_eq!(post_signed_to(&client, &bin.url(), booking("EVNT-OK-1")).await, 200);
    tokio::time::sleep(Duration::from_secs(3)).await; // a flush happens
    assert_eq!(post_signed_to(&client, &bin.url(), booking("EVNT-OK-2")).await, 200, "still serving after a flush");
    assert!(bin.terminate(Duration::from_secs(30)).success(), "{}", bin.stderr());
    let mut bin = serve(&data, &["--flush-interval", "1s"]);
    assert_eq!(post_signed_to(&client, &bin.url(), booking("EVNT-OK-3")).await, 200, "a restart serves");
    assert!(bin.terminate(Duration::from_secs(30)).success(), "{}", bin.stderr());

    let lake = data.with_extension("lake");
    let ids: Vec<Value> = rows(&lake, "bookings", "event_id").into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(ids, [json!("EVNT-OK-1"), json!("EVNT-OK-2"), json!("EVNT-OK-3")]);
    let dead = rows(&lake, "dead_letter", "event_id, reason, error, raw_body");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0][0], json!("EVNT-POISON-1"));
    assert_eq!(dead[0][1], json!("wrong_type"));
    assert!(dead[0][2].as_str().unwrap().contains("`type` must be a non-empty string"), "{:?}", dead[0]);
    let raw =
        duck(&format!("SELECT decode(raw_body) FROM read_parquet('{}/dead_letter/dt=*/*.parquet')", lake.display()));
    assert_eq!(raw.rows[0][0].as_str().unwrap().as_bytes(), POISON, "the exact bytes are kept");
}

/// Items 6 and 8: duplicate keys and dead letters follow the same rule in receiver and batcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_dedup_and_a_dead_letter_takes_no_event_id() {
    let app = TestApp::spawn(|_| {}).await;
    let twice = br#"{"id":"EVNT-DUP","id":"EVNT-DUP","type":"booking.scheduled","data":{"object":"booking"}}"#;
    assert_eq!(status_of(app.post_signed(twice.to_vec()).await).await, (200, json!({"status": "accepted"})));
    assert_eq!(status_of(app.post_signed(twice.to_vec()).await).await, (200, json!({"status": "duplicate"})));
    // A signed dead letter carrying an id must not consume it: the real event comes later.
    let dead = br#"{"id":"EVNT-LATER"}"#;
    assert_eq!(status_of(app.post_signed(dead.to_vec()).await).await, (200, json!({"status": "accepted"})));
    assert_eq!(status_of(app.post_signed(booking("EVNT-LATER")).await).await, (200, json!({"status": "accepted"})));
    let stopped = app.stop().await;
    let ids: Vec<Value> = rows(&stopped.lake, "bookings", "event_id").into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(ids, [json!("EVNT-DUP"), json!("EVNT-LATER")]);
    let dead = rows(&stopped.lake, "dead_letter", "event_id, reason");
    assert_eq!(dead, [vec![json!("EVNT-LATER"), json!("missing_field")]]);
}

/// Item 11: `booking_calendar` sent expanded still gives `booking_calendar_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expanded_booking_calendar_gives_its_id() {
    let app = TestApp::spawn(|_| {}).await;
    let body = br#"{"id":"EVNT-BKC","type":"booking.scheduled","data":{"object":"booking","id":"BKNG-1","booking_calendar":{"id":"BKC-03WJV0R52Z","object":"booking_calendar","name":"Sales","subject":"Demo","url":"https://x","published":true}}}"#;
    assert_eq!(app.post_signed(body.to_vec()).await.status(), 200);
    let stopped = app.stop().await;
    assert_eq!(rows(&stopped.lake, "bookings", "booking_calendar_id"), [vec![json!("BKC-03WJV0R52Z")]]);
}

fn segments(spool: &Path) -> Vec<std::path::PathBuf> {
    let mut s: Vec<_> = std::fs::read_dir(spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    s.sort();
    s
}

fn spool_cli(verb: &str, data: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["spool", verb, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

async fn post_all(url: &str, ids: &[String]) {
    let client = reqwest::Client::new();
    for id in ids {
        assert_eq!(post_signed_to(&client, url, booking(id)).await, 200);
    }
}

fn booking_ids(lake: &Path) -> Vec<String> {
    rows(lake, "bookings", "event_id").into_iter().map(|r| r[0].as_str().unwrap().to_owned()).collect()
}

/// Item 2: one flipped byte at 10 % of the last segment used to lose every later record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_last_segment_costs_one_record_and_verify_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ids: Vec<String> = (0..600).map(|i| format!("EVNT-FLIP-{i:04}")).collect();
    let mut bin = serve(&data, &["--flush-interval", "1h"]);
    post_all(&bin.url(), &ids).await;
    bin.kill();
    let last = segments(&data.join("spool")).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let at = bytes.len() / 10;
    bytes[at] ^= 0x01;
    std::fs::write(&last, bytes).unwrap();

    let (clean, report) = spool_cli("verify", &data);
    assert!(!clean, "verify exits non-zero on damage: {report}");
    assert!(report.contains("lost        sequence ") && report.contains("1 records lost"), "{report}");

    let bin = serve(&data, &["--flush-interval", "1h"]);
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", bin.port)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("oncehub_bridge_spool_records_lost_total 1"), "{metrics}");
    let mut bin = bin;
    assert!(bin.terminate(Duration::from_secs(30)).success(), "{}", bin.stderr());
    assert!(bin.stderr().contains("records lost to damage"), "{}", bin.stderr());
    let got = booking_ids(&data.with_extension("lake"));
    assert_eq!(got.len(), 599, "one record lost, not the 539 after it");
    let missing: Vec<_> = ids.iter().filter(|id| !got.contains(id)).collect();
    assert_eq!(missing.len(), 1);
    assert!(data.join("spool/quarantine").join(last.file_name().unwrap()).exists(), "the original is kept");
    let (clean, report) = spool_cli("verify", &data);
    assert!(clean, "after the repair the spool is clean: {report}");
}

/// Item 3: a segment moved out used to leave the service spinning and deaf to SIGTERM; the first
/// segment removed used to make every start exit 1. `spool repair` is the documented path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_segments_are_gaps_serve_steps_over_and_repair_reports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ids: Vec<String> = (0..200).map(|i| format!("EVNT-GAP-{i:04}")).collect();
    let small = ["--flush-interval", "1h", "--spool-segment-bytes", "8000"];
    let mut bin = serve(&data, &small);
    post_all(&bin.url(), &ids).await;
    bin.kill();
    let segs = segments(&data.join("spool"));
    assert!(segs.len() >= 4, "{segs:?}");
    std::fs::remove_file(&segs[0]).unwrap();
    std::fs::rename(&segs[2], dir.path().join("moved-out.seg.bak")).unwrap();

    let (_, report) = spool_cli("verify", &data);
    assert!(report.matches("lost        sequences").count() == 2, "{report}");
    let (ok, repaired) = spool_cli("repair", &data);
    assert!(ok && repaired.contains("repaired"), "{repaired}");

    let mut bin = serve(&data, &small);
    let status = bin.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM is obeyed and the drain ends: {}", bin.stderr());
    let got = booking_ids(&data.with_extension("lake"));
    assert!(got.len() > 50 && got.len() < 200, "{} rows", got.len());
    let mut sorted = got.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "no row twice");
}

/// Item 4: a spool budget below the segment size used to answer 503 forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_below_the_segment_size_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut bin = serve(&data, &["--flush-interval", "1s", "--spool-max-bytes", "32KiB"]);
    let client = reqwest::Client::new();
    let mut n = 0;
    loop {
        n += 1;
        let code = post_signed_to(&client, &bin.url(), booking(&format!("EVNT-BUDGET-{n}"))).await;
        if code == 503 {
            break;
        }
        assert_eq!(code, 200);
        assert!(n < 10_000, "the budget never bit");
    }
    let readyz = format!("http://127.0.0.1:{}/readyz", bin.port);
    let start = Instant::now();
    loop {
        let resp = client.get(&readyz).send().await.unwrap();
        let ok = resp.status() == 200;
        let body: Value = resp.json().await.unwrap();
        let text = body.to_string();
        assert!(!(text.contains("not keeping up") && body["checks"]["store"] == json!("ok")), "{text}");
        if ok {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "still not ready: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(post_signed_to(&client, &bin.url(), booking("EVNT-BUDGET-AFTER")).await, 200);
    assert!(bin.terminate(Duration::from_secs(30)).success());
}

/// Item 9: `serve 2>&1 | head -3` used to exit 101 at the first flush, and a closed log stream
/// used to swallow SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_log_stream_neither_crashes_nor_deafens_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let lake = dir.path().join("lake");
    let mut child = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--flush-interval", "1s", "--webhook-secret", SECRET])
        .arg("--data-dir")
        .arg(&data)
        .arg("--storage-url")
        .arg(&lake)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the first lines, then close the pipes, as `head -3` does.
    let mut stderr = child.stderr.take().unwrap();
    let mut first = [0u8; 256];
    let _ = stderr.read(&mut first);
    drop(stderr);
    drop(child.stdout.take());
    wait_for_port(port, Duration::from_secs(20));
    let url = format!("http://127.0.0.1:{port}/webhooks/oncehub");
    let client = reqwest::Client::new();
    for i in 0..5 {
        assert_eq!(post_signed_to(&client, &url, booking(&format!("EVNT-PIPE-{i}"))).await, 200);
    }
    let start = Instant::now();
    while parquet_files(&lake).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "no flush");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(child.try_wait().unwrap().is_none(), "the server died after its log stream closed");
    assert_eq!(post_signed_to(&client, &url, booking("EVNT-PIPE-LAST")).await, 200);
    let status = crate::helpers::signal_and_wait(&mut child, "-TERM", Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert_eq!(booking_ids(&lake).len(), 6);
}

/// Item 10: a stalled body, an endless chunked body, and HEAD on the health routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_edges_a_stalled_body_times_out_an_endless_one_is_cut_and_head_answers() {
    let app = TestApp::spawn(|s| s.body_timeout = Duration::from_secs(1)).await;
    let port = app.port;
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let sig = oncehub_bridge::oncehub::signature::sign(&crate::helpers::secret(), chrono::Utc::now().timestamp(), b"{}");
        write!(s, "POST /webhooks/oncehub HTTP/1.1\r\nHost: x\r\nOncehub-Signature: {sig}\r\nContent-Length: 100\r\n\r\n{{\"id\":").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let written = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let sig = oncehub_bridge::oncehub::signature::sign(&crate::helpers::secret(), chrono::Utc::now().timestamp(), b"");
        write!(s, "POST /webhooks/oncehub HTTP/1.1\r\nHost: x\r\nOncehub-Signature: {sig}\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
        let mut written = 0usize;
        while written < 200 << 20 {
            if s.write_all(chunk.as_bytes()).is_err() {
                break;
            }
            written += chunk.len();
        }
        written
    })
    .await
    .unwrap();
    assert!(written < 32 << 20, "the server kept reading {written} bytes of a body over its 1 MiB limit");

    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let head = client.head(format!("http://127.0.0.1:{port}{path}")).send().await.unwrap();
        let get = client.get(format!("http://127.0.0.1:{port}{path}")).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "{path}");
        assert_eq!(head.status(), 200, "{path}");
        assert!(head.bytes().await.unwrap().is_empty());
    }
    app.stop().await;
}

/// Item 7: a damaged dedup entry is reported with its consequence and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_dedup_entry_is_warned_about_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut bin = serve(&data, &[]);
    post_all(&bin.url(), &["EVNT-D1".into(), "EVNT-D2".into()]).await;
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let day = std::fs::read_dir(data.join("spool/dedup")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&day).unwrap();
    bytes[3] ^= 0xff;
    std::fs::write(&day, bytes).unwrap();
    let mut bin = serve(&data, &[]);
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", bin.port)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("oncehub_bridge_dedup_entries_damaged_total 1"), "{metrics}");
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let log = bin.stderr();
    assert!(log.contains("the dedup index has damaged entries") && log.contains("stored again"), "{log}");
}

/// Item 5: a disk that fills between free-space checks used to kill the process (ENOSPC on
/// checkpoint.json). The data dir is a small tmpfs, filled by another file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_503_disk_full_and_ingestion_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&mount).status().unwrap();
    assert!(mounted.success(), "this test mounts a 4 MiB tmpfs: it needs root (CI runs as root)");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let data = mount.join("data");
    let lake = dir.path().join("lake");
    let mut bin = Binary::serve(
        &data,
        &[
            "--storage-url",
            lake.to_str().unwrap(),
            "--webhook-secret",
            SECRET,
            "--flush-interval",
            "1s",
            "--spool-min-free-bytes",
            "1",
        ],
        &[],
    );
    let filler = mount.join("filler");
    let client = reqwest::Client::new();
    let big = |i: usize| {
        format!(
            r#"{{"id":"EVNT-FULL-{i}","type":"booking.scheduled","data":{{"object":"booking","subject":"{}"}}}}"#,
            "s".repeat(200_000)
        )
        .into_bytes()
    };
    let post = |i: usize| {
        let body = big(i);
        let sig =
            oncehub_bridge::oncehub::signature::sign(&crate::helpers::secret(), chrono::Utc::now().timestamp(), &body);
        client.post(bin.url()).header("Oncehub-Signature", sig).body(body).send()
    };
    let mut accepted = Vec::new();
    for i in 0..3 {
        assert_eq!(post(i).await.unwrap().status(), 200);
        accepted.push(i);
    }
    // Take every free block, then post until the spool meets the full disk.
    let _ = std::fs::write(&filler, vec![0u8; 4 << 20]);
    let mut refused = None;
    for i in 3..40 {
        let resp = post(i).await.unwrap();
        match resp.status().as_u16() {
            200 => accepted.push(i),
            503 => {
                refused = Some(resp.json::<Value>().await.unwrap());
                break;
            }
            other => panic!("status {other}"),
        }
    }
    let refused = refused.expect("the full disk is noticed");
    assert_eq!(refused["error"], json!("disk_full"), "{refused}");
    tokio::time::sleep(Duration::from_secs(3)).await; // flushes and checkpoint writes meet ENOSPC
    let health = client.get(format!("http://127.0.0.1:{}/healthz", bin.port)).send().await.unwrap();
    assert_eq!(health.status(), 200, "the process is alive: {}", bin.stderr());
    std::fs::remove_file(&filler).unwrap();
    let start = Instant::now();
    let after = loop {
        if post(100).await.unwrap().status() == 200 {
            break 100;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no recovery after space returned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    accepted.push(after);
    assert!(bin.terminate(Duration::from_secs(30)).success(), "{}", bin.stderr());
    let mut expected: Vec<String> = accepted.iter().map(|i| format!("EVNT-FULL-{i}")).collect();
    expected.sort();
    assert_eq!(booking_ids(&lake), expected, "every acknowledged delivery landed");
}
