//! The real binary from a user's seat: first run with no settings, invalid settings.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::{Binary, duck};

#[test]
fn a_first_run_with_no_settings_works_and_says_what_to_do_next() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut bin = Binary::serve(&data, &[], &[]);
    let start = Instant::now();
    while !bin.stderr().contains("send-test-event") {
        assert!(start.elapsed() < Duration::from_secs(10), "no next step printed: {}", bin.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = bin.stderr();
    assert!(log.contains("generated"), "{log}");
    assert!(data.join("webhook-secret").exists());
    let secret = std::fs::read_to_string(data.join("webhook-secret")).unwrap();
    assert!(!log.contains(secret.trim()), "the secret itself is never logged");

    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["send-test-event", "--all", "--url", &bin.url(), "--data-dir"])
        .arg(&data)
        .env_remove("ONCEHUB_WEBHOOK_SECRET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("-> 200 OK").count(), 30, "{stdout}");
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let d = duck(&format!("SELECT count(*) FROM read_parquet('{}/lake/*/*/*.parquet', union_by_name = true)", data.display()));
    assert_eq!(d.rows[0][0], serde_json::json!(30));
}

#[test]
fn invalid_settings_fail_at_start_and_name_the_setting() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--flush-max-bytes", "lots"], &[]).contains("--flush-max-bytes"));
    assert!(run(&[], &[("ONCEHUB_BRIDGE_FLUSH_INTERVAL", "soon")]).contains("--flush-interval"));
    assert!(run(&["--listen", "nowhere"], &[]).contains("--listen"));
    let e = run(&["--storage-url", "ftp://host/x"], &[]);
    assert!(e.contains("--storage-url") && e.starts_with("error:"), "{e}");
}
