#!/usr/bin/env bash
# Installs DuckDB 1.5.5 with its httpfs extension (from PyPI) into .tools/venv, once: the
# independent Parquet reader of the tests and the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
if ! "$TOOLS/venv/bin/python" -c "import duckdb, duckdb_extension_httpfs, pytz" 2>/dev/null; then
  echo "== installing DuckDB into $TOOLS/venv"
  mkdir -p "$TOOLS"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check duckdb-extension-httpfs==1.5.5 pytz
fi
