#!/usr/bin/env bash
# Thundering herd against a model OLD (issue 8): one herd of clients reconnecting at once to a
# slow OLD, with and without herd protection (examples/herd_bench.rs). Writes
# bench/results/herd-*.md and the block "herd-model" of docs/benchmarks.md (between its
# markers). The herd of the demo scenario is bench/herd.sh.
#
#   bench/herd-model.sh                 # herds of 1000 and 2000 clients
#   HERDS="1000" bench/herd-model.sh
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
HERDS=${HERDS:-1000 2000}
RESULTS="$BENCH_DIR/results"
DOC="$REPO/docs/benchmarks.md"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Each client holds up to three sockets in this one process (client, proxy, upstream side).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "open-files limit $(ulimit -n)"

log "building the benchmark (release)"
(cd "$REPO" && cargo build --release --example herd_bench >&2)
BIN="$(mktemp -d /tmp/cutover-herd.XXXXXX)"
trap 'rm -rf "$BIN"' EXIT
cp "$CARGO_TARGET_DIR/release/examples/herd_bench" "$BIN/"
mkdir -p "$RESULTS"

BODY="$BIN/section.md"
{
    echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) by \`bench/herd-model.sh\` (\`examples/herd_bench.rs\`, release build)."
    echo
    echo "- OLD models a server with 100 workers: a request's service time is 200 ms ×"
    echo "  max(1, in-flight / 100) at its arrival, and it finishes every request it started, also"
    echo "  for clients that gave up. FALLBACK is a simulated env that answers 503 past 50 in"
    echo "  flight. Default retry budget (20% of requests + 5/s)."
    echo "- Every client opens a new connection per attempt, times out after 2 s, and retries after"
    echo "  the answer's \`Retry-After\` or, without one, after 100–200 ms; it gives up after 60 s."
    echo "  All clients start at the same instant."
    echo "- Protection: \`[envs.old] max_inflight = 100\`, \`queue_timeout = \"50ms\"\`,"
    echo "  \`[waiting_room] retry_after = 1\` (so 1–2 s after jitter); the third row adds"
    echo "  \`new_sessions_per_sec = 400\`, \`new_sessions_burst = 100\`."
    echo "- Everything in one process on loopback (proxy, OLD, clients share the runtime's 2"
    echo "  workers on $(nproc) visible cores); load average at start: $(cut -d' ' -f1 /proc/loadavg)."
    echo "- *Users' error rate*: answers other than 200, and client timeouts, over all requests"
    echo "  sent. *OLD work wasted*: requests OLD worked on for clients that had already given up."
    for n in $HERDS; do
        log "herd of $n clients"
        echo
        echo "**$n clients at once**"
        echo
        "$BIN/herd_bench" "$n" | tee "$RESULTS/herd-$n.md"
    done
} >"$BODY"

# Splice between the markers; create the section (and the file) when missing.
begin="<!-- herd-model:begin -->" end="<!-- herd-model:end -->"
if [[ ! -f $DOC ]]; then
    printf '# Benchmarks\n\nMeasured by the scripts in `bench/`; re-run them to refresh the tables.\n\n' >"$DOC"
fi
if ! grep -qxF "$begin" "$DOC"; then
    printf '## Thundering herd against a model OLD\n\n%s\n%s\n' "$begin" "$end" >>"$DOC"
fi
awk -v b="$begin" -v e="$end" -v body="$BODY" '
    $0 == b { print; while ((getline line < body) > 0) print line; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }
' "$DOC" >"$DOC.tmp"
mv "$DOC.tmp" "$DOC"
log "wrote docs/benchmarks.md (block herd-model)"
