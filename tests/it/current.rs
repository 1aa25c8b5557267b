//! `bookings_current` (issue 18): one row per booking, its latest state, whether the state came
//! from a webhook or from the backfill. Webhook deliveries of the same bookings while a backfill
//! runs leave exactly one row per booking; a later change rewrites only the partitions it moves;
//! `serve` keeps the table up to date by itself. Read back with DuckDB and `deltalake`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{Binary, SECRET, delta_read, duck, post_signed_to};
use crate::stub_api::{API_KEY, StubApi};

fn bridge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oncehub-bridge")).args(args).env("RUST_LOG", "warn").output().unwrap()
}

fn said(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn current(data: &Path, extra: &[&str]) -> String {
    let data = data.display().to_string();
    let out = bridge(&[&["current", "--data-dir", &data], extra].concat());
    assert!(out.status.success(), "{}", said(&out));
    said(&out)
}

/// A webhook delivery of booking `i` of the stand-in's list, in state `status`, last updated at `updated`.
fn webhook(id: &str, i: usize, status: &str, updated: DateTime<Utc>) -> Vec<u8> {
    let t = updated.to_rfc3339();
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "type": format!("booking.{status}"), "creation_time": t, "api_version": "v2",
        "data": {"object": "booking", "id": format!("BKNG-API{i:06}"), "status": status, "last_updated_time": t,
                 "owner": format!("USR-{:03}", i % 5), "subject": "Intro call"},
    }))
    .unwrap()
}

fn state(lake: &str) -> Vec<Vec<Value>> {
    duck(&format!(
        "SELECT count(*), count(DISTINCT booking_id), count(*) FILTER (WHERE source = 'webhook'), \
         count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'no_show') \
         FROM delta_scan('{lake}/bookings_current')"
    ))
    .rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_current_has_one_latest_row_per_booking_from_webhooks_and_the_backfill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let api = StubApi::start();
    let newest = Utc::now() - chrono::Duration::days(2);
    let updated = |i: usize| newest - chrono::Duration::minutes(i as i64);
    api.seed_bookings(300, newest);
    let mut bin = Binary::serve(&data, &["--webhook-secret", SECRET, "--flush-interval", "200ms"], &[]);
    let url = bin.url();
    let lake = data.join("lake").display().to_string();

    // The backfill runs while webhooks about the same bookings arrive: 0-49 changed since the
    // list was read (completed), 50-99 the same state as listed (a tie: the webhook row wins),
    // 100-119 an older state (the listed one wins).
    let backfill = {
        let (data, base, url) = (data.display().to_string(), api.base_url(), url.clone());
        std::thread::spawn(move || {
            bridge(&[
                "backfill",
                "--api-key",
                API_KEY,
                "--api-base-url",
                &base,
                "--data-dir",
                &data,
                "--url",
                &url,
                "--webhook-secret",
                SECRET,
                "--since",
                "2020-01-01",
            ])
        })
    };
    let client = reqwest::Client::new();
    for i in 0..120 {
        let (status, at) = match i {
            0..50 => ("completed", updated(i) + chrono::Duration::hours(1)),
            50..100 => ("scheduled", updated(i)),
            _ => ("requested", updated(i) - chrono::Duration::hours(1)),
        };
        assert_eq!(post_signed_to(&client, &url, webhook(&format!("EVNT-live-{i}"), i, status, at)).await, 200);
    }
    let backfilled = backfill.join().unwrap();
    assert!(backfilled.status.success(), "{}", said(&backfilled));
    assert!(bin.terminate(Duration::from_secs(30)).success());

    let first = current(&data, &[]);
    assert!(first.contains("bookings_current: 300 bookings from 420 bookings rows"), "{first}");
    assert!(first.contains("rewrote"), "{first}");
    assert_eq!(state(&lake), vec![vec![json!(300), json!(300), json!(100), json!(50), json!(0)]]);
    let tie = duck(&format!(
        "SELECT source, status, event_id FROM delta_scan('{lake}/bookings_current') WHERE booking_id = 'BKNG-API000070'"
    ));
    assert_eq!(tie.rows, vec![vec![json!("webhook"), json!("scheduled"), json!("EVNT-live-70")]], "webhook on a tie");
    let older = duck(&format!(
        "SELECT source, status FROM delta_scan('{lake}/bookings_current') WHERE booking_id = 'BKNG-API000110'"
    ));
    assert_eq!(older.rows[0][0], json!("api"), "the listed state is newer than the webhook's");
    // An independent reader agrees: one row per booking.
    let read = delta_read(&lake, &["bookings_current"], &[], &[]);
    assert_eq!(read["bookings_current"]["rows"], 300);
    assert_eq!(read["bookings_current"]["partition_columns"], json!(["dt"]));

    // Nothing changed: nothing rewritten.
    let again = current(&data, &[]);
    assert!(again.contains("up to date"), "{again}");
    let version = delta_read(&lake, &["bookings_current"], &[], &[])["bookings_current"]["version"].clone();
    assert_eq!(version, read["bookings_current"]["version"]);

    // `serve` keeps it by itself: one booking is marked a no-show today.
    let args = ["--webhook-secret", SECRET, "--flush-interval", "200ms", "--compact-after", "1s"];
    let mut bin = Binary::serve(&data, &[&args[..], &["--maintenance-interval", "1s"]].concat(), &[]);
    let update = webhook("EVNT-noshow-1", 200, "no_show", Utc::now());
    assert_eq!(post_signed_to(&client, &bin.url(), update).await, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while state(&lake)[0][4] != json!(1) {
        assert!(std::time::Instant::now() < deadline, "serve did not update bookings_current: {:?}", state(&lake));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(bin.terminate(Duration::from_secs(30)).success());
    assert_eq!(state(&lake), vec![vec![json!(300), json!(300), json!(101), json!(50), json!(1)]]);
    let moved = duck(&format!(
        "SELECT CAST(dt AS VARCHAR), event_id FROM delta_scan('{lake}/bookings_current') WHERE booking_id = 'BKNG-API000200'"
    ));
    let today = Utc::now().date_naive().to_string();
    assert_eq!(moved.rows, vec![vec![json!(today), json!("EVNT-noshow-1")]], "in today's partition now");
    let log = std::fs::read_to_string(data.with_extension("stderr.log")).unwrap();
    assert!(log.contains("rewrote 2 of"), "the day it left and today's: {log}");
}

#[test]
fn current_on_the_plain_layout_says_it_is_a_view_there() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let out = bridge(&["current", "--data-dir", &data, "--table-format", "parquet"]);
    assert!(!out.status.success());
    assert!(said(&out).contains("the plain layout has a view (schema ddl)"), "{}", said(&out));
}
