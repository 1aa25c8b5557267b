#!/usr/bin/env bash
# Compaction benchmark: one day of the bookings table written by `serve` as many small files
# (N deliveries cut every FILE_ROWS rows: 2,000,000 in 2,000 files by default), then
# `oncehub-bridge compact`: its time and peak RSS, and DuckDB's query times (count, group by
# event_type, point lookup on event_id) over the Delta table before and after, in one run.
#
#   bash bench/compact.sh           full run: release build
#   bash bench/compact.sh --smoke   20,000 rows in 20 files on the debug build (the harness works)
#
# Installs wrk from Debian's packages and DuckDB from PyPI when missing. Knobs (env): N,
# FILE_ROWS, CONNS (64), KEEP=1 (keep the work directory).
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
CONNS=${CONNS:-64}
if [ "$SMOKE" = 1 ]; then
  N=${N:-20000}; FILE_ROWS=${FILE_ROWS:-1000}; PROFILE=debug
else
  N=${N:-2000000}; FILE_ROWS=${FILE_ROWS:-1000}; PROFILE=release
fi
SECRET=whsec_bench_secret_0123456789
PORT=${BRIDGE_PORT:-18090}
WORK=$(mktemp -d /tmp/oncehub-compact-bench.XXXXXX)
PY=.tools/venv/bin/python
DAY=$(date -u -d '3 days ago' +%Y-%m-%d)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q wrk >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q wrk >/dev/null; }
fi
if [ ! -x /usr/bin/time ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q time >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q time >/dev/null; }
fi
[ -x "$PY" ] || bash scripts/duckdb-venv.sh
release=(); [ "$PROFILE" = release ] && release=(--release)
cargo build --locked "${release[@]}" --bin oncehub-bridge --example gen-payloads
BIN=target/$PROFILE/oncehub-bridge

echo "== generating $N booking deliveries of $DAY"
GEN_TIME="${DAY}T12:00:00Z" GEN_TRIGGERS=booking. "target/$PROFILE/examples/gen-payloads" "$N" "$SECRET" "$WORK/payloads.txt" cb

echo "== serve: files of $FILE_ROWS rows"
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --webhook-secret "$SECRET" \
  --signature-tolerance 0 --flush-max-rows "$FILE_ROWS" --flush-interval 60s --compact-after 0 \
  --spool-max-bytes 8GiB --shutdown-timeout 600s >"$WORK/serve.log" 2>&1 &
bridge=$!
pids+=("$bridge")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
PAYLOADS="$WORK/payloads.txt" THREADS=1 CONNS=$CONNS DONE="$WORK/done" \
  wrk -t1 -c"$CONNS" -d3600s --timeout 10s -s bench/post.lua "http://127.0.0.1:$PORT/webhooks/oncehub" >"$WORK/wrk.log" 2>&1 &
wrk_pid=$!
while kill -0 "$wrk_pid" 2>/dev/null; do
  if ls "$WORK"/done.* >/dev/null 2>&1; then kill -INT "$wrk_pid"; break; fi
  sleep 0.2
done
wait "$wrk_pid" || true
grep '^RESULT' "$WORK/wrk.log" || { cat "$WORK/wrk.log" >&2; exit 1; }
kill -TERM "$bridge"; wait "$bridge" || true

TABLE="$WORK/data/lake/bookings"
LOOKUP="EVNT-cb-$(printf %09d $((N / 2)))"
echo "== queries before"
before=$("$PY" bench/queries.py "$TABLE" "$LOOKUP")
echo "$before"

echo "== compact"
/usr/bin/time -v "$BIN" compact --storage-url "$WORK/data/lake" --table bookings --temp-dir "$WORK" \
  >"$WORK/compact.out" 2>"$WORK/compact.time" || { cat "$WORK/compact.out" "$WORK/compact.time"; exit 1; }
cat "$WORK/compact.out"
elapsed=$(grep 'Elapsed (wall clock)' "$WORK/compact.time" | awk '{print $NF}')
rss_kb=$(grep 'Maximum resident set size' "$WORK/compact.time" | awk '{print $NF}')
cpu_user=$(grep 'User time' "$WORK/compact.time" | awk '{print $NF}')
cpu_sys=$(grep 'System time' "$WORK/compact.time" | awk '{print $NF}')

echo "== queries after"
after=$("$PY" bench/queries.py "$TABLE" "$LOOKUP")
echo "$after"

j() { "$PY" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
ratio() { "$PY" -c "import sys; print(f'{float(sys.argv[1]) / max(float(sys.argv[2]), 0.01):.1f}x')" "$1" "$2"; }
cat <<TABLE

## compaction benchmark ($(nproc) cores, $PROFILE): one day of bookings, $N deliveries

| | before | after | |
|---|---|---|---|
| files in the table | $(j "$before" files) | $(j "$after" files) | |
| rows | $(j "$before" rows) | $(j "$after" rows) | |
| DuckDB count(*) | $(j "$before" count_ms) ms | $(j "$after" count_ms) ms | $(ratio "$(j "$before" count_ms)" "$(j "$after" count_ms)") faster |
| DuckDB group by event_type | $(j "$before" group_ms) ms | $(j "$after" group_ms) ms | $(ratio "$(j "$before" group_ms)" "$(j "$after" group_ms)") faster |
| DuckDB point lookup on event_id | $(j "$before" lookup_ms) ms | $(j "$after" lookup_ms) ms | $(ratio "$(j "$before" lookup_ms)" "$(j "$after" lookup_ms)") faster |

compact: ${elapsed} wall, ${cpu_user}s user + ${cpu_sys}s system CPU, peak RSS $((rss_kb / 1024)) MiB
TABLE
[ "$(j "$after" found)" = 1 ] || { echo "the point lookup did not find $LOOKUP" >&2; exit 1; }
[ "$(j "$before" rows)" = "$(j "$after" rows)" ] || { echo "rows changed" >&2; exit 1; }
