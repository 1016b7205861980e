#!/usr/bin/env bash
# Detection-speed benchmark (issue 4): time from an injected fault on NEW to the run's decision
# (rolling_back or paused) as seen through the control API, with the real `cutover serve`
# binary and simulated envs (examples/detection.rs). Writes bench/results/detection.txt and the
# section "## Detection speed" of docs/benchmarks.md.
#
#   bench/detection.sh              # 5 runs per scenario
#   RUNS=10 bench/detection.sh
set -euo pipefail

source "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-5}
MAX_LOAD=${MAX_LOAD:-1.5}
RESULTS="$BENCH_DIR/results"
WORK=$(mktemp -d /tmp/cutover-detect.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

log "building release binaries"
build_release "$WORK/bin" --example detection
mkdir -p "$RESULTS"
wait_quiet "$MAX_LOAD"
load=$(cut -d' ' -f1 /proc/loadavg)
STAMP=$(date -u +%Y-%m-%dT%H:%MZ)
"$WORK/bin/detection" --bin "$WORK/bin/cutover" --runs "$RUNS" 2>&1 >"$WORK/out.txt" |
    tee "$WORK/runs.txt" >&2
load_after=$(cut -d' ' -f1 /proc/loadavg)
cat "$WORK/runs.txt" "$WORK/out.txt" >"$RESULTS/detection.txt"

section="$WORK/section.md"
{
    echo "Measured $STAMP by \`bench/detection.sh\` ($RUNS runs per scenario; load average $load"
    echo "before, $load_after after; per-run lines in \`bench/results/detection.txt\`)."
    echo
    sed -n '/^--- table ---$/,/^--- end ---$/p' "$WORK/out.txt" | sed '1d;$d'
    echo
    machine_facts
} >"$section"
splice_generated "Detection speed" detection "$section"
log "docs/benchmarks.md updated"
cat "$section"
