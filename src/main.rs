//! The `oncehub-bridge` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use oncehub_bridge::config::file::LayerError;

/// mimalloc: the batcher's Parquet buffers grow and shrink all the time, which glibc's malloc
/// answers with page faults and fragmentation (measured with `bench/run.sh`: see the README).
/// The `system-allocator` feature keeps glibc's, for heap profilers that see only `malloc`
/// (heaptrack: `bench/heap.sh`).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let layered = match oncehub_bridge::config::file::parse(std::env::args_os().collect()) {
        Ok(layered) => layered,
        Err(LayerError::Cli(e)) => e.exit(),
        Err(e) => {
            say(format_args!("error: {e}"));
            return ExitCode::from(2);
        }
    };
    oncehub_bridge::telemetry::init(layered.cli.log_format);
    for warning in &layered.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(oncehub_bridge::startup::background_priority)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(format_args!("error: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(oncehub_bridge::run(layered)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(format_args!("error: {}", render(&e)));
            ExitCode::FAILURE
        }
    }
}

/// Prints a line to stderr; a closed stderr loses the line instead of panicking.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The error and its causes, each cause only once: a message that already quotes its cause
/// (`cannot read X: no such file`) is not followed by the cause again.
fn render(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}
