//! The delivery inspector's page in a real browser (issue 21): Debian's Chromium, headless,
//! driven over WebDriver (`/usr/bin/chromedriver`, the `fantoccini` crate). The page loads,
//! follows deliveries of several triggers, a wrong secret, a stale signature, a retry and a dead
//! letter as they arrive (no reload), shows where each accepted one landed, renders a hostile
//! delivery's markup as text, and loads nothing from anywhere but the bridge, with every other
//! host unreachable. A screenshot is saved in `target/test-artifacts/inspector.png`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use fantoccini::{Client, ClientBuilder, Locator};
use oncehub_bridge::commands::samples;
use serde_json::{Value, json};

use crate::helpers::{Binary, SECRET, free_port, post_signed_to, wait_for_port};
use crate::inspector::mixed_deliveries;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser(profile: &std::path::Path) -> (Driver, Client) {
    let port = free_port();
    let driver = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver) is installed by the test command");
    let driver = Driver(driver);
    wait_for_port(port, Duration::from_secs(20));
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1100",
        // The network cut off: every host but the bridge's is unreachable.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({"binary": "/usr/bin/chromium", "args": args}));
    let client = ClientBuilder::rustls()
        .expect("a TLS connector")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("chromium starts under chromedriver");
    (driver, client)
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

async fn script(c: &Client, js: &str) -> Value {
    c.execute(js, vec![]).await.unwrap()
}

/// Waits until the page's deliveries table satisfies `done` (the page polls by itself).
async fn until(c: &Client, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let table = text(c, "#deliveries tbody").await;
        if done(&table) {
            return table;
        }
        assert!(Instant::now() < deadline, "the page never showed {what}:\n{table}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_page_follows_deliveries_live_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Binary::serve(&dir.path().join("data"), &["--webhook-secret", SECRET, "--flush-interval", "300ms"], &[]);
    let base = format!("http://127.0.0.1:{}", bin.port);
    let (_driver, c) = browser(&dir.path().join("profile")).await;
    c.goto(&format!("{base}/")).await.unwrap();
    script(&c, "window.loadedOnce = true; return null").await;
    until(&c, "an empty list", |_| true).await;

    // Deliveries arrive while the page is open.
    mixed_deliveries(&bin.url(), "b").await;
    let mut hostile = samples::event("booking.rescheduled", "EVNT-<i>hostile</i>", 0, Utc::now());
    hostile["data"]["subject"] = json!("<img src=x onerror=\"window.pwned=1\">");
    let client = reqwest::Client::new();
    assert_eq!(post_signed_to(&client, &bin.url(), serde_json::to_vec(&hostile).unwrap()).await, 200);

    let table = until(&c, "every accepted delivery in its table", |t| {
        t.contains("bookings:")
            && t.contains("conversations:")
            && t.contains("dead_letter (not_json):")
            && t.matches("pending").count() == 0
    })
    .await;
    for shown in [
        "EVNT-b-1",
        "booking.scheduled",
        "conversation.started",
        "duplicate",
        "invalid_signature (401)",
        "no secret matched (of 1 configured)",
        "stale_signature (401)",
        "not checked: t was -36",
        "secret 1 of 1 matched",
        "EVNT-<i>hostile</i>",
    ] {
        assert!(table.contains(shown), "the page does not show {shown:?}:\n{table}");
    }
    assert_eq!(script(&c, "return window.loadedOnce === true").await, json!(true), "updated without a reload");

    // The status panel.
    assert_eq!(text(&c, "#ready").await, "ready");
    let rejected = text(&c, "#rejected").await;
    assert!(rejected.contains("invalid_signature") && rejected.contains("stale_signature"), "{rejected}");
    assert_eq!(text(&c, "#duplicates").await, "1");
    assert_eq!(text(&c, "#dead-letters").await, "1");
    let written = text(&c, "#written").await;
    assert!(written.contains("bookings") && written.contains("conversations"), "{written}");
    assert!(text(&c, "#lag").await.contains(" s / "), "lag p50 / p99");
    let per_trigger = text(&c, "#per-trigger").await;
    assert!(per_trigger.contains("booking.rescheduled") && per_trigger.contains("conversation.started"));

    // A filter, then the hostile delivery's detail: its markup is text, no script ran.
    c.find(Locator::Css("#outcome option[value='rejected']")).await.unwrap().click().await.unwrap();
    let only = until(&c, "only rejections", |t| !t.contains("accepted") && t.contains("invalid_signature")).await;
    assert_eq!(only.matches("(401)").count(), 2, "{only}");
    c.find(Locator::Css("#outcome option[value='']")).await.unwrap().click().await.unwrap();
    until(&c, "every delivery again", |t| t.contains("EVNT-<i>hostile</i>")).await;
    let row = c.find(Locator::XPath("//tbody/tr[td[text()='EVNT-<i>hostile</i>']]")).await.unwrap();
    row.click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&c, "#detail-body").await.contains("onerror") {
        assert!(Instant::now() < deadline, "the detail did not open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let detail = text(&c, "#detail-body").await;
    assert!(detail.contains("\"subject\": \"<img src=x onerror=\\\"window.pwned=1\\\">\""), "{detail}");
    let headers = text(&c, "#detail-headers").await;
    assert!(headers.contains("s=<redacted>"), "{headers}");
    let injected =
        script(&c, "return [document.querySelectorAll('main img, main i').length, window.pwned === undefined]");
    assert_eq!(injected.await, json!([0, true]), "markup from a delivery never becomes elements");

    // Nothing but the bridge was asked for anything.
    let origins = script(&c, "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)").await;
    let origins: Vec<String> = serde_json::from_value(origins).unwrap();
    assert!(!origins.is_empty() && origins.iter().all(|o| *o == base), "{origins:?}");

    let png = c.screenshot().await.unwrap();
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("inspector.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    c.close().await.unwrap();
}
