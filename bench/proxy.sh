#!/usr/bin/env bash
# Data-path benchmark (issue 2): cutover against NGINX and HAProxy doing the same sticky 50/50
# split by `x-user-id`, and against the upstream directly, all on loopback with the same wrk
# settings. Writes bench/results/proxy-*.txt (raw wrk outputs) and the section "## Data path"
# of docs/benchmarks.md.
#
#   bench/proxy.sh                       # defaults below
#   DURATION=30s CONNS=128 ROUNDS=5 UPSTREAM=sim bench/proxy.sh
#
# UPSTREAM=static (default) uses examples/bench_upstream.rs (a fixed answer);
# UPSTREAM=sim uses the simulated envs of examples/upstream.rs (JSON echo of every request).
set -euo pipefail

source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-5}
UPSTREAM=${UPSTREAM:-static}
MAX_BUSY=${MAX_BUSY:-0.25}          # wait until others use less than this share of the cores
TARGETS=${TARGETS:-direct cutover bare hybrid raw nginx haproxy}
BASE=${BASE:-19101}                   # upstreams: old BASE, new BASE+1, fallback BASE+2
P_CUTOVER=19180 P_ADMIN=19190 P_NGINX=19181 P_HAPROXY=19182 P_BARE=19183 P_RAW=19184 P_HYBRID=19185
RESULTS="$BENCH_DIR/results"
WORK=$(mktemp -d /tmp/cutover-bench.XXXXXX)
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

ensure_tools wrk:wrk nginx:nginx-light haproxy:haproxy curl:curl jq:jq
log "building release binaries"
case $UPSTREAM in
    static) UPSTREAM_BIN=bench_upstream ;;
    sim) UPSTREAM_BIN=upstream ;;
    *) log "UPSTREAM must be static or sim"; exit 2 ;;
esac
build_release "$WORK/bin" --example "$UPSTREAM_BIN" --example bare_proxy --example raw_proxy
mkdir -p "$RESULTS"

# ---------------------------------------------------------------- upstreams and proxies
"$WORK/bin/$UPSTREAM_BIN" "$BASE" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
UPSTREAM_PID=$!
wait_port "$BASE"; wait_port $((BASE + 1)); wait_port $((BASE + 2))

export CUTOVER_TOKEN=bench-token
bench_config $P_CUTOVER $P_ADMIN store "$BASE" >"$WORK/cutover.toml"
CUTOVER_LOG=${CUTOVER_LOG:-info} "$WORK/bin/cutover" serve --config "$WORK/cutover.toml" \
    >"$WORK/cutover.out" 2>"$WORK/cutover.err" &
PIDS+=($!)
CUTOVER_PID=$!
wait_port $P_ADMIN; wait_port $P_CUTOVER
set_weight_50 $P_ADMIN
weight=$(curl -fsS -H "Authorization: Bearer $CUTOVER_TOKEN" "http://127.0.0.1:$P_ADMIN/v1/status" | jq .weight)
log "cutover weight: $weight"

# The same hyper stack with no cutover logic (examples/bare_proxy.rs): the floor of the stack.
"$WORK/bin/bare_proxy" "127.0.0.1:$P_BARE" "127.0.0.1:$BASE" "127.0.0.1:$((BASE + 1))" \
    >"$WORK/bare.log" 2>&1 &
PIDS+=($!)
BARE_PID=$!
wait_port $P_BARE

# Yardsticks (examples/raw_proxy.rs): HTTP/1.1 written by hand on both sides (`raw`), and
# hyper's server in front of the hand-written upstream side (`hybrid`).
"$WORK/bin/raw_proxy" "127.0.0.1:$P_RAW" "127.0.0.1:$BASE" "127.0.0.1:$((BASE + 1))" \
    >"$WORK/raw.log" 2>&1 &
PIDS+=($!)
RAW_PID=$!
"$WORK/bin/raw_proxy" "127.0.0.1:$P_HYBRID" "127.0.0.1:$BASE" "127.0.0.1:$((BASE + 1))" \
    --hyper-server >"$WORK/hybrid.log" 2>&1 &
PIDS+=($!)
HYBRID_PID=$!
wait_port $P_RAW; wait_port $P_HYBRID

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    # Sticky weighted split on the user key, like cutover's bucket < weight.
    split_clients "\${http_x_user_id}" \$backend { 50% new; * old; }
    upstream old { server 127.0.0.1:$BASE; keepalive 256; }
    upstream new { server 127.0.0.1:$((BASE + 1)); keepalive 256; }
    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        location / {
            proxy_pass http://\$backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$remote_addr;
            add_header x-served-by \$backend;
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
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    option forwardfor
    http-reuse always
frontend fe
    bind 127.0.0.1:$P_HAPROXY
    default_backend be
backend be
    # Sticky weighted split on the user key: consistent hash of x-user-id over equal weights.
    balance hdr(x-user-id)
    hash-type consistent
    http-response set-header x-served-by %s
    server old 127.0.0.1:$BASE weight 50
    server new 127.0.0.1:$((BASE + 1)) weight 50
EOF
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=$!
wait_port $P_HAPROXY

port_of() {
    case $1 in
        direct) echo "$BASE" ;;
        cutover) echo $P_CUTOVER ;;
        bare) echo $P_BARE ;;
        raw) echo $P_RAW ;;
        hybrid) echo $P_HYBRID ;;
        nginx) echo $P_NGINX ;;
        haproxy) echo $P_HAPROXY ;;
    esac
}
pids_of() {
    case $1 in
        direct) echo "$UPSTREAM_PID" ;;
        cutover) echo "$CUTOVER_PID" ;;
        bare) echo "$BARE_PID" ;;
        raw) echo "$RAW_PID" ;;
        hybrid) echo "$HYBRID_PID" ;;
        nginx) echo "$NGINX_PID" $(pgrep -P "$NGINX_PID" || true) ;;
        haproxy) echo "$HAPROXY_PID" ;;
    esac
}

# Which env 200 users land on through each proxy (the split really is 50/50 and sticky).
split_check() {
    local port=$1 i
    for i in $(seq 1 200); do
        curl -fsS -H "x-user-id: user-$i" "http://127.0.0.1:$port/split" | jq -r .env
    done | sort | uniq -c | tr '\n' ' '
}
SPLITS=""
for t in cutover bare hybrid raw nginx haproxy; do
    s=$(split_check "$(port_of $t)")
    log "split via $t: $s"
    SPLITS+="| $t | $s |"$'\n'
done

users_lua >"$WORK/users.lua"

# ------------------------------------------------------------------------------- runs
to_ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.3f", v }' <<<"$1"; }
HZ=$(getconf CLK_TCK)
TIMEFORMAT='%U %S'
# Busy clock ticks of all cores together, from /proc/stat.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
HAVE_PERF=0
# `perf stat` exits 0 also where the machine has no hardware counters ("<not supported>").
if perf stat -x, -e instructions:u true 2>&1 >/dev/null | grep -q '^[0-9]'; then HAVE_PERF=1; fi
STAMP=$(date -u +%Y-%m-%dT%H:%MZ)
: >"$WORK/rows"
for round in $(seq 1 "$ROUNDS"); do
    for t in $TARGETS; do
        busy=$(wait_idle "$MAX_BUSY")
        port=$(port_of "$t")
        url="http://127.0.0.1:$port/"
        wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$WORK/users.lua" "$url" >/dev/null
        load=$(cut -d' ' -f1 /proc/loadavg)
        read -r -a pids <<<"$(pids_of "$t")"
        c0=$(cpu_ticks "${pids[@]}")
        u0=$(user_ticks "${pids[@]}")
        up0=$(cpu_ticks "$UPSTREAM_PID")
        all0=$(busy_ticks)
        out="$RESULTS/proxy-$UPSTREAM-$t-$round.txt"
        run_wrk=(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$WORK/users.lua" "$url")
        if ((HAVE_PERF)); then
            # Instructions retired by the proxy's processes: unlike time, barely moved by
            # whatever else the machine is doing.
            { time perf stat -x, -e instructions:u,instructions:k -p "$(IFS=,; echo "${pids[*]}")" \
                -o "$WORK/perf.csv" -- "${run_wrk[@]}" >"$out"; } 2>"$WORK/time.txt"
        else
            { time "${run_wrk[@]}" >"$out"; } 2>"$WORK/time.txt"
        fi
        c1=$(cpu_ticks "${pids[@]}")
        u1=$(user_ticks "${pids[@]}")
        up1=$(cpu_ticks "$UPSTREAM_PID")
        all1=$(busy_ticks)
        # What everybody else used while the round ran: all busy time minus the proxy, the
        # upstream and wrk, as a share of all cores over the round.
        ours=$(((c1 - c0) + (up1 - up0)))
        [[ $t == direct ]] && ours=$((c1 - c0))
        others=$(awk -v all=$((all1 - all0)) -v ours="$ours" -v hz="$HZ" -v n="$(nproc)" \
            -v w="$(tail -1 "$WORK/time.txt")" -v d="${DURATION%s}" \
            'BEGIN { split(w, x, " "); o = (all - ours) / hz - x[1] - x[2]; if (o < 0) o = 0;
                     printf "%.2f", o / (d * n) }')
        reqs=$(awk '/requests in/ {print $1}' "$out")
        instr="-"
        if ((HAVE_PERF)); then
            instr=$(awk -F, -v n="$reqs" '$3 ~ /^instructions:u/ {u = $1} $3 ~ /^instructions:k/ {k = $1}
                END { printf "%.1fk+%.1fk", u / n / 1000, k / n / 1000 }' "$WORK/perf.csv")
        fi
        echo "others' cpu share before run: $busy, during: $others; load average: $load; cpu ticks of $t: $((c1 - c0)) at $HZ Hz; instructions per request (user+kernel): $instr" >>"$out"
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
        p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
        non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
        sockerr=$(awk '/Socket errors/ { s = 0; for (i = 3; i <= NF; i++) s += $i; print s }' "$out")
        bad="${non2xx:-0}/${sockerr:-0}"
        cpu_us=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
        user_us=$(awk -v t=$((u1 - u0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
        echo "$t $round $rps $p50 $p99 $cpu_us $others $instr $bad $user_us" >>"$WORK/rows"
        log "$t round $round: $rps rps, p50 $p50 ms, p99 $p99 ms, cpu $cpu_us us/req ($user_us user), instructions/req $instr, non-2xx/socket errors $bad, others' cpu before $busy, during $others"
    done
done
cp "$WORK/rows" "$RESULTS/proxy-$UPSTREAM-rows.txt"
grep -v ' INFO ' "$WORK/cutover.err" | head -20 >&2 || true

# ------------------------------------------------------------------------------- report
# Per target: the median of each measure over the rounds (each taken on its own), the rps
# range, the instruction count of the median-rps round, the failures over all rounds and the
# most the others used in any round.
summary() {
    local t=$1
    awk -v t="$t" '$1 == t' "$WORK/rows" | awk -v t="$t" '
        function median(a, n,    i, j, v) {
            for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        { n++; rps[n] = $3; p50[n] = $4; p99[n] = $5; cpu[n] = $6; usr[n] = $10; r[n] = $3; instr[$3] = $8
          split($9, b, "/"); non2xx += b[1]; sockerr += b[2]; if ($7 > others) others = $7 }
        END {
            lo = hi = rps[1]; for (i = 2; i <= n; i++) { if (rps[i] < lo) lo = rps[i]; if (rps[i] > hi) hi = rps[i] }
            # the instruction count of the round whose rps is nearest the median
            m = median(r, n); best = ""; d = -1
            for (i = 1; i <= n; i++) { e = rps[i] - m; if (e < 0) e = -e; if (d < 0 || e < d) { d = e; best = instr[rps[i]] } }
            printf "%s %d %.0f %.3f %.3f %.0f %.2f %s %d/%d %.0f %.0f %.1f\n", t, n, median(rps, n), median(p50, n),
                median(p99, n), median(cpu, n), others, best, non2xx, sockerr, lo, hi, median(usr, n)
        }'
}
# cutover against another target round by round: rps ratio and p99 ratio per round, and how
# many rounds cutover had at least the other's rps and at most its p99.
versus() {
    local other=$1
    awk -v o="$other" -v rounds="$ROUNDS" '$1 == "cutover" { c[$2] = $3; cp[$2] = $5 } $1 == o { x[$2] = $3; xp[$2] = $5 }
        END {
            for (r = 1; r <= rounds; r++) if ((r in c) && (r in x) && x[r] > 0 && xp[r] > 0) { n++; rr = c[r] / x[r]; pr = cp[r] / xp[r]
                line = line sprintf(" %.2f×/%.2f×", rr, pr); if (rr >= 1) win++; if (pr <= 1) tail++ }
            printf "%d %d %d%s\n", n, win + 0, tail + 0, line
        }' "$WORK/rows"
}
direct_rps=$(summary direct | awk '{print $3}')
direct_p99=$(summary direct | awk '{print $5}')
section="$WORK/section.md"
{
    echo "Measured $STAMP by \`bench/proxy.sh\` (upstream: \`$UPSTREAM\`)."
    echo
    echo "- wrk \`-t$THREADS -c$CONNS -d$DURATION --latency\` after a $WARMUP warm-up; every request carries its own"
    echo "  \`x-user-id\` (cycling through 100000 users; the Lua script is in \`bench/proxy.sh\`)."
    echo "  $ROUNDS rounds, targets interleaved; a row shows the median over the rounds of each measure"
    echo "  (rps, p50, p99 and the CPU time, user + system, the proxy used per request), each taken on"
    echo "  its own, and the rps range. The machine's speed drifts between rounds (other tenants), so"
    echo "  the round-by-round comparison below the table is the one to read."
    echo "- Everything on one machine: wrk, the proxy under test and the upstreams share its cores, so"
    echo "  a proxy that needs less CPU per request leaves more to wrk and the upstream. The CPU column"
    echo "  is the fairer efficiency measure; rps is what the issue asks for. Its user part is the"
    echo "  proxy's own code; the rest is the kernel's socket and scheduling work for it."
    echo "- Same split everywhere: 50% of users to NEW by a sticky hash of \`x-user-id\`, keep-alive"
    echo "  connections to the upstreams, \`X-Forwarded-For\` set and a served-by response header added."
    echo "  cutover: \`cutover serve\`, weight 50 set through \`POST /v1/weight\`, log level"
    echo "  \`${CUTOVER_LOG:-info}\`, one single-threaded data-plane runtime per core ($(nproc) workers). NGINX $(nginx -v 2>&1 | sed 's|.*/||'):"
    echo "  \`split_clients\` on \`\$http_x_user_id\`, \`keepalive 256\` pools, \`worker_processes auto\`,"
    echo "  no access log. HAProxy $(haproxy -v | awk 'NR == 1 {print $3}'): \`balance hdr(x-user-id)\` + \`hash-type consistent\`,"
    echo "  equal weights, \`http-reuse always\`, \`nbthread $(nproc)\`, no log. \`bare\`: examples/bare_proxy.rs,"
    echo "  the same hyper server, per-core runtimes and per-thread HTTP/1 pools as cutover, with nothing"
    echo "  else (hash split only: no header rules, metrics, fallback or timeouts), same allocator (mimalloc)."
    echo "  \`raw\` and \`hybrid\`: examples/raw_proxy.rs, yardsticks that handle only what this benchmark"
    echo "  sends: \`raw\` is HTTP/1.1 written by hand on both sides (heads parsed with httparse and"
    echo "  forwarded as bytes, \`X-Forwarded-For\` added, no served-by header); \`hybrid\` is hyper's server"
    echo "  in front of that hand-written upstream side."
    echo
    echo "| target | rps | rps range | p50 ms | p99 ms | rps / direct | p99 / direct | CPU µs/req | of which user | instructions/req (user+kernel) | non-2xx / socket errors | others' CPU during |"
    echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"
    for t in $TARGETS; do
        summary "$t" | awk -v dr="$direct_rps" -v dp="$direct_p99" '{
            printf "| %s | %.0f | %.0f–%.0f | %.2f | %.2f | %.2f | %.2f | %s | %.1f | %s | %s | %.0f%% |\n",
                $1, $3, $10, $11, $4, $5, $3 / dr, $5 / dp, $6, $12, $8, $9, $7 * 100 }'
    done
    echo
    if [[ " $TARGETS " == *" cutover "* ]]; then
        echo "cutover against the others, round by round (cutover's rps / theirs and cutover's p99 / theirs"
        echo "in each round; above 1× rps and at most 1× p99 is cutover ahead):"
        echo
        echo "| against | rounds with cutover's rps ≥ theirs | rounds with cutover's p99 ≤ theirs | median rps ratio | median p99 ratio | per round (rps/p99) |"
        echo "| --- | ---: | ---: | ---: | ---: | --- |"
        for t in $TARGETS; do
            [[ $t == cutover || $t == direct ]] && continue
            versus "$t" | awk -v t="$t" '
                function median(a, n,    i, j, v) {
                    for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
                    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
                }
                { for (i = 4; i <= NF; i++) { split($i, v, "/"); sub(/×/, "", v[1]); sub(/×/, "", v[2]); rr[i - 3] = v[1]; pr[i - 3] = v[2] }
                  k = NF - 3; line = ""; for (i = 4; i <= NF; i++) line = line " " $i
                  if (k == 0) { printf "| %s | 0 of 0 | 0 of 0 | - | - | - |\n", t; next }
                  printf "| %s | %d of %d | %d of %d | %.2f× | %.2f× |%s |\n", t, $2, $1, $3, $1, median(rr, k), median(pr, k), line }'
        done
        echo
    fi
    echo "CPU and instructions are those of the proxy's processes (for \`direct\`: the upstream's);"
    echo "\"Others' CPU\" is the share of both cores that other processes (parallel builds) used during"
    echo "that round: rounds with a high share are slowed by them, which is why the instruction counts"
    echo "(barely moved by other load) are the steadier measure of what each proxy costs."
    echo "Split check (200 users, one request each, body names the env):"
    echo
    echo "| proxy | users per env |"
    echo "| --- | --- |"
    printf '%s' "$SPLITS"
    echo
    echo "Machine:"
    echo
    machine_facts
    echo "- wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}'), $(nginx -v 2>&1 | sed 's/.*: //'), HAProxy $(haproxy -v | awk 'NR == 1 {print $3}')"
    echo "- Raw wrk outputs: \`bench/results/proxy-$UPSTREAM-<target>-<round>.txt\`."
} >"$section"
cp "$section" "$RESULTS/proxy-$UPSTREAM.md"
log "results in $RESULTS/proxy-$UPSTREAM.md"
cat "$section"
splice_generated "Data path" "proxy-$UPSTREAM" "$section"
log "docs/benchmarks.md updated"
