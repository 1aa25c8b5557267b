#!/usr/bin/env bash
# The hot path's library calls timed on this CPU (bench/stage_cost.rs), then counted under
# valgrind's callgrind, which `bench/profile.sh` uses: the same calls, native nanoseconds beside
# instructions, so the callgrind shares can be read for what valgrind changes (it hides CPU
# features such as the SHA extensions, so the code may take a slower path under it).
#
#   bash bench/stage_cost.sh           N=50000 deliveries timed, 3,000 under callgrind
#   bash bench/stage_cost.sh --smoke   the debug build, a few hundred deliveries, no callgrind
#
# Knobs (env): N, CG_N (deliveries under callgrind), GEN_BODY_BYTES / GEN_TRIGGERS (gen-payloads').
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
SECRET=whsec_bench_secret_0123456789
WORK=$(mktemp -d /tmp/oncehub-stages.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
if [ "$SMOKE" = 1 ]; then N=${N:-500}; PROFILE=debug; release=(); else N=${N:-50000}; PROFILE=release; release=(--release); fi
CG_N=${CG_N:-3000}

cargo build --locked "${release[@]}" --example gen-payloads --example stage-cost
"target/$PROFILE/examples/gen-payloads" "$N" "$SECRET" "$WORK/payloads.txt" stages >/dev/null 2>&1

echo "== native ($PROFILE), $N deliveries"
"target/$PROFILE/examples/stage-cost" "$WORK/payloads.txt" "$SECRET"
[ "$SMOKE" = 1 ] && exit 0

bash bench/apt-install.sh valgrind callgrind_annotate -- valgrind
echo "== callgrind, $CG_N deliveries"
valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" --dump-instr=no \
  "target/$PROFILE/examples/stage-cost" "$WORK/payloads.txt" "$SECRET" "$CG_N" >/dev/null 2>"$WORK/valgrind.log" \
  || { tail -20 "$WORK/valgrind.log" >&2; exit 1; }
callgrind_annotate --inclusive=yes --threshold=100 "$WORK/callgrind.out" >"$WORK/inclusive.txt" 2>/dev/null
# Each stage runs 3 times over the deliveries (stage_cost.rs PASSES).
python3 - "$WORK/inclusive.txt" "$((CG_N * 3))" <<'EOF'
import re, sys
stages = [
    ("HMAC-SHA256 verify", "oncehub_bridge::oncehub::signature::Verifier::verify"),
    ("dedup key (SHA-256 of the id)", "oncehub_bridge::spool::dedup::EventKey::of"),
    ("JSON parse into Value (drop not counted)", "Deserialize for serde_json::value::Value>::deserialize ["),
]
line = re.compile(r"^\s*([\d,]+)\s+(?:\([\d.]+%\)\s+)?(.*)$")
best = {}
for text in open(sys.argv[1]):
    m = line.match(text)
    if not m:
        continue
    for label, pattern in stages:
        if pattern in m.group(2):
            best[label] = max(best.get(label, 0), int(m.group(1).replace(",", "")))
calls = int(sys.argv[2])
print(f"{'stage':<48} {'instructions/delivery':>22}")
for label, _ in stages:
    print(f"{label:<48} {best.get(label, 0) / calls:>22,.0f}")
EOF
