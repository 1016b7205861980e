#!/usr/bin/env bash
# The hostile and odd shapes of tests/conformance, sent to cutover, NGINX and HAProxy in front
# of the same scripted upstream, so docs/reliability.md can set cutover's answers beside
# theirs. Loopback only; each exchange is bounded (2 s). Writes bench/results/shapes.txt.
#
#   bash bench/shapes.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_tools nginx:nginx-light haproxy:haproxy python3:python3
cargo build --release --quiet
WORK="$(mktemp -d)"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
BASE=${BASE:-19400}
UP=$BASE P_CUTOVER=$((BASE + 1)) P_NGINX=$((BASE + 2)) P_HAPROXY=$((BASE + 3))

: >"$WORK/up.log"
python3 "$BENCH_DIR/shapes/upstream.py" $UP "$WORK/up.log" &
PIDS+=($!)
wait_port $UP

cat >"$WORK/cutover.toml" <<TOML
[listen]
addr = "127.0.0.1:$P_CUTOVER"
[admin]
addr = "127.0.0.1:0"
[store]
path = "$WORK/store"
[envs.old]
upstreams = ["127.0.0.1:$UP"]
[envs.new]
upstreams = ["127.0.0.1:$UP"]
[envs.fallback]
upstreams = ["127.0.0.1:$((BASE + 9))"]   # nothing listens: no fallback
TOML
CUTOVER_LOG=warn "$CARGO_TARGET_DIR/release/cutover" serve --config "$WORK/cutover.toml" >"$WORK/cutover.log" 2>&1 &
PIDS+=($!)
sleep 0.5; kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/cutover.log"; exit 1; }
wait_port $P_CUTOVER

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream env { server 127.0.0.1:$UP; keepalive 16; }
    server {
        listen 127.0.0.1:$P_NGINX;
        location / {
            proxy_pass http://env;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
    }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)
wait_port $P_NGINX

cat >"$WORK/haproxy.cfg" <<CONF
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    option http-keep-alive
    option forwardfor
frontend fe
    bind 127.0.0.1:$P_HAPROXY
    default_backend be
backend be
    server env 127.0.0.1:$UP
CONF
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
wait_port $P_HAPROXY

out="$BENCH_DIR/results/shapes.txt"
{
    echo "# bench/shapes.sh, $(date -u +%Y-%m-%dT%H:%MZ): shape <TAB> answer(s) <TAB> what the upstream got"
    echo "# $(nginx -v 2>&1 | sed 's/.*: //'), HAProxy $(haproxy -v | awk 'NR == 1 {print $3}')"
    for t in cutover:$P_CUTOVER nginx:$P_NGINX haproxy:$P_HAPROXY; do
        echo "## ${t%%:*}"
        python3 "$BENCH_DIR/shapes/client.py" "${t#*:}" "$WORK/up.log"
    done
} | tee "$out"
log "written to $out"
