//! Test helpers: the real service (in-process `Application` on port 0, or the real binary), a real
//! S3-compatible server (s3s-fs) and DuckDB, all on 127.0.0.1. The tools are installed by
//! `.ci/run` / `scripts/test.sh` into `.tools/`; a missing tool fails the test with that advice.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use oncehub_bridge::batcher::{BatcherReport, FlushLimits};
use oncehub_bridge::config::{SecretSource, ServeSettings};
use oncehub_bridge::oncehub::signature::sign;
use oncehub_bridge::secret::WebhookSecret;
use oncehub_bridge::sink::StorageUrl;
use oncehub_bridge::spool::SpoolOptions;
use oncehub_bridge::startup::{Application, StartupError};
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret-0123456789abcdef";
pub const S3_KEY: &str = "AKTESTKEY";
pub const S3_SECRET: &str = "test-s3-secret-value-do-not-log";

pub fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools")
}

pub fn tool(rel: &str) -> PathBuf {
    let p = tools().join(rel);
    assert!(p.exists(), "{} is missing: run `bash scripts/test.sh` once to install the test tools", p.display());
    p
}

pub fn secret() -> WebhookSecret {
    WebhookSecret::parse(SECRET).unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Holds a port while a store is "down": accepts connections and drops them at once, so clients
/// fail fast, and no other test's server can take the port meanwhile.
pub struct DeadStore {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DeadStore {
    pub fn hold(port: u16) -> DeadStore {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free to hold");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
                if flag.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
            }
        });
        DeadStore { port, stop, thread: Some(thread) }
    }

    /// Frees the port (to start the real store on it).
    pub fn release(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < timeout, "nothing listens on port {port} after {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A stopped service: its report, and its lake kept until this is dropped.
pub struct Stopped {
    pub report: BatcherReport,
    pub lake: PathBuf,
    _dir: TempDir,
}

/// The service running in this process.
pub struct TestApp {
    pub port: u16,
    pub lake: PathBuf,
    dir: TempDir,
    stop: CancellationToken,
    handle: JoinHandle<Result<BatcherReport, StartupError>>,
    client: reqwest::Client,
}

pub fn settings(dir: &Path) -> ServeSettings {
    ServeSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: None,
        subscription: None,
        tls: None,
        data_dir: dir.join("data"),
        storage: StorageUrl::Local(dir.join("lake")),
        table_format: oncehub_bridge::lake::TableFormat::Delta,
        commit_interval: Duration::from_secs(10),
        secrets: SecretSource::Configured(vec![secret()]),
        flush: FlushLimits { max_age: Duration::from_secs(3600), ..FlushLimits::default() },
        signature_tolerance: Duration::from_secs(300),
        max_body_bytes: std::num::NonZeroUsize::new(1024 * 1024).unwrap(),
        body_timeout: Duration::from_secs(30),
        shutdown_timeout: Duration::from_secs(30),
        workers: std::num::NonZeroUsize::new(2),
        backfill: None,
        inspector: Some(oncehub_bridge::inspector::InspectorSettings { max_deliveries: 500, max_bytes: 16 << 20 }),
        admin_token: None,
        maintenance: oncehub_bridge::config::MaintenanceSettings {
            compact_after: None,
            target_size: 128 << 20,
            vacuum_retention: None,
            interval: Duration::from_secs(600),
        },
        spool: SpoolOptions {
            dir: dir.join("data/spool"),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            min_free_bytes: 0,
            dedup_window: Duration::from_secs(7 * 86_400),
        },
    }
}

impl TestApp {
    pub async fn spawn(tweak: impl FnOnce(&mut ServeSettings)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        tweak(&mut s);
        let lake = match &s.storage {
            StorageUrl::Local(p) => p.clone(),
            _ => PathBuf::new(),
        };
        let app = Application::build(s).await.expect("application builds");
        let port = app.port();
        let stop = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(stop.clone()));
        TestApp { port, lake, dir, stop, handle, client: reqwest::Client::new() }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/oncehub", self.port)
    }

    /// Posts `body` with the given signature header (or none).
    pub async fn post_with(&self, body: Vec<u8>, signature: Option<String>) -> reqwest::Response {
        let mut req = self.client.post(self.url()).header("Content-Type", "application/json").body(body);
        if let Some(sig) = signature {
            req = req.header("Oncehub-Signature", sig);
        }
        req.send().await.expect("request reaches the server")
    }

    /// Posts `body` signed with the test secret, now.
    pub async fn post_signed(&self, body: Vec<u8>) -> reqwest::Response {
        let sig = sign(&secret(), Utc::now().timestamp(), &body);
        self.post_with(body, Some(sig)).await
    }

    /// Stops the service (SIGTERM's path) and keeps its directory alive for reading back.
    pub async fn stop(self) -> Stopped {
        self.stop.cancel();
        let report = self.handle.await.expect("app task").expect("clean shutdown");
        Stopped { report, lake: self.lake, _dir: self.dir }
    }
}

/// Parquet files under `root`, recursively, sorted.
pub fn parquet_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A DuckDB query result.
#[derive(Debug)]
pub struct Duck {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Duck {
    pub fn col(&self, name: &str) -> usize {
        self.columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }
    pub fn type_of(&self, name: &str) -> &str {
        &self.types[self.col(name)]
    }
}

fn run_duck(sql: &str, envs: &[(&str, String)]) -> Duck {
    let py = tool("venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/duck.py");
    let out = Command::new(py).arg(script).arg(sql).envs(envs.iter().map(|(k, v)| (*k, v))).output().unwrap();
    assert!(out.status.success(), "duckdb failed on {sql}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let strings = |k: &str| v[k].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    let rows = v["rows"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect();
    Duck { columns: strings("columns"), types: strings("types"), rows }
}

/// Runs `sql` in DuckDB over local files.
pub fn duck(sql: &str) -> Duck {
    run_duck(sql, &[])
}

/// Reads Delta tables under `root` with the Python `deltalake` package (see tests/delta_read.py):
/// per table its version, rows, sorted event ids, files, schema and the `txn` versions of `apps`.
pub fn delta_read(root: &str, tables: &[&str], apps: &[String], envs: &[(&str, String)]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delta_read.py");
    let out = Command::new(tool("venv/bin/python"))
        .arg(script)
        .args([root, &tables.join(","), &apps.join(",")])
        .envs(envs.iter().map(|(k, v)| (*k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deltalake failed on {root}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every event table.
pub const TABLES: [&str; 5] = ["bookings", "conversations", "other_events", "dead_letter", "contacts"];

/// The Delta `txn` app id of the instance whose data dir is `data_dir`.
pub fn app_id(data_dir: &Path) -> String {
    let id = std::fs::read_to_string(data_dir.join("instance-id")).unwrap();
    format!("oncehub-bridge-{}", id.trim())
}

/// An s3s-fs server on 127.0.0.1 with bucket `lake`; killed on drop.
pub struct S3Server {
    pub port: u16,
    pub root: PathBuf,
    keys: (String, String),
    child: Option<Child>,
}

impl S3Server {
    pub fn start(root: &Path) -> S3Server {
        Self::start_on(free_port(), root)
    }

    pub fn start_on(port: u16, root: &Path) -> S3Server {
        Self::start_with(port, root, "lake", (S3_KEY, S3_SECRET))
    }

    /// A server holding one (empty) `bucket`, accepting only `keys` (access key, secret).
    pub fn start_with(port: u16, root: &Path, bucket: &str, keys: (&str, &str)) -> S3Server {
        std::fs::create_dir_all(root.join(bucket)).unwrap();
        let child = Command::new(tool("s3s/bin/s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", keys.0, "--secret-key", keys.1])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        wait_for_port(port, Duration::from_secs(20));
        S3Server { port, root: root.to_path_buf(), keys: (keys.0.into(), keys.1.into()), child: Some(child) }
    }

    /// The standard AWS_* variables that point object_store at this server.
    pub fn env(port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", S3_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    pub fn duck(&self, sql: &str) -> Duck {
        run_duck(
            sql,
            &[
                ("DUCK_S3_ENDPOINT", format!("127.0.0.1:{}", self.port)),
                ("DUCK_S3_KEY_ID", self.keys.0.clone()),
                ("DUCK_S3_SECRET", self.keys.1.clone()),
            ],
        )
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// [`delta_read`] against this server.
    pub fn delta_read(&self, root: &str, tables: &[&str], apps: &[String]) -> Value {
        let envs = [
            ("DELTA_S3_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("DELTA_S3_KEY_ID", self.keys.0.clone()),
            ("DELTA_S3_SECRET", self.keys.1.clone()),
        ];
        delta_read(root, tables, apps, &envs)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `send-test-event --all` sends: (deliveries, rows they make: one is a retry).
pub fn test_event_counts() -> (usize, usize) {
    let now = Utc::now();
    let sent = oncehub_bridge::commands::samples::all_events("x", now).len()
        + oncehub_bridge::commands::story::story("x", now).len();
    (sent, sent - 1)
}

/// `send-test-event --all` to `url`, signed with the secret kept in `data_dir`; its stdout, one
/// line per delivery (`-> 200 OK` for each accepted one).
pub fn send_test_events(url: &str, data_dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["send-test-event", "--all", "--url", url, "--data-dir"])
        .arg(data_dir)
        .env_remove("ONCEHUB_WEBHOOK_SECRET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The real `oncehub-bridge serve` binary; killed on drop.
pub struct Binary {
    pub port: u16,
    child: Option<Child>,
    pub stderr_path: PathBuf,
}

impl Binary {
    pub fn serve(data_dir: &Path, args: &[&str], envs: &[(&str, String)]) -> Binary {
        let port = free_port();
        let stderr_path = data_dir.with_extension("stderr.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"));
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_remove("ONCEHUB_WEBHOOK_SECRET")
            .env("RUST_LOG", std::env::var("BRIDGE_LOG").unwrap_or_else(|_| "info".into()))
            .envs(envs.iter().map(|(k, v)| (*k, v)));
        Binary::spawn(cmd, port, stderr_path)
    }

    /// Starts `cmd` (a `serve` that listens on 127.0.0.1:`port`), its stderr appended to
    /// `stderr_path`, so one log covers every restart on the same data dir.
    pub fn spawn(mut cmd: Command, port: u16, stderr_path: PathBuf) -> Binary {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&stderr_path).unwrap();
        let child = cmd.stdout(Stdio::null()).stderr(stderr).spawn().expect("binary starts");
        wait_for_port(port, Duration::from_secs(20));
        Binary { port, child: Some(child), stderr_path }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/oncehub", self.port)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: the process gets no chance to flush or clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for the process to end by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_for_exit(&mut child, timeout, "by itself")
    }

    /// SIGTERM, then wait up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        signal_and_wait(&mut child, "-TERM", timeout)
    }
}

/// Sends `signal` (`-TERM`, `-INT`) to `child` and waits up to `timeout` for its exit status.
pub fn signal_and_wait(child: &mut Child, signal: &str, timeout: Duration) -> std::process::ExitStatus {
    Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    wait_for_exit(child, timeout, &format!("of {signal}"))
}

/// Waits up to `timeout` for `child`'s exit status; `what` says what it should exit after.
fn wait_for_exit(child: &mut Child, timeout: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < timeout, "the process did not exit within {timeout:?} {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Posts `body` signed with `secret` to `url` from a blocking context.
pub async fn post_signed_to(client: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::StatusCode {
    let sig = sign(&secret(), Utc::now().timestamp(), &body);
    let resp = client.post(url).header("Oncehub-Signature", sig).body(body).send().await.expect("request");
    resp.status()
}
