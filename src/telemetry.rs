//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG` (default `info`; the Delta kernel off unless named), as one JSON object
//! per line (for log collectors) or as readable text (for people). The default follows stderr:
//! readable on a terminal, JSON otherwise (a container, a file, a pipe).
//!
//! Logging never stops the service: a line that cannot be written is dropped, never a panic.
//!
//! Nothing logged carries a credential: secrets are their own types whose `Debug` is redacted, and
//! errors from the store and the OnceHub API are logged by their message only.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line: timestamp, level, target, message and the event's fields.
    Json,
    /// Human-readable text, coloured on a terminal.
    Pretty,
}

impl LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    pub fn for_stderr() -> LogFormat {
        if std::io::stderr().is_terminal() { LogFormat::Pretty } else { LogFormat::Json }
    }
}

/// Directives that keep the Delta kernel's own logging off.
const QUIET_KERNEL: &str = "delta_kernel=off,delta_kernel_default_engine=off";

pub fn init(format: Option<LogFormat>) {
    let wanted = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    // The Delta kernel logs every snapshot and commit, and its errors as lines without a
    // message; the batcher logs each of those outcomes itself, with context. So the kernel is
    // quiet unless RUST_LOG names it (`RUST_LOG=info,delta_kernel=debug`).
    let directives = match wanted {
        Some(v) if v.contains("delta_kernel") => v,
        Some(v) => format!("{v},{QUIET_KERNEL}"),
        None => format!("info,{QUIET_KERNEL}"),
    };
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET_KERNEL}")));
    // A log line that cannot be written (stderr closed: `serve 2>&1 | head`) is dropped. The
    // subscriber's own report of that failure would go to the same closed stderr through
    // `eprintln!`, which panics: it is turned off.
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    let _ = match format.unwrap_or_else(LogFormat::for_stderr) {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}
