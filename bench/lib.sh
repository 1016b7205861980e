# Shared helpers for bench/*.sh (sourced, not run).

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Install the given Debian packages for the commands that are missing ("cmd:package" pairs).
ensure_tools() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Wait until a TCP port on 127.0.0.1 accepts connections (10 s deadline).
wait_port() {
    local port=$1 i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    log "port $port did not open"
    return 1
}

# Share (0..1) of all cores busy over the next $1 seconds (default 2), from /proc/stat.
cpu_busy() {
    local a b
    a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    sleep "${1:-2}"
    b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        busy = y[1] - x[1]; idle = y[2] - x[2]; printf "%.2f", busy / (busy + idle + 1e-9) }'
}

# Clock ticks used so far by the given processes, threads included: the awk expression $1 of
# /proc/PID/stat's fields (14: user, 15: system) summed over the processes $2...
proc_ticks() {
    local expr=$1 total=0 p
    shift
    for p in "$@"; do
        total=$((total + $(awk "{print $expr}" "/proc/$p/stat")))
    done
    echo $total
}
# CPU time (user + system) and user time alone, in clock ticks.
cpu_ticks() { proc_ticks '$14 + $15' "$@"; }
user_ticks() { proc_ticks '$14' "$@"; }

# Wait (up to $IDLE_WAIT seconds, default 300) until other processes leave the cores mostly
# idle: busy share below $1 over 2 s (with nothing of ours running, that is everybody else:
# compilers, tests). Prints the last busy share measured.
wait_idle() {
    local max=$1 i busy
    for i in $(seq 1 $((${IDLE_WAIT:-300} / 5))); do
        busy=$(cpu_busy 2)
        if awk -v b="$busy" -v m="$max" 'BEGIN { exit !(b < m) }'; then
            echo "$busy"
            return 0
        fi
        log "cores $busy busy (others compiling?); waiting for < $max"
        sleep 3
    done
    log "still busy; going on anyway (recorded in the results)"
    echo "$busy"
}

# Build the release binaries and copy them out of the shared target dir, so a parallel build
# from another branch cannot swap them during the run. Prints the directory.
build_release() {
    local out=$1
    shift
    (cd "$REPO" && cargo build --release --bin cutover "$@" >&2)
    mkdir -p "$out"
    cp "$CARGO_TARGET_DIR/release/cutover" "$out/"
    local a
    for a in "$@"; do
        [[ $a == --example ]] && continue
        cp "$CARGO_TARGET_DIR/release/examples/$a" "$out/"
    done
}

# Put file $3 into docs/benchmarks.md between the lines "<!-- $2:begin -->" and
# "<!-- $2:end -->"; without those markers, append them at the end of section "## $1" (creating
# the section when missing). Hand-written text around the markers stays.
splice_generated() {
    local title=$1 name=$2 body=$3 doc="$REPO/docs/benchmarks.md"
    local begin="<!-- $name:begin -->" end="<!-- $name:end -->"
    if [[ ! -f $doc ]]; then
        printf '# Benchmarks\n\nMeasured by the scripts in `bench/`; re-run them to refresh the tables.\n\n' >"$doc"
    fi
    if ! grep -qxF "$begin" "$doc"; then
        grep -qx "## $title" "$doc" || printf '## %s\n\n' "$title" >>"$doc"
        awk -v title="## $title" -v b="$begin" -v e="$end" '
            function flush() { if (in_sec && !done) { print b; print e; print ""; done = 1 } }
            /^## / { if ($0 != title) flush(); in_sec = ($0 == title) }
            { print }
            END { flush() }
        ' "$doc" >"$doc.tmp"
        mv "$doc.tmp" "$doc"
    fi
    awk -v b="$begin" -v e="$end" -v body="$body" '
        $0 == b { print; while ((getline line < body) > 0) print line; skip = 1; next }
        $0 == e { skip = 0 }
        !skip { print }
    ' "$doc" >"$doc.tmp"
    mv "$doc.tmp" "$doc"
}

machine_facts() {
    echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores visible (\`nproc\`), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
    echo "- Kernel $(uname -r); $(rustc --version)"
}

# The cutover.toml of the data-path benches on stdout: listener on $1, admin on $2, store at $3,
# upstreams OLD/NEW/FALLBACK on ports $4..$4+2, users keyed by `x-user-id`.
bench_config() {
    local port=$1 admin=$2 store=$3 base=$4
    cat <<EOF
[listen]
addr = "127.0.0.1:$port"
[admin]
addr = "127.0.0.1:$admin"
[store]
path = "$store"
[envs.old]
upstreams = ["127.0.0.1:$base"]
[envs.new]
upstreams = ["127.0.0.1:$((base + 1))"]
[envs.fallback]
upstreams = ["127.0.0.1:$((base + 2))"]
[routing]
user_key = ["header:x-user-id", "cookie:uid", "client_ip"]
EOF
}

# The wrk script of the data-path benches on stdout.
users_lua() {
    cat <<'EOF'
-- A different x-user-id on every request, cycling through 100000 users.
local n = 0
request = function()
  n = n + 1
  wrk.headers["x-user-id"] = "user-" .. (n % 100000)
  return wrk.format(nil, "/api/items?page=1")
end
EOF
}

# Set cutover's weight to 50 % through the control API on admin port $1 (needs CUTOVER_TOKEN).
set_weight_50() {
    curl -fsS -X POST -H "Authorization: Bearer $CUTOVER_TOKEN" -H 'content-type: application/json' \
        -d '{"weight": 50}' "http://127.0.0.1:$1/v1/weight" >/dev/null
}
