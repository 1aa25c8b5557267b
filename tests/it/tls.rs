//! HTTPS with `--tls-cert` / `--tls-key`: a signed delivery over TLS with a self-signed
//! certificate (trusted by the client as its root), plain HTTP refused on that port, and a clear
//! start-up error for an unusable key.

use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use oncehub_bridge::commands::samples;

use crate::helpers::{Binary, SECRET, secret};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_over_https_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, &key_pem).unwrap();
    let args = [
        "--webhook-secret",
        SECRET,
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ];
    let mut bin = Binary::serve(&dir.path().join("data"), &args, &[]);

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], bin.port)))
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/webhooks/oncehub", bin.port);
    let body = serde_json::to_vec(&samples::all_events("tls", Utc::now())[0]).unwrap();
    let signature = oncehub_bridge::oncehub::signature::sign(&secret(), Utc::now().timestamp(), &body);
    let resp = client.post(&url).header("Oncehub-Signature", signature).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["status"], "accepted");

    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/healthz", bin.port)).send().await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true), "plain HTTP is not served on the TLS port");
    assert!(bin.terminate(Duration::from_secs(30)).success());
    assert!(bin.stderr().contains(r#""https":true"#));

    // A key that is not a key: one clear line naming the flag and the file, nothing started.
    std::fs::write(&key_path, "not a key").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oncehub-bridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data2"))
        .args(&args[..2])
        .args(["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.starts_with("error: --tls-key") && stderr.contains("key.pem"), "{stderr}");
    assert!(!dir.path().join("data2").exists(), "nothing started");
}
