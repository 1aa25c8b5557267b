//! Logs: JSON lines off a terminal and readable text on request, one line per rejected delivery
//! with its reason, and no credential in any log line, error message or response, whatever fails.

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use oncehub_bridge::commands::samples;
use oncehub_bridge::oncehub::signature::sign;
use oncehub_bridge::secret::WebhookSecret;
use serde_json::Value;

use crate::helpers::{Binary, DeadStore, S3Server, free_port, wait_for_port};
use crate::stub_api::StubApi;

fn wait_for(bin: &Binary, text: &str) {
    let start = Instant::now();
    while !bin.stderr().contains(text) {
        assert!(start.elapsed() < Duration::from_secs(20), "no {text:?} in the log: {}", bin.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_off_a_terminal_and_text_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut bin = Binary::serve(&dir.path().join("json"), &["--webhook-secret", "s3cr3t-for-json"], &[]);
    let client = reqwest::Client::new();
    let stale = format!("t={},s={}", Utc::now().timestamp() - 3600, "00".repeat(32));
    let resp = client.post(bin.url()).header("Oncehub-Signature", stale).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let log = bin.stderr();
    let lines: Vec<Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect();
    assert!(
        lines.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string()),
        "{log}"
    );
    let rejected: Vec<&Value> = lines.iter().filter(|l| l["message"] == "delivery rejected").collect();
    assert_eq!(rejected.len(), 1, "{log}");
    assert_eq!((&rejected[0]["reason"], &rejected[0]["status"]), (&"stale_signature".into(), &401.into()));

    let mut bin =
        Binary::serve(&dir.path().join("pretty"), &["--webhook-secret", "s3cr3t", "--log-format", "pretty"], &[]);
    wait_for(&bin, "ready");
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let log = bin.stderr();
    assert!(log.lines().all(|l| !l.starts_with('{')), "{log}");
    assert!(log.lines().any(|l| l.contains(" INFO ") && l.contains("oncehub-bridge ready")), "{log}");
}

const API_KEY: &str = "ohk_live_APIKEY_must_not_leak_7f3a";
const WEBHOOK_SECRETS: [&str; 2] = ["whsec_FIRST_must_not_leak_91c2", "whsec_SECOND_must_not_leak_44d0"];
const ACCESS_KEY: &str = "AKIA_ACCESS_must_not_leak_0b1e";
const SECRET_KEY: &str = "aws_SECRET_must_not_leak_c8d7e6f5";
const ADMIN_TOKEN: &str = "admin_TOKEN_must_not_leak_77aa";

/// Every credential this test hands the bridge, and how much of one may not show.
fn assert_no_credential(what: &str, text: &str) {
    for credential in [API_KEY, WEBHOOK_SECRETS[0], WEBHOOK_SECRETS[1], ACCESS_KEY, SECRET_KEY, ADMIN_TOKEN] {
        // Any 12-character run of a credential is a leak, not only the whole of it.
        let leaked = (0..=credential.len() - 12).map(|i| &credential[i..i + 12]).find(|part| text.contains(part));
        assert!(leaked.is_none(), "{what} leaks {leaked:?} of a credential:\n{text}");
    }
}

fn credential_env(s3_port: u16, api: &StubApi) -> Vec<(&'static str, String)> {
    vec![
        ("ONCEHUB_API_KEY", API_KEY.into()),
        ("ONCEHUB_API_BASE_URL", api.base_url()),
        ("ONCEHUB_BRIDGE_PUBLIC_URL", "https://hooks.example.test".into()),
        ("ONCEHUB_WEBHOOK_SECRET", WEBHOOK_SECRETS.join(",")),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{s3_port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("ONCEHUB_BRIDGE_ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ("RUST_LOG", "trace".into()),
    ]
}

/// Bad deliveries of every kind; the response bodies, for the leak check.
async fn hostile_deliveries(url: &str) -> String {
    let client = reqwest::Client::new();
    let good = serde_json::to_vec(&samples::all_events("leak", Utc::now())[0]).unwrap();
    let wrong = WebhookSecret::parse("not-the-secret").unwrap();
    let now = Utc::now().timestamp();
    let first = WebhookSecret::parse(WEBHOOK_SECRETS[0]).unwrap();
    let requests = [
        (None, good.clone()),
        (Some(sign(&wrong, now, &good)), good.clone()),
        (Some(sign(&first, now - 7200, &good)), good.clone()),
        (Some("t=1,s=zz".to_owned()), good.clone()),
        (Some(sign(&first, now, &[b'x'; 2 << 20])), vec![b'x'; 2 << 20]),
        (Some(sign(&first, now, b"{not json")), b"{not json".to_vec()),
        (Some(sign(&first, now, &good)), good.clone()),
    ];
    let mut bodies = String::new();
    for (signature, body) in requests {
        let mut req = client.post(url).body(body);
        if let Some(s) = signature {
            req = req.header("Oncehub-Signature", s);
        }
        // An oversized body's connection is closed at once (the rest is not read): the client may
        // see that before the 413. Its error text is checked for leaks like any answer.
        match req.send().await {
            Ok(resp) => bodies.push_str(&format!("{} {}\n", resp.status(), resp.text().await.unwrap_or_default())),
            Err(e) => bodies.push_str(&format!("closed: {e}\n")),
        }
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_a_log_line_an_error_or_a_response_whatever_fails() {
    // The check itself catches a partial leak.
    let partial = format!("key={}…", &SECRET_KEY[4..18]);
    assert!(std::panic::catch_unwind(|| assert_no_credential("self-check", &partial)).is_err());
    let dir = tempfile::tempdir().unwrap();
    let bin_path = env!("CARGO_BIN_EXE_oncehub-bridge");

    // 1. The store refuses the credentials (a real S3 server with other keys), logs at trace;
    //    the subscription is registered (its secret is one more credential) and OnceHub answers
    //    429 and 500 on the way.
    let api = StubApi::start_with_key(API_KEY);
    api.fail_next(&[429, 500]);
    let s3 = S3Server::start(&dir.path().join("s3"));
    let admin_port = free_port();
    let admin = format!("127.0.0.1:{admin_port}");
    let args = [
        "--storage-url",
        "s3://lake/x",
        "--flush-interval",
        "200ms",
        "--shutdown-timeout",
        "1s",
        "--admin-listen",
        admin.as_str(),
    ];
    let mut bin = Binary::serve(&dir.path().join("refused"), &args, &credential_env(s3.port, &api));
    wait_for_port(admin_port, Duration::from_secs(10));
    let subscription_secret = api.hooks()[0].secret.clone();
    let mut seen = hostile_deliveries(&bin.url()).await;
    wait_for(&bin, "the store refuses writes, and retrying will not fix it");
    let ready = reqwest::get(format!("http://{admin}/readyz")).await.unwrap().text().await.unwrap();
    assert!(ready.contains("not_ready"), "{ready}");
    seen.push_str(&ready);
    seen.push_str(&reqwest::get(format!("http://{admin}/metrics")).await.unwrap().text().await.unwrap());
    // The inspector's page and JSON, every delivery's detail included (signature headers and all).
    let client = reqwest::Client::new();
    let mut inspected = String::new();
    let paths = ["/".to_owned(), "/api/status".into(), "/api/deliveries".into()];
    for path in paths.into_iter().chain((1..=8).map(|id| format!("/api/deliveries/{id}"))) {
        let resp = client.get(format!("http://{admin}{path}")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        inspected.push_str(&format!("{path}: {} {}\n", resp.status(), resp.text().await.unwrap()));
    }
    assert!(inspected.contains("invalid_signature") && inspected.contains("stale_signature"), "{inspected}");
    assert!(inspected.contains("s=<redacted>"), "{inspected}");
    seen.push_str(&inspected);
    let _ = bin.terminate(Duration::from_secs(10)); // the deadline passes: the upload never succeeds
    let log = bin.stderr();
    assert_no_credential("a store refusing the credentials", &format!("{log}{seen}"));
    assert!(!log.contains(&subscription_secret), "the subscription's secret is logged");

    // 2. The store is down.
    let port = free_port();
    let dead = DeadStore::hold(port);
    let mut bin = Binary::serve(&dir.path().join("down"), &args[..6], &credential_env(port, &api));
    let seen = hostile_deliveries(&bin.url()).await;
    wait_for(&bin, "store write failed; retrying");
    let _ = bin.terminate(Duration::from_secs(10));
    assert_no_credential("a store that is down", &format!("{}{seen}", bin.stderr()));
    drop(dead);

    // 3. Start-up failures and CLI errors, each with every credential in its environment: the API
    //    refuses the key, the plan has no API access, invalid settings, nothing listening.
    let refusing = StubApi::start_with_key("a-different-key");
    let forbidden = StubApi::start_with_key(API_KEY);
    forbidden.set_forbidden(true);
    let failing: [&[&str]; 9] = [
        &["list", "--api-base-url", &refusing.base_url()],
        &["serve", "--api-base-url", &refusing.base_url()],
        &["register", "--url", "https://x.example", "--api-base-url", &forbidden.base_url()],
        &["check", "--api-base-url", &refusing.base_url(), "--probe-timeout", "1s"],
        &["config", "check", "--flush-interval", "0s"],
        &["serve", "--storage-url", "ftp://AKIA_ACCESS_must_not_leak_0b1e:aws_SECRET_must_not_leak_c8d7e6f5@host/x"],
        &["serve", "--webhook-secret", "whsec_FIRST_must_not_leak_91c2,,x"],
        &["serve", "--listen", "256.0.0.1:1"],
        &["send-test-event", "--all", "--url", "http://127.0.0.1:9/webhooks/oncehub"],
    ];
    for argv in failing {
        let out = Command::new(bin_path)
            .args(argv)
            .envs(credential_env(port, &api))
            .env("ONCEHUB_BRIDGE_DATA_DIR", dir.path().join("cli"))
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{argv:?} should fail");
        assert!(!text.contains("Usage:"), "{argv:?} fails for its own reason, not the command line: {text}");
        assert_no_credential(&format!("{argv:?}"), &text);
    }
}
