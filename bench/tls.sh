#!/usr/bin/env bash
# TLS termination benchmark (issue 20): cutover, NGINX and HAProxy each terminating HTTPS with
# the same certificate (an ECDSA P-256 leaf from a throw-away CA) in front of the same plain
# upstream, on loopback with the same wrk settings. Two measures:
#
#   keepalive  requests per second over kept-alive TLS connections (one handshake per
#              connection, then requests);
#   handshake  new connections per second, each a full TLS handshake and one request
#              (`Connection: close`; wrk does not resume sessions, and the servers are set not
#              to offer resumption where they can be — checked below through NGINX's log).
#
# Writes bench/results/tls-*.txt (raw wrk outputs) and the section "## TLS termination" of
# docs/benchmarks.md.
#
#   bench/tls.sh                          # defaults below
#   DURATION=20s CONNS=64 ROUNDS=5 bench/tls.sh
set -euo pipefail

source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
MAX_BUSY=${MAX_BUSY:-0.25}
TARGETS=${TARGETS:-cutover nginx haproxy}
MODES=${MODES:-keepalive handshake}
BASE=${BASE:-19201}                   # upstreams: old BASE, new BASE+1, fallback BASE+2
P_CUTOVER=19280 P_ADMIN=19290 P_NGINX=19281 P_HAPROXY=19282
RESULTS="$BENCH_DIR/results"
WORK=$(mktemp -d /tmp/cutover-tls-bench.XXXXXX)
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

ensure_tools wrk:wrk nginx:nginx-light haproxy:haproxy curl:curl openssl:openssl
log "building release binaries"
build_release "$WORK/bin" --example bench_upstream
mkdir -p "$RESULTS"

# ------------------------------------------------------------------ the one certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/ca.key" \
    -out "$WORK/ca.pem" -days 2 -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/leaf.key" \
    -out "$WORK/leaf.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -out "$WORK/leaf.pem" -days 2 -extfile "$WORK/leaf.ext" 2>/dev/null
cat "$WORK/leaf.pem" "$WORK/leaf.key" >"$WORK/leaf-and-key.pem" # HAProxy wants one file

# ------------------------------------------------------------------ upstream and proxies
"$WORK/bin/bench_upstream" "$BASE" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
UPSTREAM_PID=$!
wait_port "$BASE"

export CUTOVER_TOKEN=bench-token
{
    bench_config $P_CUTOVER $P_ADMIN store "$BASE" |
        sed "/^addr = \"127.0.0.1:$P_CUTOVER\"/a tls_cert = \"$WORK/leaf.pem\"\ntls_key = \"$WORK/leaf.key\""
} >"$WORK/cutover.toml"
CUTOVER_LOG=${CUTOVER_LOG:-info} "$WORK/bin/cutover" serve --config "$WORK/cutover.toml" \
    >"$WORK/cutover.out" 2>"$WORK/cutover.err" &
PIDS+=($!)
CUTOVER_PID=$!
wait_port $P_ADMIN; wait_port $P_CUTOVER

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    log_format reuse "\$ssl_protocol \$ssl_session_reused";
    access_log $WORK/nginx/reuse.log reuse if=\$http_x_log_reuse;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream old { server 127.0.0.1:$BASE; keepalive 256; }
    server {
        listen 127.0.0.1:$P_NGINX ssl http2 backlog=4096;
        ssl_certificate $WORK/leaf.pem;
        ssl_certificate_key $WORK/leaf.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {
            proxy_pass http://old;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)
NGINX_PID=$!
wait_port $P_NGINX

cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 8000
    nbthread $(nproc)
    tune.ssl.cachesize 0
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    option forwardfor
    http-reuse always
frontend fe
    bind 127.0.0.1:$P_HAPROXY ssl crt $WORK/leaf-and-key.pem alpn h2,http/1.1
    http-request set-header X-Forwarded-Proto https
    default_backend be
backend be
    server old 127.0.0.1:$BASE
EOF
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=$!
wait_port $P_HAPROXY

port_of() {
    case $1 in
        cutover) echo $P_CUTOVER ;;
        nginx) echo $P_NGINX ;;
        haproxy) echo $P_HAPROXY ;;
    esac
}
pids_of() {
    case $1 in
        cutover) echo "$CUTOVER_PID" ;;
        nginx) echo "$NGINX_PID" $(pgrep -P "$NGINX_PID" || true) ;;
        haproxy) echo "$HAPROXY_PID" ;;
    esac
}

# Every target answers over HTTPS with the one certificate, trusted through the test CA.
for t in $TARGETS; do
    code=$(curl -sS -o /dev/null -w '%{http_code} %{http_version}' --cacert "$WORK/ca.pem" \
        "https://localhost:$(port_of "$t")/")
    log "$t over HTTPS: $code"
done

# Does wrk resume TLS sessions? NGINX (resumption off) logs whether each was reused; with
# `Connection: close` every request is a new connection.
wrk -t1 -c4 -d1s -H 'Connection: close' -H 'x-log-reuse: 1' "https://127.0.0.1:$P_NGINX/" >/dev/null
REUSE=$(sort "$WORK/nginx/reuse.log" | uniq -c | tr '\n' ' ')
log "NGINX saw (protocol, session reused): $REUSE"

HZ=$(getconf CLK_TCK)
STAMP=$(date -u +%Y-%m-%dT%H:%MZ)
: >"$WORK/rows"
for round in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
        for t in $TARGETS; do
            busy=$(wait_idle "$MAX_BUSY")
            url="https://127.0.0.1:$(port_of "$t")/"
            extra=()
            [[ $mode == handshake ]] && extra=(-H 'Connection: close')
            wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "${extra[@]}" "$url" >/dev/null
            read -r -a pids <<<"$(pids_of "$t")"
            c0=$(cpu_ticks "${pids[@]}")
            out="$RESULTS/tls-$mode-$t-$round.txt"
            wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${extra[@]}" "$url" >"$out"
            c1=$(cpu_ticks "${pids[@]}")
            reqs=$(awk '/requests in/ {print $1}' "$out")
            rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
            p99=$(awk '$1 == "99%" {print $2}' "$out")
            errs=$(awk '/Socket errors/ { s = 0; for (i = 3; i <= NF; i++) s += $i; print s }' "$out")
            non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
            cpu_us=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
            echo "others' cpu share before run: $busy; cpu ticks of $t: $((c1 - c0)) at $HZ Hz" >>"$out"
            echo "$mode $t $round $rps $p99 $cpu_us ${non2xx:-0}/${errs:-0}" >>"$WORK/rows"
            log "$mode $t round $round: $rps rps, p99 $p99, cpu $cpu_us us/req, non-2xx/socket errors ${non2xx:-0}/${errs:-0}, others' cpu before $busy"
        done
    done
done
cp "$WORK/rows" "$RESULTS/tls-rows.txt"
grep -v ' INFO ' "$WORK/cutover.err" | head -20 >&2 || true

# ------------------------------------------------------------------------------- report
# The median over the rounds of rps and CPU per request, per mode and target.
median_of() {
    local mode=$1 t=$2 col=$3
    awk -v m="$mode" -v t="$t" -v c="$col" '$1 == m && $2 == t { print $c }' "$WORK/rows" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
section="$WORK/section.md"
{
    echo "Measured $STAMP by \`bench/tls.sh\`."
    echo
    echo "- Each proxy terminates HTTPS with the same ECDSA P-256 certificate and forwards plain"
    echo "  HTTP/1.1 to one upstream (examples/bench_upstream.rs, a fixed answer) over kept-alive"
    echo "  connections. wrk \`-t$THREADS -c$CONNS -d$DURATION\` after a $WARMUP warm-up, $ROUNDS rounds, targets"
    echo "  interleaved; a cell is the median over the rounds."
    echo "- **keepalive**: requests per second over kept-alive TLS connections (HTTP/1.1; wrk offers"
    echo "  no ALPN). **handshake**: \`Connection: close\` on every request, so each is a new TCP"
    echo "  connection and a full TLS handshake: new handshakes per second. NGINX's log during a"
    echo "  probe run said (protocol, session reused): \`$REUSE\` — wrk does not resume sessions;"
    echo "  NGINX and HAProxy had session caches and tickets off, cutover (rustls) offers TLS 1.3"
    echo "  tickets, which wrk does not use."
    echo "- cutover: \`cutover serve\` with \`[listen] tls_cert\`/\`tls_key\` (rustls, ring), $(nproc) workers."
    echo "  NGINX $(nginx -v 2>&1 | sed 's|.*/||'): \`worker_processes auto\`, OpenSSL. HAProxy $(haproxy -v | awk 'NR == 1 {print $3}'): \`nbthread $(nproc)\`."
    echo "  Everything on one machine with wrk and the upstream: CPU µs per request (the proxy's own"
    echo "  processes) is the fairer efficiency measure."
    echo
    echo "| mode | target | rps | CPU µs/req | rps / NGINX | rps / HAProxy |"
    echo "| --- | --- | ---: | ---: | ---: | ---: |"
    for mode in $MODES; do
        n=$(median_of "$mode" nginx 4)
        h=$(median_of "$mode" haproxy 4)
        for t in $TARGETS; do
            r=$(median_of "$mode" "$t" 4)
            c=$(median_of "$mode" "$t" 6)
            awk -v m="$mode" -v t="$t" -v r="$r" -v c="$c" -v n="$n" -v h="$h" 'BEGIN {
                printf "| %s | %s | %.0f | %.0f | %s | %s |\n", m, t, r, c,
                    (n > 0 ? sprintf("%.2f×", r / n) : "-"), (h > 0 ? sprintf("%.2f×", r / h) : "-") }'
        done
    done
    echo
    echo "Rounds (mode, target, round, rps, p99, CPU µs/req, non-2xx/socket errors):"
    echo
    echo '```'
    cat "$WORK/rows"
    echo '```'
    echo
    echo "Machine:"
    echo
    machine_facts
    echo "- wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}'), $(nginx -v 2>&1 | sed 's/.*: //'), HAProxy $(haproxy -v | awk 'NR == 1 {print $3}'), $(openssl version)"
    echo "- Raw wrk outputs: \`bench/results/tls-<mode>-<target>-<round>.txt\`."
} >"$section"
cp "$section" "$RESULTS/tls.md"
log "results in $RESULTS/tls.md"
cat "$section"
splice_generated "TLS termination" "tls" "$section"
log "docs/benchmarks.md updated"
