#!/usr/bin/env bash
# Where the bridge's CPU goes, by function: the release binary under valgrind's callgrind, which
# counts instructions, so it works on VMs where `perf record` gets no samples. It takes N signed
# deliveries (the benchmark's payloads) at a low fixed rate (callgrind runs ~50x slower, one thread
# at a time), then SIGTERM, then prints each stage's inclusive share of all instructions.
#
#   bash bench/profile.sh        N=10000 RATE=100 (about 2.5 minutes after the build)
#
# Knobs (env): N, RATE, BIN and GEN (binaries to profile instead of building this tree), KEEP=1
# (keep the callgrind output), BRIDGE_ARGS (more `serve` flags).
# Instructions are not time (fdatasync and page faults cost no instructions), so read the shares
# next to bench/run.sh's CPU by thread.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
RATE=${RATE:-100}
CONNS=8
SECRET=whsec_bench_secret_0123456789
PORT=${BRIDGE_PORT:-18090}
WORK=$(mktemp -d /tmp/oncehub-profile.XXXXXX)
PY=.tools/venv/bin/python
bridge=
cleanup() {
  [ -n "$bridge" ] && kill "$bridge" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

bash bench/apt-install.sh valgrind callgrind_annotate wrk -- valgrind wrk
bash scripts/duckdb-venv.sh

# BIN / GEN: profile binaries built elsewhere (e.g. an older commit) instead of building this tree.
if [ -z "${BIN:-}" ]; then cargo build --locked --release --bin oncehub-bridge --example gen-payloads; fi
BIN=${BIN:-target/release/oncehub-bridge}
"${GEN:-target/release/examples/gen-payloads}" "$N" "$SECRET" "$WORK/payloads.txt" prof >/dev/null 2>&1

echo "== callgrind: $N deliveries at $RATE/s"
valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" --dump-instr=no \
  "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" \
  --webhook-secret "$SECRET" --signature-tolerance 0 --flush-interval 600s --shutdown-timeout 600s \
  ${BRIDGE_ARGS:-} >"$WORK/serve.log" 2>&1 &
bridge=$!
for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
PAYLOADS="$WORK/payloads.txt" THREADS=1 CONNS=$CONNS RATE=$RATE DONE="$WORK/done" \
  wrk -t1 -c$CONNS -d$((N / RATE + 30))s --timeout 30s -s bench/post.lua "http://127.0.0.1:$PORT/webhooks/oncehub" \
  >"$WORK/wrk.out" 2>&1 &
wrk_pid=$!
while kill -0 "$wrk_pid" 2>/dev/null; do
  [ -e "$WORK/done.0" ] && { kill -INT "$wrk_pid"; break; }
  sleep 0.2
done
wait "$wrk_pid" || true
grep '^RESULT' "$WORK/wrk.out"
kill -TERM "$bridge"
wait "$bridge" || { tail -20 "$WORK/serve.log" >&2; exit 1; }
bridge=
callgrind_annotate --inclusive=yes --threshold=100 "$WORK/callgrind.out" >"$WORK/inclusive.txt" 2>/dev/null
"$PY" bench/profile_shares.py "$WORK/inclusive.txt" "$(grep -o 'requests=[0-9]*' "$WORK/wrk.out" | cut -d= -f2)"
