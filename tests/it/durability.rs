//! Durability of acknowledgements with the real binary: SIGKILL under load, a store outage until
//! the spool budget bites, a torn segment, and repeated deliveries. Read back with DuckDB.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use oncehub_bridge::commands::samples;
use rand::Rng;
use serde_json::json;

use crate::helpers::{Binary, DeadStore, S3Server, SECRET, duck, post_signed_to};

/// `rounds` × 30 sample deliveries with unique ids: (event id, body).
fn deliveries(tag: &str, rounds: usize) -> Vec<(String, Vec<u8>)> {
    (0..rounds)
        .flat_map(|r| samples::all_events(&format!("{tag}{r}"), Utc::now()))
        .map(|e| (e["id"].as_str().unwrap().to_owned(), serde_json::to_vec(&e).unwrap()))
        .collect()
}

fn serve_s3(data_dir: &Path, s3_port: u16, extra: &[&str]) -> Binary {
    let mut args = vec!["--storage-url", "s3://lake/oncehub", "--webhook-secret", SECRET];
    args.extend_from_slice(extra);
    Binary::serve(data_dir, &args, &S3Server::env(s3_port))
}

fn serve_local(data_dir: &Path, extra: &[&str]) -> Binary {
    let mut args = vec!["--webhook-secret", SECRET];
    args.extend_from_slice(extra);
    Binary::serve(data_dir, &args, &[])
}

/// How each event id fared, over every attempt.
#[derive(Default)]
struct Ledger {
    queue: VecDeque<(String, Vec<u8>)>,
    acked: HashMap<String, u32>,
    failures: u64,
    statuses: Vec<u16>,
}

/// Sends from the ledger's queue with `workers` concurrent senders until the queue is empty or
/// the receiver stops answering; anything without a 2xx goes back in the queue (OnceHub's retry).
async fn pump(url: &str, ledger: &Arc<Mutex<Ledger>>, workers: usize) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (client, url, ledger) = (client.clone(), url.to_owned(), ledger.clone());
            tokio::spawn(async move {
                loop {
                    let Some((id, body)) = ledger.lock().unwrap().queue.pop_front() else { return };
                    let sig = oncehub_bridge::oncehub::signature::sign(
                        &crate::helpers::secret(),
                        Utc::now().timestamp(),
                        &body,
                    );
                    let sent = client.post(&url).header("Oncehub-Signature", sig).body(body.clone()).send().await;
                    let mut l = ledger.lock().unwrap();
                    match sent {
                        Ok(r) if r.status().is_success() => *l.acked.entry(id).or_default() += 1,
                        Ok(r) => {
                            l.statuses.push(r.status().as_u16());
                            l.queue.push_back((id, body));
                        }
                        Err(_) => {
                            l.failures += 1;
                            l.queue.push_back((id, body));
                            return; // the receiver is gone
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_and_duplicates_nothing_that_got_a_2xx() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    let data = dir.path().join("data");
    let all = deliveries("crash", 100);
    let total = all.len();
    let bodies: HashMap<String, Vec<u8>> = all.iter().cloned().collect();
    let ledger = Arc::new(Mutex::new(Ledger { queue: all.into(), ..Ledger::default() }));
    let args = ["--flush-max-rows", "97", "--flush-interval", "150ms", "--spool-segment-bytes", "64KiB"];
    let mut kills = 0;
    let mut rng = rand::rng();
    while kills < 5 {
        let mut bin = serve_s3(&data, s3.port, &args);
        let url = bin.url();
        let l = ledger.clone();
        let sender = tokio::spawn(async move { pump(&url, &l, 16).await });
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
        bin.kill();
        kills += 1;
        sender.await.unwrap();
        // Some 2xx answers are lost with the process: OnceHub would send those again too.
        let mut l = ledger.lock().unwrap();
        let resend: Vec<_> = l.acked.keys().take(10).cloned().collect();
        for id in resend {
            let body = bodies[&id].clone();
            l.queue.push_back((id, body));
        }
    }
    let mut bin = serve_s3(&data, s3.port, &args);
    pump(&bin.url(), &ledger, 16).await;
    assert!(bin.terminate(Duration::from_secs(60)).success(), "exit 0 after SIGTERM");

    let l = ledger.lock().unwrap();
    assert!(l.queue.is_empty());
    assert_eq!(l.acked.len(), total, "every delivery eventually got a 2xx");
    assert!(l.failures > 0, "the kills happened under load");
    assert!(l.statuses.is_empty(), "no non-2xx answers: {:?}", l.statuses);
    let log = bin.stderr();
    assert_eq!(log.matches("spool opened").count(), kills + 1, "{log}");
    let d = s3.duck(
        "SELECT count(*), count(DISTINCT event_id) FROM read_parquet('s3://lake/oncehub/*/dt=*/*.parquet', union_by_name = true)",
    );
    let dups = s3.duck(
        "SELECT event_id, list(filename ORDER BY filename) FROM read_parquet('s3://lake/oncehub/*/dt=*/*.parquet', union_by_name = true, filename = true) GROUP BY 1 HAVING count(*) > 1 LIMIT 3",
    );
    assert_eq!(
        d.rows[0],
        vec![json!(total), json!(total)],
        "every acknowledged event exactly once; twice: {:?}",
        dups.rows
    );
    let ids = s3
        .duck("SELECT DISTINCT event_id FROM read_parquet('s3://lake/oncehub/*/dt=*/*.parquet', union_by_name = true)");
    let landed: std::collections::HashSet<&str> = ids.rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert!(l.acked.keys().all(|id| landed.contains(id.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_fills_the_spool_then_503_then_everything_lands() {
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    let mut s3 = S3Server::start(&s3_root);
    let s3_port = s3.port;
    let data = dir.path().join("data");
    let budget = 256 * 1024;
    let mut bin = serve_s3(
        &data,
        s3_port,
        &[
            "--flush-max-rows",
            "20",
            "--flush-interval",
            "200ms",
            "--spool-max-bytes",
            "256KiB",
            "--spool-segment-bytes",
            "16KiB",
        ],
    );
    let client = reqwest::Client::new();
    let mut pending: VecDeque<(String, Vec<u8>)> = deliveries("outage", 20).into();
    let mut acked = Vec::new();
    for _ in 0..30 {
        let (id, body) = pending.pop_front().unwrap();
        assert_eq!(post_signed_to(&client, &bin.url(), body).await, 200);
        acked.push(id);
    }

    s3.stop();
    let dead = DeadStore::hold(s3_port);
    let mut accepted_bytes = 0;
    let refused = loop {
        let (id, body) = pending.pop_front().expect("the budget bites before the deliveries run out");
        let sig = oncehub_bridge::oncehub::signature::sign(&crate::helpers::secret(), Utc::now().timestamp(), &body);
        let resp = client.post(bin.url()).header("Oncehub-Signature", sig).body(body.clone()).send().await.unwrap();
        if resp.status() == 200 {
            accepted_bytes += body.len();
            acked.push(id);
            continue;
        }
        assert_eq!(resp.status(), 503, "only 200 until the budget is reached, then 503");
        assert!(resp.headers().contains_key("retry-after"));
        let answer: serde_json::Value = resp.json().await.unwrap();
        pending.push_front((id, body));
        break answer;
    };
    assert_eq!(refused["error"], "spool_full");
    assert!(accepted_bytes > budget / 2, "the spool took {accepted_bytes} bytes before refusing");

    dead.release();
    let s3 = S3Server::start_on(s3_port, &s3_root);
    let start = Instant::now();
    while let Some((id, body)) = pending.pop_front() {
        let status = post_signed_to(&client, &bin.url(), body.clone()).await;
        if status == 200 {
            acked.push(id);
        } else {
            assert_eq!(status, 503);
            assert!(start.elapsed() < Duration::from_secs(60), "the spool never drained: {}", bin.stderr());
            pending.push_front((id, body));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(bin.terminate(Duration::from_secs(60)).success());
    let d = s3.duck(
        "SELECT count(*), count(DISTINCT event_id) FROM read_parquet('s3://lake/oncehub/*/dt=*/*.parquet', union_by_name = true)",
    );
    assert_eq!(d.rows[0], vec![json!(acked.len()), json!(acked.len())]);
    assert_eq!(acked.len(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_cut_mid_record_recovers_everything_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut bin = serve_local(&data, &["--flush-interval", "1h"]);
    let client = reqwest::Client::new();
    let events = deliveries("torn", 1);
    for (_, body) in &events {
        assert_eq!(post_signed_to(&client, &bin.url(), body.clone()).await, 200);
    }
    bin.kill();

    let mut segments: Vec<_> = std::fs::read_dir(data.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let last = segments.pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let cut = 100; // the last record is ~1.5 KB: this cuts into its middle
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len - cut).unwrap();

    let mut bin = serve_local(&data, &["--flush-interval", "1h"]);
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let log = bin.stderr();
    assert!(
        log.contains("cut a torn tail") && log.contains(&last.file_name().unwrap().to_string_lossy().to_string()),
        "{log}"
    );
    let lake = data.join("lake");
    let d = duck(&format!(
        "SELECT event_id FROM read_parquet('{}/*/dt=*/*.parquet', union_by_name = true) ORDER BY event_id",
        lake.display()
    ));
    let mut expected: Vec<&str> = events[..events.len() - 1].iter().map(|(id, _)| id.as_str()).collect();
    expected.sort();
    let got: Vec<&str> = d.rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(got, expected, "everything before the cut, once; the cut record is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_twice_and_again_after_a_restart_gives_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let (id, body) = deliveries("dup", 1).swap_remove(0);
    let (other_id, other) = deliveries("dup-other", 1).swap_remove(3);

    let post = |url: String, body: Vec<u8>| {
        let client = client.clone();
        async move {
            let sig =
                oncehub_bridge::oncehub::signature::sign(&crate::helpers::secret(), Utc::now().timestamp(), &body);
            let r = client.post(url).header("Oncehub-Signature", sig).body(body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()["status"].as_str().unwrap().to_owned()
        }
    };
    let mut bin = serve_local(&data, &["--flush-interval", "100ms"]);
    assert_eq!(post(bin.url(), body.clone()).await, "accepted");
    assert_eq!(post(bin.url(), body.clone()).await, "duplicate");
    tokio::time::sleep(Duration::from_millis(500)).await; // flushed and acknowledged by now
    assert_eq!(post(bin.url(), body.clone()).await, "duplicate", "also once the first copy is in a file");
    assert!(bin.terminate(Duration::from_secs(30)).success());

    let mut bin = serve_local(&data, &["--flush-interval", "100ms"]);
    assert_eq!(post(bin.url(), body.clone()).await, "duplicate", "the index survives a restart");
    assert_eq!(post(bin.url(), other).await, "accepted");
    assert!(bin.terminate(Duration::from_secs(30)).success());
    assert_eq!(bin.stderr().matches("duplicate delivery").count(), 3);

    let d = duck(&format!(
        "SELECT event_id, count(*) FROM read_parquet('{}/*/dt=*/*.parquet', union_by_name = true) GROUP BY 1 ORDER BY 1",
        data.join("lake").display()
    ));
    let mut want = vec![vec![json!(id), json!(1)], vec![json!(other_id), json!(1)]];
    want.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
    assert_eq!(d.rows, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_then_restart_replays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    let data = dir.path().join("data");
    let mut bin = serve_s3(&data, s3.port, &[]);
    let client = reqwest::Client::new();
    for (_, body) in deliveries("term", 1) {
        assert_eq!(post_signed_to(&client, &bin.url(), body).await, 200);
    }
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let mut bin = serve_s3(&data, s3.port, &[]);
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let log = bin.stderr();
    let opened: Vec<&str> = log.lines().filter(|l| l.contains("spool opened")).collect();
    assert_eq!(opened.len(), 2);
    assert!(opened[1].contains(r#""replay":0"#), "{}", opened[1]);
    let d = s3.duck("SELECT count(*) FROM read_parquet('s3://lake/oncehub/*/dt=*/*.parquet', union_by_name = true)");
    assert_eq!(d.rows[0][0], json!(30));
}

/// The lake's Parquet files as (partition, first, last), from their names.
fn lake_files(lake: &Path) -> Vec<(String, u64, u64)> {
    let mut out: Vec<_> = crate::helpers::parquet_files(lake)
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(lake).unwrap().to_string_lossy().to_string();
            let (partition, name) = rel.rsplit_once('/').unwrap();
            let parts: Vec<&str> = name.trim_end_matches(".parquet").rsplitn(3, '-').collect();
            (partition.to_owned(), parts[1].parse().unwrap(), parts[0].parse().unwrap())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_upload_and_checkpoint_rewrites_the_same_objects_not_new_ones() {
    // The plain Parquet layout, where an uploaded file is final: its replay must hit the same
    // object. (Delta tables: see `delta::a_sigkill_*`.)
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lake = data.join("lake");
    let args = ["--flush-max-rows", "7", "--flush-interval", "1h", "--table-format", "parquet"];
    let mut bin = serve_local(&data, &args);
    let client = reqwest::Client::new();
    for (_, body) in deliveries("replay", 1) {
        assert_eq!(post_signed_to(&client, &bin.url(), body).await, 200);
    }
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let files = lake_files(&lake);
    assert!(files.len() >= 5, "{files:?}");

    // Put the spool back as a crash after the uploads but before their acknowledgement would
    // leave it: first with nothing acknowledged, then with the checkpoint inside some files.
    let spool = data.join("spool");
    let saved = dir.path().join("spool-after-first-run");
    copy_dir(&spool, &saved);
    let mut expected_rewrites = 0;
    for checkpoint in [0u64, 12] {
        std::fs::remove_dir_all(&spool).unwrap();
        copy_dir(&saved, &spool);
        // Files starting at or below the checkpoint are known to be written: their records are
        // skipped. The others are cut again and found in the store.
        expected_rewrites += files.iter().filter(|f| f.1 > checkpoint).count();
        let intents: Vec<_> = files
            .iter()
            .filter(|(_, _, last)| *last > checkpoint)
            .map(|(partition, first, last)| json!({"partition": partition, "first": first, "last": last}))
            .collect();
        let state = json!({"checkpoint": checkpoint, "intents": intents});
        std::fs::write(data.join("spool/checkpoint.json"), serde_json::to_vec(&state).unwrap()).unwrap();
        let mut bin = serve_local(&data, &args);
        assert!(bin.terminate(Duration::from_secs(30)).success());
        assert_eq!(lake_files(&lake), files, "replay after checkpoint {checkpoint} wrote exactly the same objects");
    }
    let log = bin.stderr();
    let rewritten = log.lines().filter(|l| l.contains("file written") && l.contains(r#""existed":true"#)).count();
    assert_eq!(rewritten, expected_rewrites, "every replayed file found its object already there");
    let d = duck(&format!(
        "SELECT count(*), count(DISTINCT event_id) FROM read_parquet('{}/*/dt=*/*.parquet', union_by_name = true)",
        lake.display()
    ));
    assert_eq!(d.rows[0], vec![json!(30), json!(30)]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
