//! The deployment files, checked without a Docker engine: docker-compose.yml validated against the
//! compose specification, and the bridge service's command line and environment run as they are
//! (defaults, no .env) outside Docker, against an S3 server set up as the compose file sets up
//! MinIO and its bucket.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Binary, S3Server, free_port, send_test_events, tool};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn validate(compose: &Path) -> std::process::Output {
    Command::new(tool("venv/bin/check-jsonschema"))
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(compose)
        .output()
        .unwrap()
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    let out = validate(&root().join("docker-compose.yml"));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // The validator does reject a broken file: an unknown depends_on condition.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    assert!(text.contains("service_completed_successfully"));
    let broken = dir.path().join("docker-compose.yml");
    std::fs::write(&broken, text.replace("service_completed_successfully", "service_finished")).unwrap();
    assert!(!validate(&broken).status.success());
}

fn service(name: &str) -> Value {
    let out = Command::new(tool("venv/bin/python"))
        .arg(root().join("tests/compose_service.py"))
        .arg(root().join("docker-compose.yml"))
        .arg(name)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_image_runs_as_a_non_root_user_with_a_healthcheck_and_the_data_dir_as_a_volume() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for line in
        ["USER bridge", "VOLUME [\"/var/lib/oncehub-bridge\"]", "HEALTHCHECK", "ENTRYPOINT [\"oncehub-bridge\"]"]
    {
        assert!(dockerfile.contains(line), "Dockerfile lacks {line}");
    }
    let bridge = service("bridge");
    assert_eq!(bridge["environment"]["ONCEHUB_BRIDGE_DATA_DIR"], "/var/lib/oncehub-bridge");
}

/// The dependency layer is built before the code is copied in, so a code change reuses it; the
/// build context leaves out what the image does not need.
#[test]
fn the_image_build_caches_dependencies_and_the_context_is_small() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let deps = dockerfile.find("COPY Cargo.toml Cargo.lock ./").expect("the manifests are copied on their own");
    let first_build = dockerfile.find("cargo build --release").unwrap();
    let code = dockerfile.find("COPY src src").unwrap();
    assert!(deps < first_build && first_build < code, "dependencies are built before the code is copied");
    assert_eq!(dockerfile.matches("cargo build --release --locked --bin oncehub-bridge").count(), 2);
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for entry in ["target/", ".tools/", ".git/"] {
        assert!(ignore.lines().any(|l| l.trim() == entry), ".dockerignore lacks {entry}");
    }
}

#[test]
fn the_compose_bridge_command_line_writes_parquet_into_the_bucket() {
    let (minio, bucket_job, bridge) = (service("minio"), service("create-bucket"), service("bridge"));
    let keys = (
        minio["environment"]["MINIO_ROOT_USER"].as_str().unwrap().to_owned(),
        minio["environment"]["MINIO_ROOT_PASSWORD"].as_str().unwrap().to_owned(),
    );
    let bucket = bucket_job["environment"]["BUCKET"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start_with(free_port(), &dir.path().join("s3"), bucket, (&keys.0, &keys.1));

    // What Docker provides: the service name `minio` resolves to the store, the port is
    // published, the volume is a directory. Everything else is the compose file's own.
    let data = dir.path().join("volume");
    let port = free_port();
    let admin_port = free_port();
    let mut env: Vec<(String, String)> = bridge["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    for (k, v) in &mut env {
        match k.as_str() {
            "AWS_ENDPOINT_URL" => *v = v.replace("minio:9000", &format!("127.0.0.1:{}", s3.port)),
            "ONCEHUB_BRIDGE_LISTEN" => *v = v.replace("0.0.0.0:8080", &format!("127.0.0.1:{port}")),
            "ONCEHUB_BRIDGE_ADMIN_LISTEN" => *v = v.replace("0.0.0.0:9090", &format!("127.0.0.1:{admin_port}")),
            "ONCEHUB_BRIDGE_DATA_DIR" => *v = data.display().to_string(),
            _ => {}
        }
    }
    let command: Vec<String> =
        bridge["command"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"));
    cmd.args(&command)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)));
    let mut bin = Binary::spawn(cmd, port, dir.path().join("bridge.log"));

    crate::helpers::wait_for_port(admin_port, Duration::from_secs(10));
    let ready = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let resp = reqwest::get(format!("http://127.0.0.1:{admin_port}/readyz")).await.unwrap();
        (resp.status(), resp.text().await.unwrap_or_default())
    });
    assert_eq!(ready.0, 200, "{}", ready.1);

    // With ONCEHUB_WEBHOOK_SECRET empty the bridge generated a secret in its volume.
    let stdout = send_test_events(&bin.url(), &data);
    let sent = stdout.matches("-> 200 OK").count();
    assert_eq!(sent, crate::helpers::test_event_counts().0, "{stdout}");
    let rows = sent - stdout.matches("-> 200 OK duplicate").count();

    let status = bin.terminate(Duration::from_secs(30));
    let log = bin.stderr();
    assert!(status.success(), "{log}");
    assert!(!log.contains(&keys.1), "the storage secret reached the log");

    let d =
        s3.duck(&format!("SELECT count(*) FROM read_parquet('s3://{bucket}/*/dt=*/*.parquet', union_by_name = true)"));
    assert_eq!(d.rows[0][0], serde_json::json!(rows));
}
