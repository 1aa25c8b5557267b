//! `check` against a real deployment (the binary, s3s-fs, the stand-in OnceHub API): all five
//! checks pass, then each fails for its own reason with a line saying what to do, and the exit
//! code follows. `/readyz` notices a deleted subscription.

use std::process::Command;

use crate::helpers::{Binary, DeadStore, S3Server, free_port};
use crate::stub_api::{API_KEY, StubApi};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn line(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l[6..].starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} line: {}", self.stdout))
    }
}

#[test]
fn check_passes_on_a_working_deployment_and_names_each_failure() {
    let stub = StubApi::start();
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    let data = dir.path().join("data");
    let data_arg = data.to_string_lossy().into_owned();
    let mut env = S3Server::env(s3.port);
    env.push(("ONCEHUB_API_KEY", API_KEY.to_owned()));
    env.push(("ONCEHUB_API_BASE_URL", stub.base_url()));
    env.push(("ONCEHUB_BRIDGE_PUBLIC_URL", "https://hooks.example.test".to_owned()));
    env.push(("ONCEHUB_BRIDGE_STORAGE_URL", "s3://lake/oncehub".to_owned()));
    env.push(("ONCEHUB_BRIDGE_FLUSH_INTERVAL", "200ms".to_owned()));
    let admin = free_port();
    let bin = Binary::serve(&data, &["--admin-listen", &format!("127.0.0.1:{admin}")], &env);
    let receiver = format!("http://127.0.0.1:{}", bin.port);

    let check = |extra: &[&str], overrides: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
            .args(["check", "--data-dir", &data_arg, "--receiver-url", &receiver, "--probe-timeout", "20s"])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(overrides.iter().copied())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stdout.contains(API_KEY) && !stderr.contains(API_KEY));
        Run { code: out.status.code(), stdout, stderr: stderr.into_owned() }
    };

    let all = check(&[], &[]);
    assert_eq!(all.code, Some(0), "{}", all.stdout);
    assert_eq!(all.stdout.lines().filter(|l| l.starts_with("ok  ")).count(), 5, "{}", all.stdout);
    assert!(all.line("api key").contains("Stand-in Account"));
    assert!(all.line("subscription").contains("https://hooks.example.test/webhooks/oncehub (11 events)"));
    assert!(all.line("end-to-end").contains("in the lake"), "{}", all.stdout);
    assert!(all.stderr.contains("waiting for the probe") && all.stderr.contains("next flush"), "{}", all.stderr);

    let drift = check(&["--events", "booking.scheduled,booking.canceled"], &[]);
    assert_eq!(drift.code, Some(1));
    assert!(
        drift.line("subscription").starts_with("FAIL")
            && drift.line("subscription").contains("extra: booking.canceled_reschedule_requested"),
        "{}",
        drift.stdout
    );

    let bad_key = check(&[], &[("ONCEHUB_API_KEY", "ohk_wrong")]);
    assert_eq!(bad_key.code, Some(1));
    assert!(
        bad_key.line("api key").starts_with("FAIL") && bad_key.line("api key").contains("401"),
        "{}",
        bad_key.stdout
    );

    let dead_port = free_port();
    let dead = DeadStore::hold(dead_port);
    let endpoint = format!("http://127.0.0.1:{dead_port}");
    let no_store = check(&[], &[("AWS_ENDPOINT_URL", &endpoint)]);
    assert_eq!(no_store.code, Some(1));
    assert!(
        no_store.line("storage").starts_with("FAIL") && no_store.line("storage").contains("credentials"),
        "{}",
        no_store.stdout
    );
    assert!(no_store.line("api key").starts_with("ok"), "only the store is down");
    drop(dead);

    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let no_receiver = check(&["--receiver-url", &nowhere], &[]);
    assert_eq!(no_receiver.code, Some(1));
    assert!(
        no_receiver.line("receiver").starts_with("FAIL")
            && no_receiver.line("receiver").contains("start `oncehub-bridge serve`")
    );
    assert!(no_receiver.line("end-to-end").contains("not tried"));

    let other_secret = check(&["--webhook-secret", "not-what-serve-uses"], &[]);
    assert_eq!(other_secret.code, Some(1));
    assert!(other_secret.line("end-to-end").contains("401"), "{}", other_secret.stdout);

    // The subscription is deleted behind the service's back.
    let id = stub.hooks()[0].id.clone();
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["unregister", &id])
        .env("ONCEHUB_API_KEY", API_KEY)
        .env("ONCEHUB_API_BASE_URL", stub.base_url())
        .output()
        .unwrap();
    assert!(out.status.success());
    let gone = check(&[], &[]);
    assert_eq!(gone.code, Some(1));
    assert!(gone.line("subscription").contains("no subscription posts to"), "{}", gone.stdout);
    let ready = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let r = reqwest::get(format!("http://127.0.0.1:{admin}/readyz")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert!(ready.1.contains(&id) && ready.1.contains("restart"), "{}", ready.1);
}
