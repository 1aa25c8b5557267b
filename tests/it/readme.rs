//! The README's first steps, run as written: the ```sh blocks of "Two commands", in a fresh
//! directory, with the real binary for `cargo run --release --` and the DuckDB CLI installed by the
//! test command for `duckdb`. Ctrl-C between sending and querying is a SIGINT to the server.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{signal_and_wait, tool, wait_for_port};

/// The ```sh blocks of the README section `title`, each as its command lines.
fn sh_blocks(title: &str) -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find(&format!("\n## {title}")).unwrap_or_else(|| panic!("README has a {title} section"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    section
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().lines().map(str::to_owned).collect())
        .collect()
}

/// A README command line as it runs here: the built binary for `cargo run --release --`.
fn as_run(line: &str) -> String {
    line.replace("cargo run --release --", env!("CARGO_BIN_EXE_oncehub-bridge"))
}

fn sh(line: &str, cwd: &Path) -> std::process::Output {
    let path = format!("{}:{}", tool("venv/bin").display(), std::env::var("PATH").unwrap_or_default());
    Command::new("sh").arg("-c").arg(as_run(line)).current_dir(cwd).env("PATH", path).output().unwrap()
}

#[test]
fn the_two_commands_then_a_duckdb_answer_run_as_written() {
    let blocks = sh_blocks("Two commands");
    let find = |needle: &str| blocks.iter().find(|b| b.iter().any(|l| l.contains(needle))).unwrap().clone();
    let (serve, send, query) = (find(" serve"), find("send-test-event --all"), find("duckdb -init"));
    assert_eq!(serve.len(), 1, "{serve:?}");
    let dir = tempfile::tempdir().unwrap();

    let mut server = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {}", as_run(&serve[0])))
        .current_dir(dir.path())
        .env_remove("ONCEHUB_WEBHOOK_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_port(8080, Duration::from_secs(30));
    for line in &send {
        let out = sh(line, dir.path());
        assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("duplicate"), "the retry is answered duplicate");
    }
    let status = signal_and_wait(&mut server, "-INT", Duration::from_secs(30)); // Ctrl-C
    assert!(status.success(), "{status:?}");

    let mut answer = String::new();
    for line in query.iter().filter(|l| !l.starts_with("pip install")) {
        let out = sh(line, dir.path());
        assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
        answer = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    for status in ["completed", "no_show", "canceled", "rescheduled", "scheduled"] {
        assert!(answer.contains(status), "no {status} bookings in the answer:\n{answer}");
    }
}
