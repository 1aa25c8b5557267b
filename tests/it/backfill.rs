//! Backfill (issue 18, first part): the stand-in API lists bookings as §11 of the API notes
//! says; `oncehub-bridge backfill` walks them within the scaled-down rate limits and delivers
//! each through the running receiver, so each lands once in the Delta `bookings` table.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use crate::helpers::{Binary, SECRET, duck};
use crate::stub_api::{API_KEY, StubApi};

fn backfill(api: &StubApi, data: &Path, url: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["backfill", "--api-key", API_KEY, "--api-base-url", &api.base_url(), "--data-dir"])
        .arg(data)
        .args(["--url", url, "--webhook-secret", SECRET, "--rate-window-requests", "6", "--rate-window", "3s"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn said(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_lands_every_booking_once_within_the_rate_limits_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let api = StubApi::start();
    api.seed_bookings(1200, Utc::now() - chrono::Duration::days(1));
    api.seed_contacts(300, Utc::now() - chrono::Duration::hours(2));
    api.set_window(6, Duration::from_secs(3));
    api.fail_next(&[429, 429]);
    let lake = dir.path().join("lake").display().to_string();
    let mut bin =
        Binary::serve(&data, &["--webhook-secret", SECRET, "--storage-url", &lake, "--flush-interval", "200ms"], &[]);
    let url = bin.url();

    let first = backfill(&api, &data, &url, &["--since", "2020-01-01"]);
    assert!(first.status.success(), "{}", said(&first));
    assert!(
        said(&first).contains("1200 bookings and 300 contacts in 15 pages (1900 new rows, 0 already in the lake"),
        "{}",
        said(&first)
    );
    let (per_window, per_second) = api.busiest(Duration::from_secs(3));
    assert!(per_window <= 6, "at most 6 requests in any 3 s: {per_window}");
    assert!(per_second <= 5, "at most 5 requests in any second: {per_second}");
    assert_eq!(api.window_limited(), 0, "the client held the window cap");
    assert!(api.booking_queries()[0].contains("expand=owner%2Ccontact%2Cconversation"), "{:?}", api.booking_queries());
    assert_eq!(api.contact_queries().len(), 3, "contacts after bookings: {:?}", api.contact_queries());

    // Again: every booking is one the lake has.
    let again = backfill(&api, &data, &url, &["--since", "2020-01-01"]);
    assert!(again.status.success(), "{}", said(&again));
    assert!(said(&again).contains("(0 new rows, 1900 already in the lake"), "{}", said(&again));

    // Interrupted after 3 pages (the key revoked), then resumed from the fourth.
    api.revoke_after(3);
    let cut = backfill(&api, &data, &url, &["--since", "2020-01-01"]);
    assert!(!cut.status.success(), "{}", said(&cut));
    assert!(said(&cut).contains("cannot list bookings"), "{}", said(&cut));
    api.unrevoke();
    let before = api.booking_queries().len();
    let resumed = backfill(&api, &data, &url, &["--resume"]);
    assert!(resumed.status.success(), "{}", said(&resumed));
    let queries = api.booking_queries()[before..].to_vec();
    // A new process does not know the requests of the one before inside the window: the
    // stand-in may answer 429 to a few, which are retried; the pages read are the 9 left.
    let pages: std::collections::BTreeSet<&String> = queries.iter().collect();
    assert_eq!(pages.len(), 9, "the resumed run reads only the pages left: {queries:?}");
    assert!(queries[0].contains("after=BKNG-API000299"), "{queries:?}");
    assert!(said(&resumed).contains("1200 bookings and 300 contacts in 15 pages"), "{}", said(&resumed));

    // `--since last`: from the last complete run's start, minus the overlap.
    let daily = backfill(&api, &data, &url, &["--since", "last"]);
    assert!(daily.status.success(), "{}", said(&daily));
    assert!(said(&daily).contains("already in the lake"), "{}", said(&daily));

    // A webhook delivery of the same kind of row says `source = webhook`.
    let event = oncehub_bridge::commands::samples::event("booking.scheduled", "EVNT-webhook-1", 0, Utc::now());
    let body = serde_json::to_vec(&event).unwrap();
    let secret = oncehub_bridge::secret::WebhookSecret::parse(SECRET).unwrap();
    let sig = oncehub_bridge::oncehub::signature::sign(&secret, Utc::now().timestamp(), &body);
    let sent = reqwest::Client::new().post(&url).header("Oncehub-Signature", sig).body(body).send().await.unwrap();
    assert_eq!(sent.status(), 200);
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let webhook = duck(&format!("SELECT source FROM delta_scan('{lake}/bookings') WHERE event_id = 'EVNT-webhook-1'"));
    assert_eq!(webhook.rows[0][0].as_str(), Some("webhook"));
    let d = duck(&format!(
        "SELECT count(*), count(DISTINCT event_id), count(DISTINCT booking_id), min(event_type), max(event_type), \
         count(*) FILTER (WHERE event_id LIKE 'BKFL-%'), count(*) FILTER (WHERE source = 'api'), \
         count(contact_id), count(contact_email), count(utm_params.source) FROM delta_scan('{lake}/bookings')"
    ));
    let row = &d.rows[0];
    assert_eq!(row[0].as_i64(), Some(1201), "one row per booking, and the webhook's: {row:?}");
    assert_eq!(row[1].as_i64(), Some(1201));
    assert_eq!(row[2].as_i64(), Some(1201));
    assert_eq!((row[3].as_str(), row[4].as_str()), (Some("backfill"), Some("booking.scheduled")));
    assert_eq!(row[5].as_i64(), Some(1200), "synthetic ids that no webhook id can equal");
    assert_eq!(row[6].as_i64(), Some(1200), "source = api");
    assert_eq!((row[7].as_i64(), row[8].as_i64()), (Some(1200), Some(1200)), "the REST-only contact, expanded");
    assert_eq!(row[9].as_i64(), Some(600), "utm_params where the booking has them");
    // The 400 conversations the expanded bookings embed, as conversations rows.
    let c = duck(&format!(
        "SELECT count(*), count(DISTINCT conversation_id), min(source), max(source), min(status) FROM delta_scan('{lake}/conversations')"
    ));
    let row = &c.rows[0];
    assert_eq!((row[0].as_i64(), row[1].as_i64()), (Some(400), Some(400)), "{row:?}");
    assert_eq!((row[2].as_str(), row[3].as_str(), row[4].as_str()), (Some("api"), Some("api"), Some("closed")));
    // The contacts list, typed, in contacts.
    let k = duck(&format!(
        "SELECT count(*), count(DISTINCT contact_id), min(source), sum(employees)::BIGINT, count(*) FILTER (WHERE has_consent), \
         count(status), count(DISTINCT owner_id), sum(len(custom_fields))::BIGINT, min(custom_fields[2].value), \
         count(*) FILTER (WHERE event_time = last_updated_time) FROM delta_scan('{lake}/contacts')"
    ));
    let row = &k.rows[0];
    assert_eq!((row[0].as_i64(), row[1].as_i64(), row[2].as_str()), (Some(300), Some(300), Some("api")), "{row:?}");
    assert_eq!(row[3].as_i64(), Some(40 * 300 + 299 * 300 / 2), "employees, typed");
    assert_eq!((row[4].as_i64(), row[5].as_i64(), row[6].as_i64()), (Some(150), Some(75), Some(5)));
    assert_eq!((row[7].as_i64(), row[8].as_str()), (Some(600), Some("0")), "custom fields, values as JSON text");
    assert_eq!(row[9].as_i64(), Some(300), "event_time is the contact's last_updated_time");
}

#[test]
fn backfill_without_a_key_or_a_first_date_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["backfill", "--webhook-secret", SECRET, "--data-dir"])
        .arg(dir.path())
        .env_remove("ONCEHUB_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(said(&out).contains("--api-key"), "{}", said(&out));
    let api = StubApi::start();
    let out = backfill(&api, dir.path(), "http://127.0.0.1:9/webhooks/oncehub", &["--since", "last"]);
    assert!(!out.status.success());
    assert!(said(&out).contains("no complete backfill yet"), "{}", said(&out));
    assert!(!said(&out).contains(API_KEY), "the key is never shown");
}

/// Waits until `<data>/backfill.json` says a run completed after `after` (it is written last).
fn wait_for_complete_run(data: &Path, after: Option<&str>) -> String {
    let path = data.join("backfill.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let state: serde_json::Value =
            std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        if let Some(done) = state["last_complete_start"].as_str()
            && state["current"].is_null()
            && Some(done) != after
        {
            return done.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no complete backfill in 90 s: {state}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_backfills_in_the_background_into_its_spool_while_webhooks_are_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let api = StubApi::start();
    api.seed_bookings(250, Utc::now() - chrono::Duration::days(1));
    api.seed_contacts(120, Utc::now() - chrono::Duration::hours(1));
    api.fail_next(&[429]);
    let lake = dir.path().join("lake").display().to_string();
    let base = api.base_url();
    let args = [
        "--webhook-secret",
        SECRET,
        "--storage-url",
        &lake,
        "--flush-interval",
        "200ms",
        "--api-key",
        API_KEY,
        "--api-base-url",
        &base,
        "--backfill-since",
        "2020-01-01",
        "--backfill-every",
        "0",
    ];
    let mut bin = Binary::serve(&data, &args, &[("RUST_LOG", "info".to_owned())]);
    // Webhooks while the backfill runs: each acknowledged, each landed once.
    let client = reqwest::Client::new();
    for i in 0..40 {
        let event =
            oncehub_bridge::commands::samples::event("booking.scheduled", &format!("EVNT-live-{i}"), i, Utc::now());
        let status = crate::helpers::post_signed_to(&client, &bin.url(), serde_json::to_vec(&event).unwrap()).await;
        assert_eq!(status, 200);
    }
    let first = wait_for_complete_run(&data, None);
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(data.with_extension("stderr.log")).unwrap();
    assert!(log.contains("backfill complete"), "{log}");
    assert!(!log.contains(API_KEY), "the key is never logged");
    let conversations = (0..250).filter(|i| i % 3 == 0).count() as i64;
    let counts = || {
        duck(&format!(
            "SELECT (SELECT count(*) FILTER (WHERE source = 'api') FROM delta_scan('{lake}/bookings')), \
             (SELECT count(*) FILTER (WHERE source = 'webhook') FROM delta_scan('{lake}/bookings')), \
             (SELECT count(*) FROM delta_scan('{lake}/contacts')), \
             (SELECT count(*) FROM delta_scan('{lake}/conversations')), \
             (SELECT count(*) - count(DISTINCT event_id) FROM delta_scan('{lake}/bookings'))"
        ))
        .rows[0]
            .clone()
    };
    let landed = counts();
    assert_eq!(landed, vec![json!(250), json!(40), json!(120), json!(conversations), json!(0)], "{landed:?}");

    // Restarted: the next run reads from the last one's start minus a day, and adds nothing.
    let before = api.booking_queries().len();
    let mut again = Binary::serve(&data, &args, &[]);
    let second = wait_for_complete_run(&data, Some(&first));
    assert!(again.terminate(Duration::from_secs(30)).success());
    assert!(second > first);
    let query = &api.booking_queries()[before];
    assert!(!query.contains("2020-01-01"), "from the last run, not the first day: {query}");
    assert_eq!(counts(), landed, "a second run adds no row");
}

#[test]
fn serve_backfill_needs_a_key_and_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .env_remove("ONCEHUB_API_KEY")
            .output()
            .unwrap()
    };
    let out = run(&["--backfill-since", "2024-01-01"]);
    assert!(!out.status.success());
    assert!(said(&out).contains("--backfill-since / ONCEHUB_BRIDGE_BACKFILL_SINCE needs --api-key"), "{}", said(&out));
    let out = run(&["--backfill-since", "January", "--api-key", API_KEY]);
    assert!(!out.status.success());
    assert!(said(&out).contains("\"January\" is not a day"), "{}", said(&out));
    assert!(!said(&out).contains(API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_larger_than_the_receiver_takes_is_skipped_not_retried_forever() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let api = StubApi::start();
    api.seed_bookings(150, Utc::now() - chrono::Duration::days(1));
    api.pad_booking(120, 64 * 1024);
    let mut bin = Binary::serve(&data, &["--webhook-secret", SECRET, "--max-body-bytes", "16KiB"], &[]);
    let out = backfill(&api, &data, &bin.url(), &["--since", "2020-01-01"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("1 larger than the receiver's --max-body-bytes, skipped"), "{}", said(&out));
    assert!(said(&out).contains("BKNG-API000120"), "the warning names it: {}", said(&out));
    // A second backfill from the same data dir while one runs is refused, not interleaved.
    let lock = std::fs::File::create(data.join("backfill.lock")).unwrap();
    lock.lock().unwrap();
    let busy = backfill(&api, &data, &bin.url(), &["--since", "last"]);
    assert!(!busy.status.success() && said(&busy).contains("another backfill is running"), "{}", said(&busy));
    drop(lock);
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let lake = data.join("lake").display().to_string();
    let d = duck(&format!("SELECT count(*) FROM delta_scan('{lake}/bookings')"));
    assert_eq!(d.rows[0][0].as_i64(), Some(149));
}
