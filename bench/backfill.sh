#!/usr/bin/env bash
# Backfill benchmark: `oncehub-bridge backfill` against a stand-in of OnceHub's list endpoints
# (bench/stub_oncehub.py: the documented 5 requests/s and 200 requests per window, 429 beyond)
# into a running `serve`; reports bookings/s, rows/s, requests/s reached against the stand-in's
# limits (its own counts: most requests in any second and in any window, 429s answered), and
# checks with DuckDB that every booking and contact landed once.
#
#   bash bench/backfill.sh           full run: release build, 18,000 bookings + 1,800 contacts
#                                    (198 pages: inside one 5-minute window)
#   bash bench/backfill.sh --smoke   300 bookings + 100 contacts on the debug build
#
# Knobs (env): BOOKINGS, CONTACTS, WINDOW_REQUESTS (200), WINDOW_SECONDS (300), KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
if [ "$SMOKE" = 1 ]; then
  BOOKINGS=${BOOKINGS:-300}; CONTACTS=${CONTACTS:-100}; PROFILE=debug
else
  BOOKINGS=${BOOKINGS:-18000}; CONTACTS=${CONTACTS:-1800}; PROFILE=release
fi
export WINDOW_REQUESTS=${WINDOW_REQUESTS:-200} WINDOW_SECONDS=${WINDOW_SECONDS:-300} API_KEY=bench-key
SECRET=whsec_bench_secret_0123456789
PORT=${BRIDGE_PORT:-18091}
API_PORT=${API_PORT:-18092}
WORK=$(mktemp -d /tmp/oncehub-backfill-bench.XXXXXX)
PY=.tools/venv/bin/python

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

[ -x "$PY" ] || bash scripts/duckdb-venv.sh
release=(); [ "$PROFILE" = release ] && release=(--release)
# The same targets as the other benchmarks (an example pulls the dev-dependencies), so the
# debug smoke reuses the test build instead of compiling the dependencies again.
cargo build --locked "${release[@]}" --bin oncehub-bridge --example gen-payloads
BIN=target/$PROFILE/oncehub-bridge

"$PY" bench/stub_oncehub.py "$API_PORT" "$BOOKINGS" "$CONTACTS" "$WORK/api-stats.json" &
api=$!
pids+=("$api")
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --webhook-secret "$SECRET" \
  --flush-interval 2s --compact-after 0 >"$WORK/serve.log" 2>&1 &
bridge=$!
pids+=("$bridge")
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && curl -s -o /dev/null "http://127.0.0.1:$API_PORT/" && break
  sleep 0.1
done

echo "== backfill: $BOOKINGS bookings, $CONTACTS contacts; the stand-in allows 5 requests/s and $WINDOW_REQUESTS per ${WINDOW_SECONDS}s"
start=$(date +%s.%N)
"$BIN" backfill --api-key "$API_KEY" --api-base-url "http://127.0.0.1:$API_PORT/v2" --data-dir "$WORK/data" \
  --url "http://127.0.0.1:$PORT/webhooks/oncehub" --webhook-secret "$SECRET" --since 2020-01-01 \
  --rate-window-requests "$WINDOW_REQUESTS" --rate-window "${WINDOW_SECONDS}s" | tee "$WORK/backfill.out" | tail -1
end=$(date +%s.%N)
kill -TERM "$api"; wait "$api" 2>/dev/null || true
kill -TERM "$bridge"; wait "$bridge" || { cat "$WORK/serve.log"; exit 1; }

"$PY" - "$WORK" "$BOOKINGS" "$CONTACTS" "$start" "$end" <<'PY'
import json, sys
import duckdb
work, bookings, contacts, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
api = json.load(open(f"{work}/api-stats.json"))
con = duckdb.connect()
con.execute("INSTALL delta; LOAD delta;")
lake = f"{work}/data/lake"
got_b, ids_b = con.execute(f"SELECT count(*), count(DISTINCT booking_id) FROM delta_scan('{lake}/bookings') WHERE source = 'api'").fetchone()
got_c = con.execute(f"SELECT count(*) FROM delta_scan('{lake}/contacts')").fetchone()[0]
got_v = con.execute(f"SELECT count(*) FROM delta_scan('{lake}/conversations')").fetchone()[0]
secs = end - start
rows = got_b + got_c + got_v
print(f"landed: {got_b} bookings ({ids_b} distinct), {got_c} contacts, {got_v} conversations")
print(f"backfill: {secs:.1f} s, {bookings / secs:.0f} bookings/s, {rows / secs:.0f} rows/s, "
      f"{api['requests'] / secs:.2f} requests/s")
print(f"stand-in: {api['requests']} requests, most in any second {api['max_per_second']} (limit 5), "
      f"most in any {api['window_seconds']:.0f} s {api['max_per_window']}, 429 answered {api['answered_429']}")
ok = got_b == bookings == ids_b and got_c == contacts and api["max_per_second"] <= 5
sys.exit(0 if ok else 1)
PY
