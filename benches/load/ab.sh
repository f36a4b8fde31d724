#!/usr/bin/env bash
# A/B: two Postern builds side by side, to tell whether a change to the hot path helps.
#
#   benches/load/ab.sh OLD_BINARY NEW_BINARY [--rounds 8] [--duration 3s]
#
# Both run `postern demo` in front of one fixed nginx upstream; each round runs nginx as a reverse proxy, then
# A and B on the public route, then both with a session cookie (wrk, 1 thread, 64 connections; which build goes
# first alternates by round). Each line gives
# requests/s, p99 and Postern's CPU time per request (perf stat task-clock of its process ÷ requests), which
# moves less than throughput on a machine whose speed drifts. Medians at the end. Loopback only; needs nginx,
# wrk and perf (the load script installs the first two).
set -euo pipefail

[ $# -ge 2 ] || { sed -n 2,9p "$0" >&2; exit 2; }
A=$(realpath "$1"); B=$(realpath "$2"); shift 2
ROUNDS=8; DURATION=3s
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"
UP=$(free_port); NG=$(free_port); PA=$(free_port); PB=$(free_port)
start_nginx "$UP" "$NG"

declare -A BIN=([A]=$A [B]=$B) PORT=([A]=$PA [B]=$PB) PID COOKIE
for x in A B; do
  start_demo "${BIN[$x]}" "$x" "${PORT[$x]}" "$UP" --log warn
  PID[$x]=${pids[-1]}
done
for x in A B; do
  COOKIE[$x]=$(sign_in "http://127.0.0.1:${PORT[$x]}")
  [ -n "${COOKIE[$x]}" ] || { echo "sign-in on $x failed" >&2; exit 1; }
  wrk -t1 -c64 -d2s "http://127.0.0.1:${PORT[$x]}/public/" > /dev/null
done

results="$work/results.txt"; : > "$results"
measure() { # round build case wrk-arguments...
  local r=$1 x=$2 case=$3; shift 3
  perf stat -x, -e task-clock -p "${PID[$x]}" -o "$work/stat" -- sleep "${DURATION%s}" 2> /dev/null & local sp=$!
  wrk -t1 -c64 -d"$DURATION" --latency "$@" > "$work/wrk"
  wait "$sp" || true
  local requests ms
  requests=$(awk '/requests in/ {print $1}' "$work/wrk"); ms=$(awk -F, '/task-clock/ {print $1}' "$work/stat")
  awk -v r="$r" -v x="$x" -v c="$case" -v n="$requests" -v ms="$ms" \
    '/Requests\/sec/ {rps=$2} /99%/ {p99=$2} END {printf "%s %s %s rps=%.0f p99=%s cpu_us=%.2f\n", r, x, c, rps, p99, ms * 1000 / n}' \
    "$work/wrk" | tee -a "$results"
}
for r in $(seq "$ROUNDS"); do
  wrk -t1 -c64 -d"$DURATION" "http://127.0.0.1:$NG/" | awk -v r="$r" '/Requests\/sec/ {printf "%s nginx - rps=%.0f\n", r, $2}' \
    | tee -a "$results"
  # Who goes first alternates, and so does the case order: a build measured right after the other, or a
  # case right after a warm-up, would otherwise carry a bias of its own.
  order="A B"; [ $((r % 2)) -eq 0 ] && order="B A"
  for case in public session; do
    for x in $order; do
      if [ "$case" = public ]; then
        measure "$r" "$x" public "http://127.0.0.1:${PORT[$x]}/public/"
      else
        measure "$r" "$x" session -H "Cookie: postern=${COOKIE[$x]}" "http://127.0.0.1:${PORT[$x]}/"
      fi
    done
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r, build, case, *kv = line.split()
    values = dict(p.split('=', 1) for p in kv)
    rows.setdefault((build, case), []).append(values)
print("\nmedians:")
for (build, case), vs in sorted(rows.items()):
    rps = statistics.median(float(v['rps']) for v in vs)
    cpu = [float(v['cpu_us']) for v in vs if 'cpu_us' in v]
    print(f"  {build:5} {case:8} {rps:8.0f} requests/s" + (f"  {statistics.median(cpu):6.2f} µs CPU a request" if cpu else ""))
PY
