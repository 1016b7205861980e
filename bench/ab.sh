#!/usr/bin/env bash
# Paired A/B of two builds of cutover's data path, for machines whose speed drifts (other
# tenants, steal time) and that may have no hardware counters: the base build (a git ref,
# default HEAD) and the working tree run back to back, the order alternating, PAIRS times; the
# result is the median of the per-pair ratios (working tree / base) of rps, CPU time per
# request and p99. A drift slower than one pair cancels out of every ratio.
#
#   bench/ab.sh                 # HEAD against the working tree
#   PAIRS=20 SECS=3 bench/ab.sh main~3
#
# Same load as bench/proxy.sh (wrk, a user key per request, the static upstream, weight 50),
# on its own ports (19201-19203 upstreams, 19280/19281 proxies, 19290/19291 admin). Writes
# bench/results/ab.txt.
set -euo pipefail

source "$(dirname "$0")/lib.sh"

REF=${1:-HEAD}
PAIRS=${PAIRS:-14}
SECS=${SECS:-3}
CONNS=${CONNS:-64}
WORK=$(mktemp -d /tmp/cutover-ab.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    git -C "$REPO" worktree remove --force "$WORK/base-src" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ensure_tools wrk:wrk curl:curl
log "building the working tree"
build_release "$WORK/new" --example bench_upstream
log "building $REF (own target dir: $REPO/target/ab-base)"
git -C "$REPO" worktree add --detach "$WORK/base-src" "$REF" >/dev/null
(cd "$WORK/base-src" && CARGO_TARGET_DIR="$REPO/target/ab-base" cargo build --release --bin cutover >&2)
mkdir -p "$WORK/base"
cp "$REPO/target/ab-base/release/cutover" "$WORK/base/"

"$WORK/new/bench_upstream" 19201 >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
wait_port 19201; wait_port 19202; wait_port 19203
export CUTOVER_TOKEN=ab-token
start() { # name port admin
    local name=$1 port=$2 admin=$3
    bench_config "$port" "$admin" "$WORK/store-$name" 19201 >"$WORK/$name.toml"
    "$WORK/$name/cutover" serve --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    wait_port "$admin"; wait_port "$port"
    set_weight_50 "$admin"
}
start base 19280 19290
BASE_PID=${PIDS[-1]}
start new 19281 19291
NEW_PID=${PIDS[-1]}

users_lua >"$WORK/users.lua"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# One run: "rps p99_ms cpu_us_per_request".
run() {
    local port=$1 pid=$2 c0 c1
    wrk -t1 -c"$CONNS" -d1s -s "$WORK/users.lua" "http://127.0.0.1:$port/" >/dev/null
    c0=$(ticks "$pid")
    wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/users.lua" "http://127.0.0.1:$port/" >"$WORK/run.txt"
    c1=$(ticks "$pid")
    awk -v t=$((c1 - c0)) -v hz="$HZ" '
        /requests in/ { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else { sub(/s$/, "", v); v *= 1000 }; p99 = v }
        END { printf "%.0f %.3f %.2f\n", rps, p99, t / hz * 1e6 / n }' "$WORK/run.txt"
}
OUT="$BENCH_DIR/results/ab.txt"
mkdir -p "$BENCH_DIR/results"
{
    echo "bench/ab.sh $(date -u +%Y-%m-%dT%H:%MZ): base $REF ($(git -C "$REPO" rev-parse --short "$REF")) against the working tree; $PAIRS pairs of ${SECS}s, wrk -t1 -c$CONNS"
    echo "pair: base rps/p99 ms/CPU µs per request | new rps/p99/CPU | new/base rps, CPU, p99"
} >"$OUT"
for i in $(seq 1 "$PAIRS"); do
    if ((i % 2)); then
        b=$(run 19280 "$BASE_PID"); n=$(run 19281 "$NEW_PID")
    else
        n=$(run 19281 "$NEW_PID"); b=$(run 19280 "$BASE_PID")
    fi
    echo "$i: $b | $n" | awk '{ printf "%s %s/%s/%s | %s/%s/%s | %.3f %.3f %.3f\n", $1, $2, $3, $4, $6, $7, $8, $6 / $2, $8 / $4, $7 / $3 }' | tee -a "$OUT"
done
awk -F'|' 'NR > 2 { split($3, r, " "); rps[NR] = r[1]; cpu[NR] = r[2]; p99[NR] = r[3] }
    function median(a,    n, i, j, v, s) {
        n = 0; for (i in a) s[++n] = a[i]
        for (i = 2; i <= n; i++) { v = s[i]; for (j = i - 1; j >= 1 && s[j] > v; j--) s[j + 1] = s[j]; s[j + 1] = v }
        return n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
    }
    END { printf "median new/base: rps %.3f, CPU per request %.3f, p99 %.3f\n", median(rps), median(cpu), median(p99) }' "$OUT" | tee -a "$OUT"
log "written to $OUT"
