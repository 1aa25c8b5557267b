#!/usr/bin/env bash
# What holds the bridge's memory at its peak: the release binary built with glibc malloc (the
# `system-allocator` feature; heaptrack sees only `malloc`, not mimalloc) under heaptrack, taking
# N signed deliveries as fast as wrk sends them, then SIGTERM; prints heaptrack's peak consumers.
#
#   bash bench/heap.sh           N=300000 (about 3 minutes after the build)
#
# Knobs (env): N, CONNS (64), KEEP=1, BRIDGE_ARGS (more `serve` flags). The build replaces
# target/release/oncehub-bridge with the glibc one: `cargo build --release` puts mimalloc back.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-300000}
CONNS=${CONNS:-64}
SECRET=whsec_bench_secret_0123456789
PORT=${BRIDGE_PORT:-18091}
WORK=$(mktemp -d /tmp/oncehub-heap.XXXXXX)
bridge=
cleanup() {
  [ -n "$bridge" ] && kill "$bridge" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

bash bench/apt-install.sh heaptrack wrk -- heaptrack wrk

cargo build --locked --release --features system-allocator --bin oncehub-bridge --example gen-payloads
cp target/release/oncehub-bridge "$WORK/bridge-glibc"
target/release/examples/gen-payloads "$N" "$SECRET" "$WORK/payloads.txt" heap >/dev/null 2>&1

echo "== heaptrack: $N deliveries at saturation"
heaptrack -o "$WORK/heap" "$WORK/bridge-glibc" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" \
  --webhook-secret "$SECRET" --signature-tolerance 0 --flush-interval 10s --shutdown-timeout 600s \
  ${BRIDGE_ARGS:-} >"$WORK/serve.log" 2>&1 &
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
bridge=$(pgrep -f "^$WORK/bridge-glibc" | head -1)
PAYLOADS="$WORK/payloads.txt" THREADS=1 CONNS=$CONNS DONE="$WORK/done" \
  wrk -t1 -c"$CONNS" -d600s --timeout 30s -s bench/post.lua "http://127.0.0.1:$PORT/webhooks/oncehub" \
  >"$WORK/wrk.out" 2>&1 &
wrk_pid=$!
while kill -0 "$wrk_pid" 2>/dev/null; do
  [ -e "$WORK/done.0" ] && { kill -INT "$wrk_pid"; break; }
  sleep 0.2
done
wait "$wrk_pid" || true
grep '^RESULT' "$WORK/wrk.out"
echo "peak RSS: $(grep VmHWM "/proc/$bridge/status" | grep -o '[0-9]*') KiB"
kill -TERM "$bridge"
while kill -0 "$bridge" 2>/dev/null; do sleep 0.2; done
bridge=
sleep 2
heaptrack_print -f "$(ls "$WORK"/heap*.zst "$WORK"/heap*.gz 2>/dev/null | head -1)" --print-peaks 1 \
  --print-allocators 0 --print-temporary 0 --print-leaks 0 -n "${PEAKS:-15}" -s 3 2>/dev/null \
  | sed -n '/PEAK MEMORY CONSUMERS/,$p' | cut -c1-240
