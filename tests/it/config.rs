//! `--config FILE` and `config check` on the real binary: precedence (flags > environment > file >
//! defaults), strict keys, redacted secrets, a non-zero exit on anything invalid, and `serve`
//! really running on the file's settings.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chrono::Utc;
use oncehub_bridge::commands::samples;

use crate::helpers::{Binary, duck, post_signed_to};

fn bridge(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(args)
        .env_remove("ONCEHUB_WEBHOOK_SECRET")
        .env("ONCEHUB_BRIDGE_LOG_FORMAT", "pretty")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

/// `key = value` lines of `config check` output, without their `# source` comments.
fn settings_lines(stdout: &str) -> Vec<String> {
    stdout.lines().filter(|l| !l.starts_with('#')).map(|l| l.split("  #").next().unwrap().to_owned()).collect()
}

#[test]
fn config_check_shows_each_setting_with_its_source_and_flags_beat_env_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bridge.toml",
        "listen = \"0.0.0.0:9000\"\nflush-max-rows = 5000\nflush_interval = \"30s\"\nworkers = 3\n\
         webhook_secret = [\"whsec-file-one-SECRET\", \"whsec-file-two-SECRET\"]\n",
    );
    let out = bridge(
        &["config", "check", "--config", &file, "--listen", "127.0.0.1:7000"],
        &[
            ("ONCEHUB_BRIDGE_LISTEN", "127.0.0.1:7001"),
            ("ONCEHUB_BRIDGE_FLUSH_MAX_ROWS", "6000"),
            ("AWS_SECRET_ACCESS_KEY", "aws-SECRET-from-env"),
            ("ONCEHUB_API_KEY", "ohk-api-SECRET"),
            ("ONCEHUB_BRIDGE_PUBLIC_URL", "https://hooks.example.com"),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("listen = \"127.0.0.1:7000\"  # flag"), "{stdout}");
    assert!(stdout.contains("flush_max_rows = \"6000\"  # environment"), "{stdout}");
    assert!(stdout.contains("flush_interval = \"30s\"  # config file"), "{stdout}");
    assert!(stdout.contains("workers = \"3\"  # config file"), "{stdout}");
    assert!(stdout.contains("dedup_window = \"7d\"  # default"), "{stdout}");
    assert!(stdout.contains("# webhook_secret = <redacted: 2 values>  # config file"), "{stdout}");
    assert!(stdout.contains("# AWS_SECRET_ACCESS_KEY is set (value not shown)"), "{stdout}");
    assert!(stdout.contains("# api_key = <redacted: 1 value>  # environment"), "{stdout}");
    assert!(stdout.contains("public_url = \"https://hooks.example.com\"  # environment"), "{stdout}");
    for value in ["whsec-file-one-SECRET", "whsec-file-two-SECRET", "aws-SECRET-from-env", "ohk-api-SECRET"] {
        assert!(!format!("{stdout}{stderr}").contains(value), "no secret value is printed:\n{stdout}{stderr}");
    }
    assert!(stderr.contains("the configuration is valid"), "{stderr}");
    assert!(stderr.contains("readable by other users"), "a world-readable file with secrets is flagged: {stderr}");

    // The output, secrets aside, is itself a config file that means the same.
    let again = write(dir.path(), "again.toml", &stdout);
    let env = [("ONCEHUB_BRIDGE_FLUSH_MAX_ROWS", "6000"), ("ONCEHUB_API_KEY", "ohk-api-SECRET")];
    let (replayed, _) = text(&bridge(&["config", "check", "--config", &again, "--listen", "127.0.0.1:7000"], &env));
    assert_eq!(settings_lines(&replayed), settings_lines(&stdout));
}

#[test]
fn a_bad_config_file_is_refused_naming_the_key_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_string_lossy().into_owned();
    let cases = [
        ("typo.toml", "flush_intervall = \"1s\"\n", "unknown key `flush_intervall` (did you mean `flush_interval`?)"),
        ("value.toml", "flush_interval = \"soon\"\n", "key `flush_interval`: invalid value 'soon'"),
        ("shape.toml", "[flush_interval]\nseconds = 1\n", "key `flush_interval` must be a string"),
        ("syntax.toml", "listen = [\n", "is not valid TOML"),
    ];
    for (name, body, expected) in cases {
        let file = write(dir.path(), name, body);
        for command in [&["serve"][..], &["config", "check"][..]] {
            let mut args = command.to_vec();
            args.extend(["--config", &file, "--data-dir", &data_arg]);
            let out = bridge(&args, &[]);
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(2), "{name} {command:?}: {stdout}{stderr}");
            assert!(stderr.starts_with("error: ") && stderr.contains(expected), "{name}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "one line, no stack trace: {stderr}");
        }
    }
    let missing = bridge(&["serve", "--config", "/nonexistent/bridge.toml"], &[]);
    assert!(text(&missing).1.contains("cannot read the config file /nonexistent/bridge.toml"));
    assert!(!data.exists(), "nothing started");

    // Well-formed but invalid as a whole: config check prints it, then fails.
    let zero = write(dir.path(), "zero.toml", "flush_interval = \"0s\"\n");
    let out = bridge(&["config", "check", "--config", &zero], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.contains("flush_interval = \"0s\"  # config file"), "{stdout}");
    assert!(stderr.contains("--flush-interval") && stderr.contains("greater than zero"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_on_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake-from-file");
    let secret = "whsec-from-the-config-file";
    let file = write(
        dir.path(),
        "bridge.toml",
        &format!("webhook_secret = \"{secret}\"\nflush_interval = \"200ms\"\nstorage_url = \"{}\"\n", lake.display()),
    );
    let bin = Binary::serve(&dir.path().join("data"), &["--config", &file], &[]);
    let client = reqwest::Client::new();
    let event = &samples::all_events("cfg", Utc::now())[0];
    let body = serde_json::to_vec(event).unwrap();
    let signature = oncehub_bridge::oncehub::signature::sign(
        &oncehub_bridge::secret::WebhookSecret::parse(secret).unwrap(),
        Utc::now().timestamp(),
        &body,
    );
    let resp = client.post(bin.url()).header("Oncehub-Signature", signature).body(body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the file's secret verifies");
    assert_eq!(post_signed_to(&client, &bin.url(), body).await, 401, "the test suite's default secret does not");
    let start = Instant::now();
    while crate::helpers::parquet_files(&lake).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "no file in the file's storage_url: {}", bin.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = duck(&format!("SELECT event_id FROM read_parquet('{}/bookings/dt=*/*.parquet')", lake.display()));
    assert_eq!(d.rows[0][0], event["id"]);
}
