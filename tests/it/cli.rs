//! The real binary from a user's seat: first run with no settings, invalid settings.

use std::process::Command;
use std::time::{Duration, Instant};

use oncehub_bridge::commands::samples;

use crate::helpers::{Binary, SECRET, duck, post_signed_to, send_test_events};

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

    let stdout = send_test_events(&bin.url(), &data);
    let (sent, rows) = crate::helpers::test_event_counts();
    assert_eq!(stdout.matches("-> 200 OK").count(), sent, "{stdout}");
    assert_eq!(stdout.matches("-> 200 OK duplicate").count(), 1, "{stdout}");
    assert!(bin.terminate(Duration::from_secs(30)).success());
    let d = duck(&format!(
        "SELECT count(*) FROM read_parquet('{}/lake/*/dt=*/*.parquet', union_by_name = true)",
        data.display()
    ));
    assert_eq!(d.rows[0][0], serde_json::json!(rows));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duckdb_ddl_reads_every_table_of_a_real_lake_with_its_types() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut bin = Binary::serve(&data, &["--webhook-secret", SECRET], &[]);
    // Every table gets files: the samples (bookings, conversations), another object, a dead letter.
    let client = reqwest::Client::new();
    for e in samples::all_events("ddl", chrono::Utc::now()) {
        assert_eq!(post_signed_to(&client, &bin.url(), serde_json::to_vec(&e).unwrap()).await, 200);
    }
    let other =
        br#"{"id":"EVNT-ddl-user","type":"user.updated","api_version":"v2","data":{"object":"user","id":"USR-1"}}"#;
    assert_eq!(post_signed_to(&client, &bin.url(), other.to_vec()).await, 200);
    let contact = br#"{"id":"EVNT-ddl-contact","type":"contact.created","api_version":"v2","data":{"object":"contact","id":"CTC-1","employees":12}}"#;
    assert_eq!(post_signed_to(&client, &bin.url(), contact.to_vec()).await, 200);
    assert_eq!(post_signed_to(&client, &bin.url(), b"{not json".to_vec()).await, 200);
    assert!(bin.terminate(Duration::from_secs(30)).success());

    let lake = data.join("lake");
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["schema", "ddl", "--engine", "duckdb", "--location"])
        .arg(&lake)
        .output()
        .unwrap();
    let ddl = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Rows per table through the views must match the files read directly.
    let direct = |t: &str| {
        duck(&format!(
            "SELECT count(*) FROM read_parquet('{}/{t}/dt=*/*.parquet', union_by_name = true)",
            lake.display()
        ))
        .rows[0][0]
            .clone()
    };
    let views = duck(&format!(
        "{ddl} SELECT (SELECT count(*) FROM bookings), (SELECT count(*) FROM conversations), \
         (SELECT count(*) FROM other_events), (SELECT count(*) FROM dead_letter), \
         (SELECT typeof(dt) FROM bookings LIMIT 1), \
         (SELECT typeof(received_at) FROM bookings LIMIT 1), \
         (SELECT count(*) FROM bookings WHERE owner.email IS NOT NULL OR form_submission.name IS NOT NULL), \
         (SELECT count(*) FROM contacts WHERE contact_id = 'CTC-1' AND employees = 12)"
    ));
    let row = &views.rows[0];
    assert_eq!(row[0], direct("bookings"));
    assert_eq!(row[1], direct("conversations"));
    assert_eq!(row[2], direct("other_events"));
    assert_eq!(row[3], direct("dead_letter"));
    assert!(row[0].as_i64().unwrap() > 0 && row[1].as_i64().unwrap() > 0 && row[2] == 1 && row[3] == 1, "{row:?}");
    assert_eq!(row[4], serde_json::json!("DATE"));
    assert_eq!(row[5], serde_json::json!("TIMESTAMP WITH TIME ZONE"));
    assert!(row[6].as_i64().unwrap() > 0, "nested fields are reachable");
    assert_eq!(row[7], serde_json::json!(1), "the contact, typed, in contacts");
}

#[test]
fn ddl_for_each_engine_and_table_format_names_the_location() {
    let delta = [
        ("athena", "TBLPROPERTIES ('table_type' = 'DELTA')"),
        ("trino", "CALL system.register_table("),
        ("spark", "USING DELTA LOCATION"),
        ("bigquery", "format = 'DELTA_LAKE'"),
        ("duckdb", "FROM delta_scan('s3://my-bucket/oncehub/"),
    ];
    let parquet = [
        ("athena", "'projection.dt.type' = 'date'"),
        ("trino", "partitioned_by = ARRAY['dt']"),
        ("spark", "PARTITIONED BY (`dt`)"),
        ("bigquery", "enable_list_inference = true"),
        ("duckdb", "hive_partitioning = true"),
    ];
    for (format, markers) in [("delta", delta), ("parquet", parquet)] {
        for (engine, marker) in markers {
            let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
                .args(["schema", "ddl", "--engine", engine, "--location", "s3://my-bucket/oncehub/"])
                .args(["--table-format", format])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success());
            assert_eq!(
                text.matches(marker).count(),
                if format == "delta" { 6 } else { 5 },
                "{engine} {format}: {text}"
            );
            assert!(text.contains("s3://my-bucket/oncehub/bookings"), "{engine}");
            // The Hive connector has no zoned timestamps.
            assert!(!text.contains("with time zone"), "{engine} {format}: {text}");
        }
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["schema", "ddl", "--engine", "oracle", "--location", "x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--engine"));
}

/// Issue 15: a port in use stops the start before anything is created, in one clear line.
#[test]
fn a_port_in_use_is_one_line_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
        .arg(&data)
        .env_remove("ONCEHUB_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&format!("cannot listen on {addr}")), "{stderr}");
    assert_eq!(errors[0].matches("Address already in use").count(), 1, "the cause once: {stderr}");
    assert!(!stderr.contains("send-test-event"), "no next step for a service that did not start: {stderr}");
    assert!(!data.exists(), "the data dir is not created");
}

/// Issue 15: paths print without `.` components, and an odd storage URL is said once.
#[test]
fn paths_and_errors_read_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .current_dir(dir.path())
        .args(["config", "check", "--data-dir", "./data"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("data dir: {}/data", dir.path().display())) && !stderr.contains("/./"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["serve", "--storage-url", "ftp://x/y", "--data-dir"])
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("unsupported storage URL scheme").count(), 1, "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["config", "check", "--public-url", "https://x.example", "--data-dir"])
        .arg(dir.path().join("d"))
        .env_remove("ONCEHUB_API_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--public-url is set but no --api-key"), "{stderr}");
}
