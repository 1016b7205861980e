#!/usr/bin/env bash
# Fleet benchmark (issue 21): one etcd member and three `cutover serve` instances on loopback.
#  1. Propagation: a weight committed through instance a (POST /v1/weight), timed until b and c
#     answer it in /v1/status (polled every 2 ms): p50/p99 over ROUNDS changes.
#  2. Decision rate: DECISIONS weight changes sent one after another through a, then the same
#     from three clients at once, one per instance (a conflicting commit is decided again by the
#     instance, three attempts in all; what still conflicts is answered 409 and counted).
#  3. etcd's writes per second in steady state (its revision over IDLE seconds, no run).
# Prints the results; docs/benchmarks.md ("Fleet") keeps them.
#
#   CUTOVER_BIN=target/release/cutover bench/fleet.sh      # a binary built with --features etcd
set -euo pipefail
BIN=${CUTOVER_BIN:-target/release/cutover}
ROUNDS=${ROUNDS:-200}
DECISIONS=${DECISIONS:-300}
IDLE=${IDLE:-20}
WORK=$(mktemp -d /tmp/cutover-fleet-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

etcd --name b --data-dir "$WORK/etcd" --listen-client-urls http://127.0.0.1:23971 \
  --advertise-client-urls http://127.0.0.1:23971 --listen-peer-urls http://127.0.0.1:23981 \
  --initial-advertise-peer-urls http://127.0.0.1:23981 --initial-cluster b=http://127.0.0.1:23981 \
  >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:23971/health >/dev/null && break; sleep 0.1; done
echo "bench-token-0123456789" >"$WORK/token"
for i in 1 2 3; do
  name=$(printf "\\x$(printf %x $((96 + i)))")
  cat >"$WORK/c$i.toml" <<CFG
[listen]
addr = "127.0.0.1:1918$i"
[admin]
addr = "127.0.0.1:1919$i"
token_file = "$WORK/token"
[store]
path = "$WORK/local$i"
backend = "etcd"
endpoints = ["http://127.0.0.1:23971"]
prefix = "/cutover/bench"
instance = "$name"
[envs.old]
upstreams = ["127.0.0.1:1"]
[envs.new]
upstreams = ["127.0.0.1:2"]
[envs.fallback]
upstreams = ["127.0.0.1:3"]
CFG
  "$BIN" serve --config "$WORK/c$i.toml" >"$WORK/s$i.log" 2>&1 &
  PIDS+=($!)
done
sleep 3
python3 - "$ROUNDS" "$DECISIONS" "$IDLE" <<'PY'
import json, sys, time, threading, urllib.request, statistics, subprocess
rounds, decisions, idle = map(int, sys.argv[1:4])
T = "bench-token-0123456789"
def call(port, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
        headers={"authorization": f"Bearer {T}", "content-type": "application/json"},
        method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, None
def weight(port, w):
    return call(port, "/v1/weight", json.dumps({"weight": w}).encode())[0]
def rev():
    out = subprocess.run(["curl", "-s", "-X", "POST", "http://127.0.0.1:23971/v3/kv/range",
        "-d", json.dumps({"key": "AA=="})], capture_output=True, text=True).stdout
    return int(json.loads(out)["header"]["revision"])

r0 = rev(); time.sleep(idle); r1 = rev()
print(f"steady state: {(r1 - r0) / idle:.1f} etcd writes/s with 3 instances and no run")

lags = []
for k in range(rounds):
    w = 5 + (k * 7) % 90
    assert weight(19191, w) == 200
    t0 = time.perf_counter()
    pending = {19192, 19193}
    while pending:
        for p in list(pending):
            if call(p, "/v1/status")[1]["weight"] == w:
                lags.append((time.perf_counter() - t0) * 1000)
                pending.discard(p)
        time.sleep(0.002)
lags.sort()
q = lambda f: lags[min(len(lags) - 1, int(f * len(lags)))]
print(f"propagation over {len(lags)} answers: p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, max {lags[-1]:.1f} ms")

t0 = time.perf_counter()
for k in range(decisions):
    assert weight(19191, 5 + k % 90) == 200
dt = time.perf_counter() - t0
print(f"sequential: {decisions / dt:.0f} decisions/s through one instance")

codes = []
def client(port, n):
    for k in range(n):
        codes.append(weight(port, 5 + (k * 3 + port) % 90))
threads = [threading.Thread(target=client, args=(p, decisions // 3)) for p in (19191, 19192, 19193)]
t0 = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
dt = time.perf_counter() - t0
ok = codes.count(200)
print(f"concurrent, one client per instance: {ok / dt:.0f} decisions/s committed, "
      f"{codes.count(409)} of {len(codes)} answered 409 after three attempts")
PY
