#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the test tools into .tools/ (once; later runs
# reuse them) and runs every unit and integration test with cargo-nextest.
#   - s3s-fs 0.14.1 (a real S3-compatible server, from crates.io), built while the project compiles
#   - DuckDB 1.5.5 with its httpfs extension (from PyPI, in a venv), the independent Parquet reader
#   - Chromium and ChromeDriver (Debian's packages), for the inspector's browser test
#   - wrk, nginx and time (Debian's packages), for the benchmark smokes at the end
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS"

s3s_pid=""
if [ ! -x "$TOOLS/s3s/bin/s3s-fs" ]; then
  echo "== installing s3s-fs into $TOOLS/s3s (background)"
  cargo install s3s-fs@0.14.1 --features binary --locked --root "$TOOLS/s3s" >"$TOOLS/s3s-install.log" 2>&1 &
  s3s_pid=$!
fi

bash scripts/duckdb-venv.sh

# Debian's Chromium and ChromeDriver, for the inspector's browser test (tests/it/browser.rs).
if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium and chromium-driver (Debian)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium chromium-driver >/dev/null; }
fi

echo "== checking format and lints"
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

echo "== building"
cargo build --tests --bins --examples --locked

if [ -n "$s3s_pid" ]; then
  if ! wait "$s3s_pid"; then
    cat "$TOOLS/s3s-install.log"
    echo "s3s-fs install failed" >&2
    exit 1
  fi
fi

echo "== testing"
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast --failure-output final "$@" || status=$?
else
  cargo test --locked --no-fail-fast "$@" || status=$?
fi

# The benchmark, for a few seconds on the debug build, so the harness keeps working (its figures
# mean nothing here; `bash bench/run.sh` is the real run). Installs wrk and nginx when missing.
if [ "$#" -eq 0 ]; then
  echo "== benchmark smoke"
  bash bench/run.sh --smoke || status=$?
  bash bench/compact.sh --smoke || status=$?
  bash bench/backfill.sh --smoke || status=$?
  bash bench/stage_cost.sh --smoke || status=$?
  cargo run --locked --example inspector-cost -- 20000 || status=$?
fi
exit "$status"
