#!/usr/bin/env bash
# Load benchmark: Postern against nginx, on this machine, in one run.
#
#   benches/load/run.sh [--duration 10s] [--rounds 5] [--connections 64]
#
# Cases (each measured with wrk, 1 thread, keep-alive, a small fixed response):
#   a. the upstream directly (nginx returning a fixed body)
#   b. nginx as a plain reverse proxy to it, with a keep-alive upstream pool (the reference ceiling)
#   c. Postern with a session cookie        (identity headers and signed assertion on)
#   d. Postern with a cached bearer token   (identity headers and signed assertion on)
#   e. Postern on a public route
#   f. Postern with a session cookie, its sessions in Redis (a local redis-server, nothing persisted)
# Every other case is measured right beside a run of (b) of its own — before it in odd rounds, after it in
# even ones — and its ratio to (b) is taken from that pair: on a shared machine whose speed drifts by tens of
# percent within minutes, only measurements seconds apart compare like with like. Rounds rotate the cases
# (each round starts one case later); medians of the rounds are reported. Also Postern's RSS idle and after
# the run. Results go to benches/results/ (kept out of git) and a Markdown table on stdout.
# Installs nginx and wrk from the system's packages when missing. Loopback only.
# PERF_CASE=c_postern_session (for example) also records a perf profile of Postern under that case's load.
# PERF_CALLGRAPH="--call-graph dwarf" attributes the profile to callers (the release build has no frame pointers).
set -euo pipefail

DURATION=10s; ROUNDS=5; CONNS=64; WARMUP=3s
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --connections) CONNS="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
need() { command -v "$1" >/dev/null 2>&1 || { echo "installing $2" >&2; (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2") >/dev/null; }; }
need nginx nginx
need wrk wrk
need redis-server redis-server
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

. "$here/lib.sh"
UP=$(free_port); NG=$(free_port); PO=$(free_port); PR=$(free_port); RP=$(free_port)

start_nginx "$UP" "$NG"

# Postern: the demo (its development provider) in front of the fixed upstream.
# POSTERN_BIN=path measures another build (to compare two versions on one machine).
if [ -n "${POSTERN_BIN:-}" ]; then POSTERN="$POSTERN_BIN"; else
  (cd "$top" && cargo build --release --quiet)
  POSTERN="${CARGO_TARGET_DIR:-$top/target}/release/postern"
fi
start_demo "$POSTERN" demo "$PO" "$UP" --log warn
PPID_POSTERN=${pids[-1]}
ISSUER=$(grep -o 'provider (for development only): [^ ]*' "$work/demo.out" | awk '{print $NF}')
BASE="http://127.0.0.1:$PO"

# The same demo with its sessions in Redis (case f), beside a redis-server of its own.
mkdir -p "$work/redis"
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/redis" > /dev/null & pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$RP") 2>/dev/null && break; sleep 0.1; done
start_demo "$POSTERN" demo-redis "$PR" "$UP" --redis "redis://127.0.0.1:$RP"
BASE_REDIS="http://127.0.0.1:$PR"

# A session cookie: sign in as alice through the provider.
COOKIE=$(sign_in "$BASE")
[ -n "$COOKIE" ] || { echo "sign-in failed" >&2; exit 1; }
COOKIE_REDIS=$(sign_in "$BASE_REDIS")
[ -n "$COOKIE_REDIS" ] || { echo "sign-in on the Redis-store demo failed" >&2; exit 1; }
# A bearer token: the provider's client-credentials grant (an app with the Deploy.Write role).
TOKEN=$(curl -s -u postern-demo:demo-secret-not-for-production -d grant_type=client_credentials \
  -d scope=api://postern/.default "$ISSUER/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

check() { code=$(curl -s -o /dev/null -w '%{http_code}' "$@"); [ "$code" = 200 ] || { echo "setup check failed ($code): $*" >&2; exit 1; }; }
check "http://127.0.0.1:$UP/"; check "http://127.0.0.1:$NG/"
check -H "Cookie: postern=$COOKIE" "$BASE/"; check -H "Authorization: Bearer $TOKEN" "$BASE/"; check "$BASE/public/"
check -H "Cookie: postern=$COOKIE_REDIS" "$BASE_REDIS/"

rss() { awk '/VmRSS/ {print $2}' "/proc/$PPID_POSTERN/status"; }
RSS_IDLE=$(rss)

declare -A CASE_ARGS=(
  [a_upstream]="http://127.0.0.1:$UP/"
  [b_nginx]="http://127.0.0.1:$NG/"
  [c_postern_session]="-H|Cookie: postern=$COOKIE|$BASE/"
  [d_postern_bearer]="-H|Authorization: Bearer $TOKEN|$BASE/"
  [e_postern_public]="$BASE/public/"
  [f_postern_session_redis]="-H|Cookie: postern=$COOKIE_REDIS|$BASE_REDIS/"
)
ORDER=(a_upstream c_postern_session d_postern_bearer e_postern_public f_postern_session_redis)
results="$work/results.txt"; : > "$results"
run_wrk() { # case duration
  IFS='|' read -r -a args <<< "${CASE_ARGS[$1]}"
  wrk -t1 -c"$CONNS" -d"$2" --timeout 5s -s "$here/report.lua" "${args[@]}" | grep '^RESULT' || true
}
for c in b_nginx "${ORDER[@]}"; do run_wrk "$c" "$WARMUP" > /dev/null; done
measure() { # round case label
  local line; line=$(run_wrk "$2" "$DURATION"); echo "$1 $3 $line" >> "$results"; echo "round $1 $3: ${line#RESULT }" >&2
}
for r in $(seq "$ROUNDS"); do
  # Each round starts one case later, so that a machine whose speed drifts during a round favours no case.
  n=${#ORDER[@]}; rotated=()
  for i in $(seq 0 $((n - 1))); do rotated+=("${ORDER[$(( (i + r - 1) % n ))]}"); done
  for c in "${rotated[@]}"; do
    if [ $((r % 2)) -eq 1 ]; then measure "$r" b_nginx "b_nginx:$c"; measure "$r" "$c" "$c"
    else measure "$r" "$c" "$c"; measure "$r" b_nginx "b_nginx:$c"; fi
  done
done
RSS_AFTER=$(rss)

# PERF_CASE=<case>: afterwards, profile Postern (perf, call graphs) under that case's load for DURATION.
if [ -n "${PERF_CASE:-}" ]; then
  mkdir -p "$top/benches/results"; perf record -q -F 499 ${PERF_CALLGRAPH:--g} -o "$top/benches/results/perf-$PERF_CASE.data" -p "$PPID_POSTERN" -- sleep "${DURATION%s}" 2> /dev/null &
  perf_pid=$!; run_wrk "$PERF_CASE" "$DURATION" > /dev/null; wait "$perf_pid" || true
  mkdir -p "$top/benches/results"
  perf report -i "$top/benches/results/perf-$PERF_CASE.data" --no-children --stdio --percent-limit 0.7 -g none 2> /dev/null \
    | grep -v '^$' > "$top/benches/results/perf-$PERF_CASE.txt" || true
  echo "profile: benches/results/perf-$PERF_CASE.txt" >&2
fi

mkdir -p "$top/benches/results"
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
cp "$results" "$top/benches/results/load-$stamp.txt"
table="$work/table.md"
python3 - "$results" "$RSS_IDLE" "$RSS_AFTER" "$CONNS" "$DURATION" "$ROUNDS" > "$table" <<'PY'
import re, statistics, sys, platform, os, datetime
path, rss_idle, rss_after, conns, duration, rounds = sys.argv[1:]
data, own, beside = {}, {}, {}
for line in open(path):
    parts = line.split()
    if len(parts) < 3: continue
    rnd, label = parts[0], parts[1]; kv = dict(p.split('=') for p in parts[3:] if '=' in p)
    values = {k: float(v) for k, v in kv.items()}
    # `b_nginx:<case>` is the nginx run measured beside <case> in that round.
    case, _, partner = label.partition(':')
    data.setdefault(case, []).append(values)
    if partner:
        beside[(partner, rnd)] = values
    else:
        own[(case, rnd)] = values
med = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in data.items()}
# Each case's ratio to nginx comes from the nginx run beside it in the same round; the median over the rounds.
def ratio(case, key):
    if case == 'b_nginx':
        return 1.0
    rs = [v[key] / beside[k][key] for k, v in own.items() if k[0] == case and k in beside and beside[k][key] > 0]
    return statistics.median(rs) if rs else float('nan')
cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
print(f"Machine: {os.cpu_count()} cores, {cpu}; {datetime.date.today()}; wrk 1 thread, {conns} connections, {duration} x {rounds} rounds; medians; each ratio to nginx from the nginx run beside it\n")
print("| case | requests/s | × nginx | p50 | p99 | p99.9 | p99 × nginx | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for c in sorted(med):
    m = med[c]
    rps_ratio = ratio(c, 'rps')
    tail = ratio(c, 'p99')
    print(f"| {c} | {m['rps']:.0f} | {rps_ratio:.2f} | {m['p50']/1000:.2f} ms | {m['p99']/1000:.2f} ms | {m['p999']/1000:.2f} ms | {tail:.2f} | {m['errors']:.0f} |")
print(f"\nPostern RSS: {int(rss_idle)//1024} MiB idle (one session), {int(rss_after)//1024} MiB after the run.")
PY
cat "$table"
# The README's results table is this run's (between its load-results markers).
python3 - "$top/README.md" "$table" <<'PY'
import sys
readme, table = sys.argv[1], open(sys.argv[2]).read().strip()
text = open(readme).read()
start, end = "<!-- load-results:start -->", "<!-- load-results:end -->"
if start in text and end in text:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    open(readme, "w").write(f"{head}{start}\n{table}\n{end}{tail}")
    print("README.md: results table updated", file=sys.stderr)
PY
