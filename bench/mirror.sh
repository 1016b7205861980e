#!/usr/bin/env bash
# Shadow traffic's cost to users (issue 25): users' rps and p99 through cutover with no mirror
# and with every user's requests copied to NEW (a plan step `weight = 0`, `mirror = 100`), in
# the same run, rounds interleaved (0 %, 100 %, 0 %, 100 %, ...) so a change of the machine's
# load hits both alike. The mirror is switched by the control API: `pause` stops the copies
# (mirror 0 %), `resume` starts them again (mirror 100 %). Writes bench/results/mirror-*.txt
# (raw wrk outputs) and the section "## Shadow traffic" of docs/benchmarks.md.
#
#   bench/mirror.sh                      # defaults below
#   DURATION=20s CONNS=128 ROUNDS=5 bench/mirror.sh
set -euo pipefail

source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
MAX_BUSY=${MAX_BUSY:-0.25}
BASE=${BASE:-19301}                   # upstreams: old BASE, new BASE+1, fallback BASE+2
P_CUTOVER=19380 P_ADMIN=19390
RESULTS="$BENCH_DIR/results"
WORK=$(mktemp -d /tmp/cutover-mirror-bench.XXXXXX)
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

ensure_tools wrk:wrk curl:curl jq:jq
log "building release binaries"
build_release "$WORK/bin" --example bench_upstream
mkdir -p "$RESULTS"

"$WORK/bin/bench_upstream" "$BASE" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
wait_port "$BASE"; wait_port $((BASE + 1)); wait_port $((BASE + 2))

export CUTOVER_TOKEN=bench-token
bench_config $P_CUTOVER $P_ADMIN store "$BASE" >"$WORK/cutover.toml"
# The bound high enough that no copy is dropped: the measure is the cost of sending them all.
printf '[mirror]\nmax_inflight = 4096\n' >>"$WORK/cutover.toml"
CUTOVER_LOG=${CUTOVER_LOG:-warn} "$WORK/bin/cutover" serve --config "$WORK/cutover.toml" \
    >"$WORK/cutover.out" 2>"$WORK/cutover.err" &
CUTOVER_PID=$!
PIDS+=($CUTOVER_PID)
wait_port $P_ADMIN; wait_port $P_CUTOVER

api() {
    curl -fsS -H "Authorization: Bearer $CUTOVER_TOKEN" -X "$1" "http://127.0.0.1:$P_ADMIN$2" \
        ${3:+--data-binary "$3"}
}
api POST /v1/start $'name = "shadow-bench"\n[[steps]]\nweight = 0\nmirror = 100\nhold = "24h"\n[[steps]]\nweight = 100\n' >/dev/null
mirror() {
    local want=$1 state
    state=$(api GET /v1/status | jq -r .state)
    if [[ $want == 0 && $state == running ]]; then api POST /v1/pause >/dev/null; fi
    if [[ $want == 100 && $state == paused ]]; then api POST /v1/resume >/dev/null; fi
    local pct
    pct=$(api GET /v1/status | jq .mirror.percent)
    [[ $pct == "$want" || $pct == "$want.0" ]] || { log "mirror is $pct %, not $want %"; exit 1; }
}

users_lua >"$WORK/users.lua"
median() { awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
to_ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.3f", v }' <<<"$1"; }
url="http://127.0.0.1:$P_CUTOVER"
: >"$WORK/rows"
for round in $(seq 1 "$ROUNDS"); do
    for pct in 0 100; do
        mirror "$pct"
        wait_idle "$MAX_BUSY" >/dev/null
        wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$WORK/users.lua" "$url" >/dev/null
        out="$RESULTS/mirror-$pct-round$round.txt"
        c0=$(cpu_ticks "$CUTOVER_PID")
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$WORK/users.lua" "$url" >"$out"
        c1=$(cpu_ticks "$CUTOVER_PID")
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        reqs=$(awk '/requests in/ {print $1}' "$out")
        p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
        non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
        # cutover's CPU per user request, in µs (clock ticks are 1/100 s).
        cpu_us=$(awk -v t=$((c1 - c0)) -v n="$reqs" 'BEGIN { printf "%.1f", t * 10000 / n }')
        echo "$pct $round $rps $p99 ${non2xx:-0} $cpu_us" >>"$WORK/rows"
        log "mirror $pct % round $round: $rps rps, p99 $p99 ms, non-2xx ${non2xx:-0}, cutover CPU $cpu_us µs/request"
    done
done
copies=$(api GET /metrics | awk '$1 == "cutover_mirror_requests_total{env=\"new\"}" {print $2}')
dropped=$(api GET /metrics | awk '$1 == "cutover_mirror_dropped_total{env=\"new\"}" {print $2}')

{
    echo "| mirror | rounds | users' rps (median) | users' p99 ms (median) | cutover CPU µs per user request (median) |"
    echo "| --- | --- | --- | --- | --- |"
    for pct in 0 100; do
        rps=$(awk -v p="$pct" '$1 == p {print $3}' "$WORK/rows" | sort -n | median)
        p99=$(awk -v p="$pct" '$1 == p {print $4}' "$WORK/rows" | sort -n | median)
        cpu=$(awk -v p="$pct" '$1 == p {print $6}' "$WORK/rows" | sort -n | median)
        echo "| $pct % | $ROUNDS | $rps | $p99 | $cpu |"
    done
    echo
    echo "Copies sent to NEW: ${copies:-?}, dropped: ${dropped:-?}; $CONNS connections, $THREADS wrk thread(s), $DURATION per round."
    echo
    machine_facts
} >"$WORK/table.md"
cat "$WORK/table.md"
splice_generated "Shadow traffic" mirror "$WORK/table.md"
