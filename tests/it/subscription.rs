//! Subscription management against the stand-in OnceHub API (`stub_api`): `serve` registers
//! itself once across restarts, replaces a drifted or secret-less subscription (create, then
//! delete), verifies with the new secret at once and the old one for the grace period, retries
//! 429/5xx within the rate limit; the CLI commands' output and exit codes; clear one-line errors.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::Utc;
use oncehub_bridge::commands::samples;
use oncehub_bridge::oncehub::signature::sign;
use oncehub_bridge::secret::WebhookSecret;

use crate::helpers::Binary;
use crate::stub_api::{API_KEY, StubApi};

const PUBLIC: &str = "https://hooks.example.test";
const HOOK_URL: &str = "https://hooks.example.test/webhooks/oncehub";

fn api_env(stub: &StubApi) -> Vec<(&'static str, String)> {
    vec![("ONCEHUB_API_KEY", API_KEY.to_owned()), ("ONCEHUB_API_BASE_URL", stub.base_url())]
}

fn serve(stub: &StubApi, data: &Path, extra: &[&str]) -> Binary {
    let mut args = vec!["--public-url", PUBLIC, "--flush-interval", "200ms"];
    args.extend_from_slice(extra);
    Binary::serve(data, &args, &api_env(stub))
}

fn cli(stub: &StubApi, args: &[&str], env: &[(&str, String)]) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(args)
        .env_remove("ONCEHUB_API_KEY")
        .env("ONCEHUB_API_BASE_URL", stub.base_url())
        .env("ONCEHUB_BRIDGE_LOG_FORMAT", "pretty")
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stdout.contains(API_KEY) && !stderr.contains(API_KEY), "the API key is printed:\n{stdout}{stderr}");
    (out, stdout, stderr)
}

/// Posts one sample delivery signed with `secret`; the status.
async fn deliver(bin: &Binary, secret: &str) -> u16 {
    let event = samples::event("booking.scheduled", &format!("EVNT-{}", uuid::Uuid::now_v7().simple()), 0, Utc::now());
    let body = serde_json::to_vec(&event).unwrap();
    let signature = sign(&WebhookSecret::parse(secret).unwrap(), Utc::now().timestamp(), &body);
    let client = reqwest::Client::new();
    client.post(bin.url()).header("Oncehub-Signature", signature).body(body).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_registers_once_across_restarts_and_the_secret_verifies_at_once() {
    let stub = StubApi::start();
    let other = stub.seed("someone else", "https://elsewhere.example/hook", &["booking.scheduled"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut ids = Vec::new();
    for round in 0..3 {
        let admin = crate::helpers::free_port();
        let mut bin = serve(&stub, &data, &["--admin-listen", &format!("127.0.0.1:{admin}")]);
        let hooks = stub.hooks();
        assert_eq!(hooks.len(), 2, "round {round}: {hooks:?}");
        let ours = hooks.iter().find(|h| h.url == HOOK_URL).expect("a subscription for our URL");
        assert_eq!(ours.events.len(), 11);
        assert_eq!(ours.name, "oncehub-bridge hooks.example.test");
        ids.push(ours.id.clone());
        assert_eq!(deliver(&bin, &ours.secret).await, 200, "the subscription's secret verifies");
        assert_eq!(deliver(&bin, "not-the-secret").await, 401);
        crate::helpers::wait_for_port(admin, Duration::from_secs(10));
        let ready: serde_json::Value =
            reqwest::get(format!("http://127.0.0.1:{admin}/readyz")).await.unwrap().json().await.unwrap();
        assert_eq!(ready["checks"]["subscription"], "ok", "{ready}");
        assert!(bin.terminate(Duration::from_secs(30)).success());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "restarts reuse the subscription: {ids:?}");
    // send-test-event finds the subscription's secret in the data dir.
    let bin = serve(&stub, &data, &[]);
    let out = crate::helpers::send_test_events(&bin.url(), &data);
    assert_eq!(out.matches("-> 200 OK").count(), crate::helpers::test_event_counts().0, "{out}");
    drop(bin);
    assert!(stub.hooks().iter().any(|h| h.id == other.id), "a subscription for another URL is left alone");
    let state = data.join("subscription.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!data.join("webhook-secret").exists(), "no local secret is generated when OnceHub provides one");
    let log = std::fs::read_to_string(data.with_extension("stderr.log")).unwrap();
    assert_eq!(log.matches("created the OnceHub subscription").count(), 1, "{log}");
    assert_eq!(log.matches("reusing the OnceHub subscription").count(), 3, "{log}");
    assert!(!log.contains(&stub.hooks()[1].secret), "the secret is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_or_a_lost_secret_replaces_the_subscription_and_the_old_secret_has_a_grace_period() {
    let stub = StubApi::start();
    // A subscription for our URL made elsewhere: its secret is not known here.
    let foreign = stub.seed("oncehub-bridge hooks.example.test", HOOK_URL, &["booking"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let mut bin = serve(&stub, &data, &["--events", "booking.scheduled,booking.canceled"]);
    let hooks = stub.hooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let first = hooks[0].clone();
    assert_ne!(first.id, foreign.id, "replaced: its secret was unknown");
    assert_eq!(first.events, ["booking.canceled", "booking.scheduled"]);
    assert!(bin.terminate(Duration::from_secs(30)).success());

    // The events change: delete + create; both secrets verify (the old one during the grace).
    let mut bin = serve(&stub, &data, &[]);
    let hooks = stub.hooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let second = hooks[0].clone();
    assert_ne!(second.id, first.id);
    assert_eq!(second.events.len(), 11);
    assert_eq!(deliver(&bin, &second.secret).await, 200);
    assert_eq!(deliver(&bin, &first.secret).await, 200, "deliveries signed in flight with the old secret");
    assert!(bin.terminate(Duration::from_secs(30)).success());

    // The URL changes, with no grace: the replaced secret is refused at once.
    let mut bin =
        Binary::serve(&data, &["--public-url", "https://new.example.test/", "--secret-grace", "0s"], &api_env(&stub));
    let hooks = stub.hooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0].url, "https://new.example.test/webhooks/oncehub");
    assert_eq!(deliver(&bin, &hooks[0].secret).await, 200);
    assert_eq!(deliver(&bin, &second.secret).await, 401);
    assert_eq!(deliver(&bin, &first.secret).await, 200, "an earlier secret keeps its own grace period");
    assert!(bin.terminate(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_are_retried_without_going_over_the_limit() {
    let stub = StubApi::start();
    // Twelve stale subscriptions for our URL: cleaning up takes 14 calls, more than 5 per second.
    for i in 0..12 {
        stub.seed(&format!("stale {i}"), HOOK_URL, &["booking"]);
    }
    stub.fail_next(&[429, 503, 429]);
    let dir = tempfile::tempdir().unwrap();
    let mut bin = serve(&stub, &dir.path().join("data"), &[]);
    let hooks = stub.hooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(deliver(&bin, &hooks[0].secret).await, 200);
    assert_eq!(stub.rate_limited(), 0, "the client paced itself under 5 requests/s");
    let calls = stub.calls();
    assert_eq!(calls.iter().filter(|c| c.starts_with("DELETE")).count(), 12, "{calls:?}");
    assert_eq!(calls.iter().filter(|c| c.starts_with("POST")).count(), 1, "{calls:?}");
    let log = bin.stderr();
    assert_eq!(log.matches("OnceHub API call failed").count(), 3, "{log}");
    assert!(log.contains("req_1") && log.contains("req_2"), "the Request-Id of each failed call is logged: {log}");
    assert!(bin.terminate(Duration::from_secs(30)).success());
}

#[test]
fn the_commands_register_list_and_unregister() {
    let stub = StubApi::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let key = [("ONCEHUB_API_KEY", API_KEY.to_owned())];

    let (out, stdout, _) =
        cli(&stub, &["register", "--url", PUBLIC, "--events", "booking.no_show", "--data-dir", &data], &key);
    assert!(out.status.success(), "{stdout}");
    let hook = stub.hooks()[0].clone();
    assert!(stdout.contains(&format!("registered {} -> {HOOK_URL} (1 events: booking.no_show)", hook.id)), "{stdout}");
    assert!(stdout.contains("subscription.json") && !stdout.contains(&hook.secret), "{stdout}");
    let (out, stdout, _) = cli(
        &stub,
        &["register", "--url", PUBLIC, "--events", "booking.no_show", "--data-dir", &data, "--show-secret"],
        &key,
    );
    assert!(out.status.success());
    assert!(
        stdout.contains(&format!("already registered: {}", hook.id))
            && stdout.contains(&format!("secret: {}", hook.secret)),
        "{stdout}"
    );
    stub.seed("second", "https://b.example/webhooks/oncehub", &["conversation.started"]);

    let (out, stdout, _) = cli(&stub, &["list"], &key);
    assert!(out.status.success());
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID")
            && lines[0].contains("NAME")
            && lines[0].contains("EVENTS")
            && lines[0].contains("CREATED")
    );
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines.iter().any(|l| l.contains(&hook.id) && l.contains(HOOK_URL) && l.contains("booking.no_show")),
        "{stdout}"
    );

    let (out, stdout, _) = cli(&stub, &["unregister", "--name", "second"], &key);
    assert!(out.status.success() && stdout.starts_with("deleted WHK-"), "{stdout}");
    let (out, stdout, _) = cli(&stub, &["unregister", "--url", PUBLIC, "--data-dir", &data], &key);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("deleted {}", hook.id)) && stdout.contains("forgot its secret"), "{stdout}");
    assert!(stub.hooks().is_empty());
    assert!(!Path::new(&data).join("subscription.json").exists());
    let (out, _, stderr) = cli(&stub, &["unregister", "WHK-NOPE"], &key);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("404") && stderr.contains("No such webhook"), "{stderr}");
    let (out, _, stderr) = cli(&stub, &["list"], &[("ONCEHUB_API_KEY", "   ".to_owned())]);
    assert!(!out.status.success() && stderr.contains("no OnceHub API key"), "{stderr}");
}

#[test]
fn failures_are_one_clear_line_and_a_non_zero_exit() {
    let stub = StubApi::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let key = [("ONCEHUB_API_KEY", API_KEY.to_owned())];
    let one_line = |stderr: &str| {
        assert_eq!(stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    };

    let (out, _, stderr) = cli(&stub, &["list"], &[("ONCEHUB_API_KEY", "ohk_wrong_key_value".to_owned())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("401") && stderr.contains("--api-key") && !stderr.contains("ohk_wrong_key_value"),
        "{stderr}"
    );
    one_line(&stderr);

    stub.set_forbidden(true);
    let (out, _, stderr) = cli(&stub, &["register", "--url", PUBLIC, "--data-dir", &data], &key);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("403") && stderr.contains("Enterprise"), "{stderr}");
    one_line(&stderr);
    stub.set_forbidden(false);

    let (out, _, stderr) = cli(&stub, &["register", "--url", "http://hooks.example.test", "--data-dir", &data], &key);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("https"), "{stderr}");
    one_line(&stderr);

    stub.seed("taken", "https://other.example/webhooks/oncehub", &["booking"]);
    let (out, _, stderr) = cli(&stub, &["register", "--url", PUBLIC, "--name", "taken", "--data-dir", &data], &key);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("409") && stderr.contains("`name`") && stderr.contains("another name"), "{stderr}");
    one_line(&stderr);

    // serve with a bad key stops before listening, with the same kind of line.
    let (out, _, stderr) = cli(
        &stub,
        &["serve", "--public-url", PUBLIC, "--data-dir", &data, "--listen", "127.0.0.1:0"],
        &[("ONCEHUB_API_KEY", "ohk_wrong_key_value".to_owned())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("401") && !stderr.contains("ohk_wrong_key_value"), "{stderr}");
    one_line(&stderr);
    let (out, _, stderr) = cli(&stub, &["serve", "--data-dir", &data, "--listen", "127.0.0.1:0"], &key);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("--public-url"), "{stderr}");
}

#[test]
fn list_reads_every_page() {
    let stub = StubApi::start();
    for i in 0..230 {
        stub.seed(&format!("hook {i:03}"), &format!("https://h{i}.example/webhooks/oncehub"), &["booking"]);
    }
    let (out, stdout, _) = cli(&stub, &["list"], &[("ONCEHUB_API_KEY", API_KEY.to_owned())]);
    assert!(out.status.success());
    assert_eq!(stdout.lines().count(), 231, "a header and 230 rows");
    for i in [0, 99, 100, 229] {
        assert!(stdout.contains(&format!("hook {i:03}")), "hook {i} missing");
    }
    assert_eq!(stub.calls(), ["GET /v2/webhooks"; 3], "pages of 100 with after=<last id>");
    assert_eq!(stub.rate_limited(), 0);
}
