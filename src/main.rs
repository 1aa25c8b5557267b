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
    no_huge_pages();
    #[cfg(not(feature = "system-allocator"))]
    allocator::return_freed_memory_soon();
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

/// Transparent huge pages off for the process (the flag is the process's, whatever the module of
/// the call says), also where the kernel gives them unasked (`always`). A 2 MiB page is resident
/// however little of it the allocator uses, and the kernel may compact memory to make one while
/// the faulting thread waits. Measured with `bench/run.sh` (300 k deliveries; see the README's
/// Performance section): with them, up to 140 of 309 MiB of anonymous memory were huge pages;
/// without, the peak was 25-50 MiB lower, at no measurable CPU cost.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        say(format_args!("warning: cannot turn transparent huge pages off: {e}"));
    }
}

/// mimalloc's purge delay, set from the program rather than the environment.
#[cfg(not(feature = "system-allocator"))]
mod allocator {
    use std::ffi::{c_int, c_long};

    /// `mi_option_purge_delay` in the mimalloc (v3.3) that the locked `libmimalloc-sys` builds;
    /// the Rust crate does not name it (the test below checks the index against its default).
    const PURGE_DELAY: c_int = 15;
    /// Milliseconds before freed memory goes back to the OS. mimalloc v3's default, 1000, let
    /// the batcher's freed Parquet buffers pile up: peak RSS over 1.05 M deliveries at defaults
    /// was 383 MiB with it and 256 MiB with `MIMALLOC_PURGE_DELAY=10` (v2's default), for about
    /// 10 % more CPU, spent in the kernel returning pages (`bench/run.sh`; see the README's
    /// Performance section, which also has a run at 338 MiB with this setting).
    const PURGE_DELAY_MS: c_long = 10;

    unsafe extern "C" {
        #[cfg(test)]
        fn mi_option_get(option: c_int) -> c_long;
        fn mi_option_set(option: c_int, value: c_long);
    }

    /// Sets the purge delay, unless `MIMALLOC_PURGE_DELAY` chose one.
    pub(super) fn return_freed_memory_soon() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: both take and return plain integers; an option write is one store.
            unsafe { mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The index names the purge delay: its v3 default, and the value set.
        #[test]
        fn the_purge_delay_option_is_the_one_set() {
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                // SAFETY: as above.
                assert_eq!(unsafe { mi_option_get(PURGE_DELAY) }, 1000);
                return_freed_memory_soon();
                assert_eq!(unsafe { mi_option_get(PURGE_DELAY) }, PURGE_DELAY_MS);
            }
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
