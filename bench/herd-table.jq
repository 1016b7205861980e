# The table of bench/herd.sh: its input is every run's `cutover demo --summary-json` (slurped,
# each with `run` and `others_cpu` added); one row per run, then the median of each mode.

def pct: (. * 1000 | round) / 10 | tostring + " %";
def ms: round | tostring;
def s1: (. * 10 | round) / 10 | tostring;
def median: sort | length as $n
    | if $n == 0 then null
      elif $n % 2 == 1 then .[($n - 1) / 2]
      else (.[$n / 2 - 1] + .[$n / 2]) / 2 end;
def mode: if .protection == "on" then "on" else "**off**" end;
def refused(e): e.rejected + e.pool_timeouts;
def first_stop: [.decisions[] | select(.action == "pause" or .action == "rollback")] | first;
def gate: [match("gate \"([^\"]+)\"").captures[0].string] | first // "no gate";
def stop_words:
    first_stop as $s
    | if $s == null then "none"
      else "\($s.action) +\($s.after_fault_s | s1) s (\($s.reason | gate))" end;

"| protection | run (seed) | users' errors | of which shed | waited p50 / p99 ms | OLD peak / limit | NEW peak / limit | FALLBACK peak / limit | refused + timed out by old / new / fallback | first stop after the herd | final state | others' CPU |",
"| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
(sort_by(.protection != "on", .run)[]
    | "| \(mode) | \(.run) (\(.seed)) | \(.user_error_rate | pct) (\(.user_failures)/\(.user_requests)) | \(.user_shed) | \(.user_p50_ms | ms) / \(.user_p99_ms | ms) | \(.envs.old.peak_inflight) / \(.envs.old.limit) | \(.envs.new.peak_inflight) / \(.envs.new.limit) | \(.envs.fallback.peak_inflight) / \(.envs.fallback.limit) | \(refused(.envs.old)) / \(refused(.envs.new)) / \(refused(.envs.fallback)) | \(stop_words) | \(.final_state) | \(.others_cpu * 100 | round) % |"),
(group_by(.protection)
    | sort_by(.[0].protection != "on")[]
    | . as $runs
    | ($runs | map(first_stop | select(. != null) | .after_fault_s)) as $stops
    | ($runs | map(.final_state) | group_by(.) | map("\(length)× \(.[0])") | join(", ")) as $states
    | "| \($runs[0] | mode), median of \($runs | length) | | \($runs | map(.user_error_rate) | median | pct) | \($runs | map(.user_shed) | median) | \($runs | map(.user_p50_ms) | median | ms) / \($runs | map(.user_p99_ms) | median | ms) | \($runs | map(.envs.old.peak_inflight) | median) / \($runs[0].envs.old.limit) | \($runs | map(.envs.new.peak_inflight) | median) / \($runs[0].envs.new.limit) | \($runs | map(.envs.fallback.peak_inflight) | median) / \($runs[0].envs.fallback.limit) | \($runs | map(refused(.envs.old)) | median) / \($runs | map(refused(.envs.new)) | median) / \($runs | map(refused(.envs.fallback)) | median) | \($stops | length) of \($runs | length) stopped\(if ($stops | length) > 0 then ", median +\($stops | median | s1) s" else "" end) | \($states) | |")
