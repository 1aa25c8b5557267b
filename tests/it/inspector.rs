//! The delivery inspector (issue 21) over a real socket: each delivery's outcome, signature
//! result and table, the counters, the filters, the detail of a signed delivery (its signature
//! redacted) and none for an unsigned one; who may open it (loopback, a token, nobody) and
//! `--inspector off`. The page itself in a real browser: `browser.rs`.

use std::time::{Duration, Instant};

use chrono::Utc;
use oncehub_bridge::commands::samples;
use oncehub_bridge::oncehub::signature::sign;
use oncehub_bridge::secret::WebhookSecret;
use serde_json::Value;

use crate::helpers::{Binary, SECRET, free_port, post_signed_to, wait_for_port};
use crate::stub_api::{API_KEY, StubApi};

pub async fn get(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// Signed deliveries of several triggers, a retry, a dead letter, a wrong secret and a stale
/// signature, to `url`.
pub async fn mixed_deliveries(url: &str, tag: &str) {
    let client = reqwest::Client::new();
    let booking = samples::event("booking.scheduled", &format!("EVNT-{tag}-1"), 0, Utc::now());
    let conversation = samples::event("conversation.started", &format!("EVNT-{tag}-2"), 0, Utc::now());
    for e in [&booking, &conversation, &booking] {
        assert_eq!(post_signed_to(&client, url, serde_json::to_vec(e).unwrap()).await, 200);
    }
    assert_eq!(post_signed_to(&client, url, b"{not json".to_vec()).await, 200, "a dead letter is still kept");
    let body =
        serde_json::to_vec(&samples::event("booking.canceled", &format!("EVNT-{tag}-3"), 1, Utc::now())).unwrap();
    let wrong = WebhookSecret::parse("not-the-secret").unwrap();
    let sent = client.post(url).header("Oncehub-Signature", sign(&wrong, Utc::now().timestamp(), &body));
    assert_eq!(sent.body(body.clone()).send().await.unwrap().status(), 401);
    let right = WebhookSecret::parse(SECRET).unwrap();
    let stale = sign(&right, Utc::now().timestamp() - 3600, &body);
    assert_eq!(client.post(url).header("Oncehub-Signature", stale).body(body).send().await.unwrap().status(), 401);
}

/// Polls `/api/deliveries` until every accepted delivery has landed.
pub async fn landed(base: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, list) = get(&format!("{base}/api/deliveries")).await;
        let all = list["deliveries"].as_array().cloned().unwrap_or_default();
        if !all.is_empty() && all.iter().filter(|d| d["outcome"] == "accepted").all(|d| d["landed"].is_object()) {
            return all;
        }
        assert!(Instant::now() < deadline, "accepted deliveries did not land: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_shows_each_delivery_its_outcome_signature_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Binary::serve(&dir.path().join("data"), &["--webhook-secret", SECRET, "--flush-interval", "200ms"], &[]);
    let base = format!("http://127.0.0.1:{}", bin.port);
    mixed_deliveries(&bin.url(), "i").await;
    let all = landed(&base).await;
    assert_eq!(all.len(), 6, "{all:#?}");
    let by_outcome = |o: &str| all.iter().filter(|d| d["outcome"] == o).cloned().collect::<Vec<_>>();
    let accepted = by_outcome("accepted");
    let table = |event_id: Option<&str>| {
        accepted.iter().find(|d| d["event_id"].as_str() == event_id).map(|d| d["landed"]["table"].clone())
    };
    assert_eq!(table(Some("EVNT-i-1")), Some("bookings".into()));
    assert_eq!(table(Some("EVNT-i-2")), Some("conversations".into()));
    let dead = accepted.iter().find(|d| d["event_id"].is_null()).unwrap();
    assert_eq!((&dead["landed"]["table"], &dead["landed"]["reason"]), (&"dead_letter".into(), &"not_json".into()));
    assert!(accepted.iter().all(|d| d["signature"] == "secret 1 of 1 matched" && d["status"] == 200));
    assert!(accepted[0]["landed"]["key"].as_str().unwrap().ends_with(".parquet"));
    assert_eq!(by_outcome("duplicate").len(), 1);
    let wrong = &by_outcome("invalid_signature")[0];
    assert_eq!((&wrong["status"], &wrong["signature"]), (&401.into(), &"no secret matched (of 1 configured)".into()));
    assert_eq!(wrong["has_body"], false, "a body nobody signed is not shown");
    let stale = &by_outcome("stale_signature")[0];
    let said = stale["signature"].as_str().unwrap();
    assert!(said.starts_with("not checked: t was -36") && said.ends_with("s from now (tolerance 300 s)"), "{said}");

    // A signed delivery's detail: the body, pretty, and the headers with `s` redacted.
    let id = accepted.iter().find(|d| d["event_id"] == "EVNT-i-1").unwrap()["id"].as_u64().unwrap();
    let (status, detail) = get(&format!("{base}/api/deliveries/{id}")).await;
    assert_eq!(status, 200);
    assert!(detail["body"].as_str().unwrap().contains("\n  \"id\": \"EVNT-i-1\""), "{detail}");
    let headers = detail["headers"].as_array().unwrap();
    let signature = headers.iter().find(|h| h[0] == "oncehub-signature").unwrap()[1].as_str().unwrap();
    assert!(signature.starts_with("t=") && signature.ends_with(",s=<redacted>"), "{signature}");
    let (_, unsigned) = get(&format!("{base}/api/deliveries/{}", wrong["id"])).await;
    assert!(unsigned["body"].is_null() && unsigned["headers"].as_array().unwrap().is_empty());
    assert_eq!(get(&format!("{base}/api/deliveries/999999")).await.0, 404);

    // Filters.
    let (_, rejected) = get(&format!("{base}/api/deliveries?outcome=rejected")).await;
    assert_eq!(rejected["deliveries"].as_array().unwrap().len(), 2);
    let (_, bookings) = get(&format!("{base}/api/deliveries?trigger=booking.scheduled&outcome=accepted")).await;
    assert_eq!(bookings["deliveries"].as_array().unwrap().len(), 1, "{bookings}");
    let (_, copies) = get(&format!("{base}/api/deliveries?trigger=booking.scheduled")).await;
    assert_eq!(copies["deliveries"].as_array().unwrap().len(), 2, "the booking and its retry");

    // The status panel's counters.
    let (_, s) = get(&format!("{base}/api/status")).await;
    assert_eq!(s["ready"]["ready"], true, "{s}");
    assert_eq!(s["deliveries"]["since_start"]["booking.scheduled"], 1, "accepted ones: the retry is a duplicate");
    assert_eq!(s["deliveries"]["last_hour"]["conversation.started"], 1);
    assert_eq!((&s["rejected"]["invalid_signature"], &s["rejected"]["stale_signature"]), (&1.into(), &1.into()));
    assert_eq!((&s["duplicates"], &s["dead_letters"]), (&1.into(), &1.into()));
    assert_eq!(s["written"]["bookings"]["rows"], 1);
    assert!(s["lag_seconds"]["p50"].as_f64().unwrap() > 0.0 && s["lag_seconds"]["samples"] == 3);
    assert!(s["last_accepted"].is_string());

    // The page: embedded, with a strict policy.
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"/inspector.js\"") && !html.contains("http"), "no external asset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_is_closed_off_loopback_opens_with_the_token_and_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    // Admin routes on every address, no token: nobody sees the inspector.
    let admin = free_port();
    let open_admin = format!("0.0.0.0:{admin}");
    let bin = Binary::serve(&dir.path().join("a"), &["--webhook-secret", SECRET, "--admin-listen", &open_admin], &[]);
    wait_for_port(admin, Duration::from_secs(10));
    for path in ["/", "/api/status", "/api/deliveries", "/inspector.js"] {
        assert_eq!(reqwest::get(format!("http://127.0.0.1:{admin}{path}")).await.unwrap().status(), 404, "{path}");
    }
    assert_eq!(reqwest::get(format!("http://127.0.0.1:{admin}/readyz")).await.unwrap().status(), 200);
    assert!(bin.stderr().contains("set --admin-token (ONCEHUB_BRIDGE_ADMIN_TOKEN) to open it"), "{}", bin.stderr());
    drop(bin);

    // With a token: 401 (the login form) without it or with a wrong one, 200 with it.
    let admin = free_port();
    let token = "let-me-in-0123456789";
    let args = ["--webhook-secret", SECRET, "--admin-listen", &format!("0.0.0.0:{admin}"), "--admin-token", token];
    let bin = Binary::serve(&dir.path().join("b"), &args, &[]);
    wait_for_port(admin, Duration::from_secs(10));
    let base = format!("http://127.0.0.1:{admin}");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let bare = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(bare.status(), 401);
    assert!(bare.text().await.unwrap().contains("<form method=\"post\" action=\"/login\">"));
    let wrong = client.get(format!("{base}/api/status")).bearer_auth("let-me-in-012345678").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client.get(format!("{base}/api/status")).bearer_auth(token).send().await.unwrap();
    assert_eq!(right.status(), 200);
    let login = |t: &'static str| client.post(format!("{base}/login")).form(&[("token", t)]).send();
    assert_eq!(login("nope").await.unwrap().status(), 401);
    let signed_in = login(token).await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let page = client.get(format!("{base}/")).header("Cookie", &pair).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Recent deliveries"));
    assert!(!bin.stderr().contains(token), "the token is never logged");
    drop(bin);

    // Loopback: open, but not to a page that rebinds its own host name to 127.0.0.1.
    let bin = Binary::serve(&dir.path().join("c"), &["--webhook-secret", SECRET], &[]);
    let base = format!("http://127.0.0.1:{}", bin.port);
    assert_eq!(reqwest::get(format!("{base}/api/status")).await.unwrap().status(), 200);
    let rebound = client.get(format!("{base}/api/status")).header("Host", "evil.example").send().await.unwrap();
    assert_eq!(rebound.status(), 404);
    let proxied = client.get(format!("{base}/")).header("X-Forwarded-For", "203.0.113.9").send().await.unwrap();
    assert_eq!(proxied.status(), 404, "a proxy passed it on: not a local request");
    drop(bin);

    // A public webhook listener (--public-url): loopback proves nothing there, so the inspector on
    // it is closed; opened with the token, it shows the managed subscription.
    let api = StubApi::start();
    let env = [("ONCEHUB_API_KEY", API_KEY.to_owned()), ("ONCEHUB_API_BASE_URL", api.base_url())];
    let public = ["--public-url", "https://hooks.example.test"];
    let bin = Binary::serve(&dir.path().join("e"), &public, &env);
    let base = format!("http://127.0.0.1:{}", bin.port);
    assert_eq!(reqwest::get(format!("{base}/api/status")).await.unwrap().status(), 404);
    assert!(bin.stderr().contains("the webhook listener is public (--public-url)"), "{}", bin.stderr());
    drop(bin);
    let bin = Binary::serve(&dir.path().join("e"), &[&public[..], &["--admin-token", token]].concat(), &env);
    let base = format!("http://127.0.0.1:{}", bin.port);
    let status: Value =
        client.get(format!("{base}/api/status")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    let hook = &api.hooks()[0];
    assert_eq!(status["subscription"]["id"], hook.id.as_str(), "{status}");
    assert_eq!(status["subscription"]["url"], "https://hooks.example.test/webhooks/oncehub");
    assert!(status["subscription"]["events"].as_array().is_some_and(|e| !e.is_empty()));
    assert!(!status.to_string().contains(&hook.secret), "the subscription's secret is not shown");
    drop(bin);

    // A token too short to protect customer data is refused at start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-token", "short", "--data-dir"])
        .arg(dir.path().join("f"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 characters"));

    // --inspector off: nothing recorded, nothing served.
    let bin = Binary::serve(&dir.path().join("d"), &["--webhook-secret", SECRET, "--inspector", "off"], &[]);
    let base = format!("http://127.0.0.1:{}", bin.port);
    for path in ["/", "/api/status", "/api/deliveries"] {
        assert_eq!(reqwest::get(format!("{base}{path}")).await.unwrap().status(), 404, "{path}");
    }
}
