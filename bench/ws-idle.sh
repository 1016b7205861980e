#!/usr/bin/env bash
# Memory of idle WebSockets (issue 18): N WebSockets opened through cutover and through NGINX
# (proxying the upgrade) in the same run, to the same WebSocket echo env, all on loopback; the
# proxy's resident memory (VmRSS of /proc/PID/status; NGINX: master and workers summed) before
# and after, and the growth per 1,000. Writes bench/results/ws-idle.txt and the section
# "## Idle WebSockets" of docs/benchmarks.md.
#
#   bench/ws-idle.sh                  # N=10000, ROUNDS=3
#   N=2000 ROUNDS=1 bench/ws-idle.sh
#   CUTOVER_BIN=/path/to/other/cutover NAME=ws-idle-before bench/ws-idle.sh   # another build
#
# The env is examples/upstream.rs (OLD answers `/ws` with a WebSocket that says hello and
# echoes); the client is examples/ws_idle.rs (hand-made handshakes, then silence). Each
# WebSocket costs the proxy two sockets and the env and the client one each, so the script
# raises its open-file limit (hard and soft) to what 2N needs; where the hard limit cannot be
# raised (no privilege), N is lowered to fit it, and the results say so.
set -euo pipefail

source "$(dirname "$0")/lib.sh"

N=${N:-10000}
ROUNDS=${ROUNDS:-3}
SETTLE=${SETTLE:-3}                   # seconds after the last handshake before reading VmRSS
TARGETS=${TARGETS:-cutover nginx}
BASE=${BASE:-19301}                   # envs: old BASE, new BASE+1, fallback BASE+2
P_CUTOVER=19380 P_ADMIN=19390 P_NGINX=19381
OPEN_TIMEOUT=${OPEN_TIMEOUT:-300}
NAME=${NAME:-ws-idle}                 # results file bench/results/NAME.txt; docs only for ws-idle
RESULTS="$BENCH_DIR/results"
WORK=$(mktemp -d /tmp/cutover-ws-idle.XXXXXX)
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Per process: the proxy holds two sockets per WebSocket, the env and the client one each.
want_files=$((2 * N + 1024))
LOWERED=""
if (($(ulimit -Hn) < want_files)); then
    ulimit -Hn "$want_files" 2>/dev/null || true
fi
ulimit -Sn "$(ulimit -Hn)"
if (($(ulimit -Sn) < want_files)); then
    # Without the privilege to raise the hard limit: as many as it allows.
    LOWERED=" (N lowered from $N to fit the hard open-file limit of $(ulimit -Hn))"
    N=$((($(ulimit -Sn) - 1024) / 2))
    want_files=$((2 * N + 1024))
    log "the hard open-file limit $(ulimit -Hn) cannot be raised: N lowered to $N"
fi
log "open-file limit: $(ulimit -Sn)"

ensure_tools nginx:nginx-light curl:curl
log "building release binaries"
build_release "$WORK/bin" --example upstream --example ws_idle
if [[ -n ${CUTOVER_BIN:-} ]]; then
    # Another build of cutover against the same env and client (a before/after comparison).
    cp "$CUTOVER_BIN" "$WORK/bin/cutover"
    log "cutover under test: $CUTOVER_BIN"
fi
mkdir -p "$RESULTS"

"$WORK/bin/upstream" "$BASE" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
wait_port "$BASE"

export CUTOVER_TOKEN=bench-token
# The env accepts ten thousand handshakes slower than the proxies connect: cutover's default
# connect_timeout (1 s) would answer some with 504, NGINX waits 60 s. Both get 10 s here.
{
    bench_config $P_CUTOVER $P_ADMIN store "$BASE" |
        sed 's/^upstreams = .*/&\nconnect_timeout = "10s"/'
    printf '[limits]\nmax_connections = %d\n' $((N + 1000))
} >"$WORK/cutover.toml"
start_cutover() {
    (cd "$WORK" && CUTOVER_LOG=info exec "$WORK/bin/cutover" serve --config "$WORK/cutover.toml" \
        >>"$WORK/cutover.out" 2>>"$WORK/cutover.err") &
    CUTOVER_PID=$!
    PIDS+=($CUTOVER_PID)
    wait_port $P_ADMIN; wait_port $P_CUTOVER
}

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
worker_rlimit_nofile $want_files;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections $((2 * N + 1024)); }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        location / {
            proxy_pass http://127.0.0.1:$BASE;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header X-Forwarded-For \$remote_addr;
            # Idle WebSockets stay open for the measurement (the default closes them at 60 s).
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_connect_timeout 10s;
        }
    }
}
EOF
start_nginx() {
    nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
    NGINX_PID=$!
    PIDS+=($NGINX_PID)
    wait_port $P_NGINX
}

port_of() { case $1 in cutover) echo $P_CUTOVER ;; nginx) echo $P_NGINX ;; esac; }
pids_of() {
    case $1 in
        cutover) echo "$CUTOVER_PID" ;;
        nginx) echo "$NGINX_PID" $(pgrep -P "$NGINX_PID" || true) ;;
    esac
}
# Resident memory in KiB of the given processes together.
rss_kib() {
    local total=0 p
    for p in "$@"; do
        total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")))
    done
    echo $total
}
stop_target() {
    local pid
    case $1 in cutover) pid=$CUTOVER_PID ;; nginx) pid=$NGINX_PID ;; esac
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

STAMP=$(date -u +%Y-%m-%dT%H:%MZ)
: >"$WORK/rows"
for round in $(seq 1 "$ROUNDS"); do
    for t in $TARGETS; do
        # A fresh process each round: growth from a process that has not held N WebSockets yet.
        case $t in cutover) start_cutover ;; nginx) start_nginx ;; esac
        port=$(port_of "$t")
        # A few ordinary requests first, so the baseline has the data path's first allocations.
        for i in 1 2 3 4 5; do curl -fsS -o /dev/null -H "x-user-id: warm-$i" "http://127.0.0.1:$port/warm"; done
        sleep 1
        read -r -a pids <<<"$(pids_of "$t")"
        before=$(rss_kib "${pids[@]}")
        mkfifo "$WORK/hold"
        "$WORK/bin/ws_idle" "127.0.0.1:$port" "$N" /ws <"$WORK/hold" >"$WORK/client.out" 2>&1 &
        client=$!
        exec 7>"$WORK/hold"
        started=$(date +%s)
        until grep -q -E '^(open|failed)' "$WORK/client.out"; do
            if (($(date +%s) - started > OPEN_TIMEOUT)) || ! kill -0 $client 2>/dev/null; then break; fi
            sleep 0.2
        done
        opened=$(awk '$1 == "open" {print $2}' "$WORK/client.out")
        if [[ -z $opened ]]; then
            log "$t: the client did not open $N WebSockets: $(head -c 300 "$WORK/client.out")"
            exec 7>&-; rm -f "$WORK/hold"; wait $client 2>/dev/null || true
            stop_target "$t"
            exit 1
        fi
        took=$(($(date +%s) - started))
        sleep "$SETTLE"
        read -r -a pids <<<"$(pids_of "$t")"
        held=$(rss_kib "${pids[@]}")
        exec 7>&-
        wait $client 2>/dev/null || true
        rm -f "$WORK/hold"
        sleep "$SETTLE"
        after=$(rss_kib "${pids[@]}")
        per=$(awk -v a="$held" -v b="$before" -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n * 1000 / 1024 }')
        log "$t round $round: $opened WebSockets in ${took}s; VmRSS $before KiB before, $held held, $after after closing: $per MiB per 1,000"
        echo "$t $round $N $before $held $after $per $took" >>"$WORK/rows"
        stop_target "$t"
    done
done
grep -v ' INFO ' "$WORK/cutover.err" | head -20 >&2 || true

median_of() {
    awk -v t="$1" -v f="$2" '$1 == t {a[++n] = $f}
        END { for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
              if (n) printf "%s", (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) }' "$WORK/rows"
}
section="$WORK/section.md"
{
    echo "Measured $STAMP by \`bench/ws-idle.sh\`: $N idle WebSockets held through each proxy$LOWERED,"
    echo "$ROUNDS rounds (a fresh proxy process each round, targets interleaved), to the same env (examples/upstream.rs:"
    echo "a \"hello\" message on open, then nothing). Resident memory (VmRSS, KiB) of the proxy's"
    echo "processes (NGINX: master and workers summed) after five plain requests, with the $N open"
    echo "($SETTLE s after the last handshake) and $SETTLE s after the client closed them all."
    echo
    echo "| proxy | round | VmRSS before | held | after closing | MiB per 1,000 WebSockets | opened in |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    awk '{ printf "| %s | %s | %s | %s | %s | %s | %s s |\n", $1, $2, $4, $5, $6, $7, $8 }' "$WORK/rows"
    echo
    echo "| proxy | median MiB per 1,000 WebSockets |"
    echo "| --- | ---: |"
    for t in $TARGETS; do echo "| $t | $(median_of "$t" 7) |"; done
    echo
    echo "cutover: \`cutover serve\` with \`max_connections = $((N + 1000))\`, $(nproc) workers, weight 0 (every"
    echo "WebSocket to OLD), \`connect_timeout = \"10s\"\`. NGINX $(nginx -v 2>&1 | sed 's|.*/||'): \`worker_processes auto\`, \`proxy_pass\` with"
    echo "\`Upgrade\`/\`Connection: upgrade\` passed on, \`proxy_read_timeout 3600s\`, \`proxy_connect_timeout 10s\`, defaults otherwise"
    echo "(\`proxy_buffer_size\` one page)."
    echo
    machine_facts
} >"$section"
{
    cat "$section"
    echo
    echo "Rows (target round N before_kib held_kib after_kib mib_per_1000 seconds_to_open):"
    cat "$WORK/rows"
} >"$RESULTS/$NAME.txt"
log "results in $RESULTS/$NAME.txt"
cat "$section"
if [[ $NAME == ws-idle ]]; then
    splice_generated "Idle WebSockets" "ws-idle" "$section"
    log "docs/benchmarks.md updated"
fi
