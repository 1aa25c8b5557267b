#!/usr/bin/env bash
# The benchmark: oncehub-bridge (durable spool on, fsync before every 2xx, local lake) against an
# HTTP ceiling (nginx `return 200`, storing nothing) under the same load on the same machine.
#
#   bash bench/run.sh           full run: release build, ~1 M deliveries, a table at the end
#   bash bench/run.sh --smoke   a few seconds on the debug build, to keep the harness working
#
# Installs wrk and nginx from Debian's packages and DuckDB from PyPI when missing. Knobs (env):
# N (deliveries at saturation), CONNS (64), THREADS (1), RATE (5000), RATE_SECS (10), KEEP=1,
# BRIDGE_ARGS (more `serve` flags, e.g. "--inspector off"), FLUSH_INTERVAL (10s), BIN and GEN (binaries
# to run instead of building this tree), and gen-payloads' GEN_BODY_BYTES / GEN_TRIGGERS (body size,
# triggers).
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
RATE=${RATE:-5000}
if [ "$SMOKE" = 1 ]; then
  N=${N:-20000}; RATE_SECS=${RATE_SECS:-2}; CEIL_SECS=2; PROFILE=debug
else
  N=${N:-1050000}; RATE_SECS=${RATE_SECS:-10}; CEIL_SECS=10; PROFILE=release
fi
RATE_N=$((RATE * RATE_SECS + CONNS))
FLUSH_INTERVAL=${FLUSH_INTERVAL:-10s}
SECRET=whsec_bench_secret_0123456789
BRIDGE_PORT=${BRIDGE_PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
WORK=$(mktemp -d /tmp/oncehub-bench.XXXXXX)
PY=.tools/venv/bin/python

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

bash bench/apt-install.sh wrk nginx -- wrk nginx-light
bash scripts/duckdb-venv.sh

echo "== building ($PROFILE)"
release=()
[ "$PROFILE" = release ] && release=(--release)
# BIN / GEN: binaries built elsewhere (e.g. an older commit, for a back-to-back comparison).
if [ -z "${BIN:-}" ]; then cargo build --locked "${release[@]}" --bin oncehub-bridge --example gen-payloads; fi
BIN=${BIN:-target/$PROFILE/oncehub-bridge}
GEN=${GEN:-target/$PROFILE/examples/gen-payloads}

echo "== generating $N + $RATE_N signed deliveries"
gen() { "$GEN" "$1" "$SECRET" "$2" "$3" 2>&1 | grep -o '[0-9]* bytes of JSON' | cut -d' ' -f1; }
sat_json=$(gen "$N" "$WORK/sat.txt" sat)
rate_json=$(gen "$RATE_N" "$WORK/rate.txt" rate)

# key=value from a RESULT/LAKE line
val() { grep -o "\b$2=[0-9.]*" <<<"$1" | head -1 | cut -d= -f2; }
# load NAME URL PAYLOADS MAX_SECONDS [RATE]: prints wrk's RESULT line. wrk runs for its whole -d
# even after every thread stopped, so once all threads have sent their share it gets SIGINT,
# on which it reports with the real duration.
load() {
  rm -f "$WORK/done".*
  PAYLOADS=$3 THREADS=$THREADS CONNS=$CONNS RATE=${5:-0} DONE="$WORK/done" \
    wrk -t"$THREADS" -c"$CONNS" -d"$4"s --timeout 10s -s bench/post.lua "$2/webhooks/oncehub" >"$WORK/$1.wrk" 2>&1 &
  local wrk_pid=$!
  while kill -0 "$wrk_pid" 2>/dev/null; do
    if [ "$(ls "$WORK"/done.* 2>/dev/null | wc -l)" -ge "$THREADS" ]; then kill -INT "$wrk_pid"; break; fi
    sleep 0.05
  done
  wait "$wrk_pid" || true
  grep '^RESULT' "$WORK/$1.wrk" || { cat "$WORK/$1.wrk" >&2; exit 1; }
}
wait_http() {
  for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "nothing answers at $1" >&2; exit 1
}

echo "== ceiling: nginx return 200, ${CEIL_SECS}s"
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  keepalive_requests 10000000;
  server { listen 127.0.0.1:$NGINX_PORT; location / { return 200; } }
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
pids+=($!)
wait_http "http://127.0.0.1:$NGINX_PORT/"
ceiling=$(load ceiling "http://127.0.0.1:$NGINX_PORT" "$WORK/sat.txt" "$CEIL_SECS")
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

echo "== oncehub-bridge: $RATE/s for ${RATE_SECS}s, then $N deliveries as fast as they are taken"
"$BIN" serve --listen "127.0.0.1:$BRIDGE_PORT" --data-dir "$WORK/data" --webhook-secret "$SECRET" \
  --signature-tolerance 0 --flush-interval "$FLUSH_INTERVAL" --shutdown-timeout 600s ${BRIDGE_ARGS:-} >"$WORK/serve.log" 2>&1 &
bridge=$!
pids+=("$bridge")
wait_http "http://127.0.0.1:$BRIDGE_PORT/healthz"
# VmHWM is the kernel's own peak RSS; the last reading before exit is the run's peak.
# /proc/PID/stat fields 14 and 15: user and system CPU time in clock ticks, read the same way.
(while kill -0 "$bridge" 2>/dev/null; do
  grep VmHWM "/proc/$bridge/status" >"$WORK/hwm.tmp" 2>/dev/null && mv "$WORK/hwm.tmp" "$WORK/hwm"
  # Heap and anonymous maps vs mapped files, to tell what the peak is made of.
  grep -E '^(RssAnon|RssFile)' "/proc/$bridge/status" >>"$WORK/rss" 2>/dev/null || true
  # Anonymous memory backed by transparent huge pages (2 MiB each, however little of one is used).
  grep -E '^AnonHugePages' "/proc/$bridge/smaps_rollup" >>"$WORK/rss" 2>/dev/null || true
  cut -d')' -f2 "/proc/$bridge/stat" 2>/dev/null | awk '{print $12 + $13}' >"$WORK/cpu.tmp" && mv "$WORK/cpu.tmp" "$WORK/cpu"
  # Each thread's name, CPU ticks, of those system (kernel) ticks, and minor page faults (field
  # 10), in one process (threads come and go: the last reading counts).
  awk '{ o = index($0, "("); c = index($0, ") "); split(substr($0, c + 2), f, " ");
         printf "%s\t%s\t%d\t%d\t%d\n", FILENAME, substr($0, o + 1, c - o - 1), f[12] + f[13], f[13], f[8] }' \
    /proc/"$bridge"/task/*/stat >>"$WORK/threads" 2>/dev/null || true
  sleep 0.2
done) &

fixed=$(load fixed "http://127.0.0.1:$BRIDGE_PORT" "$WORK/rate.txt" $((RATE_SECS * 3)) "$RATE")
# Let the fixed-rate deliveries reach the lake alone, so their lag is not the saturation backlog's.
for _ in $(seq 60); do
  lake=$("$PY" bench/lake.py "$WORK/data/lake" EVNT-rate- 2>/dev/null || true)
  [ -n "$lake" ] && [ "$(val "$lake" lag_rows)" -ge "$(val "$fixed" requests)" ] && break
  sleep 1
done
lag=$lake

saturated=$(load saturation "http://127.0.0.1:$BRIDGE_PORT" "$WORK/sat.txt" 300)
stop_started=$(date +%s.%N)
kill -TERM "$bridge"
wait "$bridge" || { tail -20 "$WORK/serve.log" >&2; echo "the bridge did not stop cleanly" >&2; exit 1; }
drain=$("$PY" -c "print(round($(date +%s.%N) - $stop_started, 1))")
sleep 0.3
peak_kib=$(grep -o '[0-9]*' "$WORK/hwm")
peak_of() { awk -v k="$1:" '$1 == k && $2 > m { m = $2 } END { print int(m / 1024) }' "$WORK/rss"; }
cpu_ticks=$(cat "$WORK/cpu")
lake=$("$PY" bench/lake.py "$WORK/data/lake" EVNT-rate-)
per_fsync=$(grep -o 'records_per_fsync"\?[=:]"\?[0-9.]*' "$WORK/serve.log" | grep -o '[0-9.]*$' || echo "?")

accepted=$(($(val "$fixed" requests) - $(val "$fixed" non2xx) + $(val "$saturated" requests) - $(val "$saturated" non2xx)))
calc() { "$PY" -c "print($1)"; }
json_per=$(calc "($sat_json + $rate_json) // ($N + $RATE_N)")
ms() { calc "round($1 / 1000, 2)"; }
rows=$(val "$lake" rows)
# CPU per delivery by thread kind, from the last reading of every thread the bridge had.
by_thread=$("$PY" bench/threads.py "$WORK/threads" "$(getconf CLK_TCK)" "$rows" 2>/dev/null || echo "?")
sat_rps=$(val "$saturated" rps)
ceil_rps=$(val "$ceiling" rps)

cat <<EOF

## oncehub-bridge benchmark ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $PROFILE, wrk -t$THREADS -c$CONNS)

| measure | value |
|---|---|
| ceiling: nginx return 200 | $ceil_rps req/s |
| bridge at saturation, fsync on | $sat_rps deliveries/s over $(val "$saturated" requests) deliveries |
| bridge / ceiling | $(calc "round($sat_rps / $ceil_rps, 2)") |
| ack latency at saturation p50 / p99 / p99.9 / max | $(ms "$(val "$saturated" p50)") / $(ms "$(val "$saturated" p99)") / $(ms "$(val "$saturated" p999)") / $(ms "$(val "$saturated" max)") ms |
| ack latency at $(val "$fixed" rps)/s (aimed at $RATE/s) p50 / p99 / p99.9 | $(ms "$(val "$fixed" p50)") / $(ms "$(val "$fixed" p99)") / $(ms "$(val "$fixed" p999)") ms |
| deliveries per fsync (average) | $per_fsync |
| non-2xx answers / socket errors | $(($(val "$fixed" non2xx) + $(val "$saturated" non2xx))) / $(($(val "$fixed" errors) + $(val "$saturated" errors))) |
| peak RSS (of which anonymous / mapped files, sampled every 0.2 s) | $((peak_kib / 1024)) MiB ($(peak_of RssAnon) / $(peak_of RssFile) MiB; transparent huge pages at most $(peak_of AnonHugePages) MiB) |
| bridge CPU per delivery (receive, spool, encode, store) | $(calc "round($cpu_ticks / $(getconf CLK_TCK) * 1e6 / $rows, 1)") µs |
| of which, by thread | $by_thread |
| JSON received per delivery | $json_per B |
| Parquet written per delivery | $(($(val "$lake" parquet_bytes) / rows)) B ($(calc "round(100 * $(val "$lake" parquet_bytes) / $rows / $json_per, 1)") % of JSON) |
| 2xx to readable in the lake (committed) p50 / p99 / max (flush and commit interval $FLUSH_INTERVAL) | $(val "$lag" lag_p50) / $(val "$lag" lag_p99) / $(val "$lag" lag_max) s |
| Delta log entries / bytes per entry | $(val "$lake" log_entries) / $(calc "$(val "$lake" log_bytes) // max(1, $(val "$lake" log_entries))") B |
| SIGTERM to exit (drains the spool backlog) | $drain s |
| rows in the lake / distinct ids / 2xx counted by wrk | $rows / $(val "$lake" distinct) / $accepted |
EOF
# Requests in flight when wrk stops are not counted but may have been answered: so the lake may
# hold a few more rows than the 2xx wrk counted, never fewer, and never a duplicate.
if [ "$rows" -lt "$accepted" ] || [ "$(val "$lake" distinct)" != "$rows" ]; then
  echo "MISMATCH: every 2xx must be exactly one row" >&2
  exit 1
fi
