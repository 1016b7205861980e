#!/usr/bin/env bash
# Thundering-herd benchmark (issue 8): the demo's `herd` scenario (`cutover demo --scenario
# herd`), run with the proxy's herd protection and without it (`--no-protection`), RUNS times
# each, interleaved, each pair with the same seed. Writes every run's summary and output to
# bench/results/herd-demo-{on,off}-N.{json,txt} and the table into docs/benchmarks.md (block
# "herd-demo", section "## Thundering herd").
#
#   bench/herd.sh                     # 3 runs each, 200 users, speed 1
#   RUNS=5 USERS=400 bench/herd.sh
#
# Knobs: RUNS (3), USERS (200), SPEED (1), SEED (7: run N uses SEED+N-1), MAX_BUSY (0.5) and
# IDLE_WAIT (300 s): before each run, wait up to IDLE_WAIT for other processes to use less
# than MAX_BUSY of the cores (recorded in the table either way).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-3}
USERS=${USERS:-200}
SPEED=${SPEED:-1}
SEED=${SEED:-7}
MAX_BUSY=${MAX_BUSY:-0.5}
RESULTS="$BENCH_DIR/results"

ensure_tools jq:jq
# Every user holds sockets on both sides of the proxy, all in the demo's one process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "building cutover (release)"
BIN="$(mktemp -d /tmp/cutover-herd.XXXXXX)"
trap 'rm -rf "$BIN"' EXIT
build_release "$BIN"
mkdir -p "$RESULTS"
rm -f "$RESULTS"/herd-demo-*.json "$RESULTS"/herd-demo-*.txt

# One demo run: $1 = on|off, $2 = run number. Adds the others' CPU share to its summary. A run
# that did not end by itself (a signal from outside, e.g. someone's `pkill`) is run again, at
# most twice.
run_demo() {
    local mode=$1 n=$2 seed=$((SEED + $2 - 1)) busy flag=() attempt code
    [[ $mode == off ]] && flag=(--no-protection)
    local json="$RESULTS/herd-demo-$mode-$n.json" out="$RESULTS/herd-demo-$mode-$n.txt"
    for attempt in 1 2 3; do
        busy=$(wait_idle "$MAX_BUSY")
        log "run $n, protection $mode, seed $seed (others' CPU before: $busy)"
        code=0
        "$BIN/cutover" demo --headless --scenario herd --users "$USERS" --speed "$SPEED" \
            --seed "$seed" "${flag[@]}" --summary-json "$json" </dev/null >"$out" 2>&1 || code=$?
        if ((code == 0)) && [[ $(jq -r .ended_by "$json") != interrupted ]]; then
            break
        fi
        log "run $n ($mode) was stopped from outside (exit $code, attempt $attempt)"
        ((attempt < 3)) || { log "giving up"; exit 1; }
    done
    jq --arg busy "$busy" --argjson run "$n" '. + {others_cpu: ($busy | tonumber), run: $run}' \
        "$json" >"$json.tmp"
    mv "$json.tmp" "$json"
    tail -n 4 "$out" | head -n 2 >&2
}

for n in $(seq 1 "$RUNS"); do
    run_demo on "$n"
    run_demo off "$n"
done

# The table: one row per run, then the median of each mode.
ROWS="$BIN/rows.md"
jq -rs -f "$BENCH_DIR/herd-table.jq" "$RESULTS"/herd-demo-on-*.json "$RESULTS"/herd-demo-off-*.json >"$ROWS"

BODY="$BIN/section.md"
{
    echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) by \`bench/herd.sh\`: \`cutover demo --headless --scenario herd"
    echo "--users $USERS --speed $SPEED --seed N\` (release build), with protection and with"
    echo "\`--no-protection\`, $RUNS runs each, interleaved, each pair with the same seed."
    echo
    echo "- The world: OLD one instance serving 40 requests at once, NEW three serving 10 each,"
    echo "  FALLBACK one serving 8; past that, requests wait for a slot (OLD also slows down as they"
    echo "  pile up) and fail after the pool timeout (1 s OLD, 0.5 s NEW and FALLBACK); past three to"
    echo "  four times that, an instance answers 503 at once (its accept queue is full). The proxy"
    echo "  replays a safe request that an env refused on FALLBACK within the retry budget (ratio 0.5)."
    echo "- The herd: at 25 % (step 2) an outage cuts every user off for 2 s; then all $USERS come back"
    echo "  in the same instant (WebSockets reconnect, apps resync with three requests at once). Half"
    echo "  the clients are naive (retry at once, three times), half back off and honour \`Retry-After\`."
    echo "- Protection (\`docs/demo.md\`): per env \`max_inflight\` at 90 % of what it serves at once,"
    echo "  \`queue_timeout = \"2s\"\`, new sessions 100/s with a burst of 200 (FALLBACK: 20/s, 40)."
    echo "  \`--no-protection\` leaves these keys out; the retry budget and the tunnel drain stay."
    echo "- *Users' errors*: failed attempts (no answer, 5xx, 429, refused WebSocket handshake) over"
    echo "  all attempts, retries included; *shed*: those that came with \`Retry-After\`. *Waited*:"
    echo "  a short request's time from its first attempt to its final answer (served or given up),"
    echo "  retries and their waits included. *Peak / limit*: most requests inside the env at once"
    echo "  (waiting and refused ones included) against what it can serve at once. *Refused + timed"
    echo "  out*: the envs' own 503s (full accept queue) plus pool timeouts (500). *First stop*: the"
    echo "  analyzer's first pause or rollback, in seconds after the herd, and the gate that failed."
    echo "- Everything in one process on loopback ($(nproc) visible cores); *others' CPU*: share of the"
    echo "  cores other processes used just before the run."
    echo
    cat "$ROWS"
    echo
    machine_facts
    echo "- Raw summaries and output: \`bench/results/herd-demo-{on,off}-N.{json,txt}\`."
} >"$BODY"

splice_generated "Thundering herd" herd-demo "$BODY"
log "wrote docs/benchmarks.md (block herd-demo)"
cat "$ROWS"
