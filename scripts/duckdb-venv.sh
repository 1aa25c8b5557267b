#!/usr/bin/env bash
# Installs into .tools/venv, once, from PyPI: DuckDB 1.5.5 with its httpfs and delta extensions
# (the independent Parquet and Delta reader of the tests and the benchmark), the DuckDB CLI
# (`duckdb-cli`, which the README's flow uses), the `deltalake` package with pyarrow (a second
# Delta reader, delta-rs), and check-jsonschema (validates docker-compose.yml against the compose
# specification offline; brings ruamel.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v java >/dev/null; then
  echo "== installing a Java runtime for pyspark (Debian openjdk-17-jre-headless)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
TOOLS="$PWD/.tools"
if ! "$TOOLS/venv/bin/python" -c "import duckdb, duckdb_extension_httpfs, duckdb_extension_delta, deltalake, pyarrow, pyspark, pytz, check_jsonschema, ruamel.yaml" 2>/dev/null \
  || [ ! -x "$TOOLS/venv/bin/duckdb" ]; then
  echo "== installing DuckDB, deltalake and check-jsonschema into $TOOLS/venv"
  mkdir -p "$TOOLS"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check duckdb-extension-httpfs==1.5.5 \
    duckdb-extension-delta==1.5.5 duckdb-cli==1.5.5 deltalake==1.6.6 pyarrow==26.0.1 pyspark==3.5.7 pytz check-jsonschema==0.39.0
fi
# `INSTALL delta` downloads DuckDB's delta extension into ~/.duckdb/extensions; offline, the copy
# the duckdb-extension-delta wheel ships is installed there instead (the same signed file), so the
# generated `INSTALL delta; LOAD delta;` works for the CLI and the Python module alike.
"$TOOLS/venv/bin/python" - <<'PY'
import glob, os
import duckdb, duckdb_extension_delta
base = os.path.dirname(duckdb_extension_delta.__file__)
con = duckdb.connect()
installed = con.execute("SELECT installed FROM duckdb_extensions() WHERE extension_name = 'delta'").fetchone()
if not (installed and installed[0]):
    con.execute(f"INSTALL '{glob.glob(os.path.join(base, 'extensions', '*', 'delta.duckdb_extension'))[0]}'")
PY
