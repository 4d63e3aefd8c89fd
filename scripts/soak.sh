#!/usr/bin/env bash
# scripts/soak.sh: a bounded soak of the Redis backend while worker processes are killed and
# stopped (not part of CI). Prints one JSON report on stdout; exits 1 if an invariant broke.
#
#   scripts/soak.sh                  # 10 minutes
#   scripts/soak.sh --minutes 2      # any positive number of minutes (fractions allowed)
#
# It starts its own redis-server on a free 127.0.0.1 port (no persistence), then 16 soak_worker
# processes x 8 threads calling get_or_compute on 50 keys (ttl 1 s, 20% jitter; lock_ttl 1 s;
# wait_timeout 2 s; a load takes 100 ms, so a kill or a stop often hits a lock holder). Every 10 s
# one worker is killed -9 and restarted, and another is SIGSTOPped for 1.5 s (longer than
# lock_ttl) and resumed with SIGCONT. At the end the workers get SIGTERM and `soak_worker report`
# prints:
#   loads_per_expiry             {"<loads>": <expiries>}: loads that replaced the same value; 1
#                                except where a holder was killed or stopped mid-load (explained_by_
#                                kill_or_stop; "unexplained" must be 0)
#   stale_writes_accepted        reads that returned a lower fence than an earlier read (must be 0)
#   callers_waited_past_timeout  calls that waited > wait_timeout + 1 s, not across a stop (must be 0)
#   errors                       exceptions from get_or_compute (must be 0)
#   redis_rss_kb, workers[]      RSS at start and end of redis-server and of every worker process
# Worker logs, stats and the kill/stop log stay in build/soak/. The worker is built (dev preset)
# if build/dev/tests/soak/soak_worker is missing.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1

minutes=10
workers=16
threads=8
keys=50
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes)
      [[ $# -ge 2 && "$2" =~ ^[0-9]*\.?[0-9]+$ ]] && awk "BEGIN{exit !($2 > 0)}" ||
        { echo "soak.sh: --minutes needs a positive number" >&2; exit 2; }
      minutes="$2"; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1' (--minutes M, --help)" >&2; exit 2 ;;
  esac
  shift
done

worker="$root/build/dev/tests/soak/soak_worker"
if [[ ! -x "$worker" ]]; then
  echo "soak.sh: building soak_worker (dev preset)" >&2
  { [[ -d build/dev ]] || cmake --preset dev >&2; } && nice cmake --build --preset dev -j2 --target soak_worker >&2 ||
    { echo "soak.sh: cannot build soak_worker" >&2; exit 1; }
fi
command -v redis-server >/dev/null || { echo "soak.sh: redis-server not found" >&2; exit 1; }

dir="$root/build/soak"
rm -rf "$dir"
mkdir -p "$dir/stats" "$dir/logs"
events="$dir/events.log"
: >"$events"
now_ms() { date +%s%3N; }

redis_pid=""
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
  [[ -n "$redis_pid" ]] && kill -9 "$redis_pid" 2>/dev/null
}
trap cleanup EXIT

# A free port: nothing answers on it; if redis-server still cannot bind it, try another.
port=""
for _ in $(seq 1 20); do
  candidate=$((20000 + RANDOM % 40000))
  (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null && continue
  redis-server --port "$candidate" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --logfile "$dir/logs/redis.log" &
  redis_pid=$!
  for _ in $(seq 1 50); do
    redis-cli -p "$candidate" ping >/dev/null 2>&1 && { port="$candidate"; break; }
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n "$port" ]] && break
  kill -9 "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; redis_pid=""
done
[[ -n "$port" ]] || { echo "soak.sh: could not start redis-server" >&2; exit 1; }
url="redis://127.0.0.1:$port"
redis_rss_start=$(awk '/^VmRSS:/{print $2}' "/proc/$redis_pid/status")

total_s=$(awk "BEGIN{printf \"%d\", $minutes * 60}")
incarnation=0
start_worker() {  # start_worker INDEX
  incarnation=$((incarnation + 1))
  "$worker" run --redis "$url" --worker "$1" --threads "$threads" --keys "$keys" --ttl-ms 1000 \
    --lock-ttl-ms 1000 --wait-timeout-ms 2000 --load-ms 100 --seconds $((total_s + 60)) \
    --stats "$dir/stats/worker-$1-$incarnation.json" >>"$dir/logs/worker-$1.log" 2>&1 &
  pids[$1]=$!
  echo "start $1 ${pids[$1]} $(now_ms)" >>"$events"
}

echo "soak.sh: $workers workers x $threads threads on $keys keys against $url for $minutes min" >&2
for i in $(seq 0 $((workers - 1))); do start_worker "$i"; done

end=$((SECONDS + total_s))
round=0
while ((SECONDS + 10 <= end)); do
  sleep 10
  k=$((round % workers))
  s=$(((round + workers / 2) % workers))
  round=$((round + 1))
  victim=${pids[$k]}
  kill -9 "$victim" 2>/dev/null
  wait "$victim" 2>/dev/null
  echo "kill $k $victim $(now_ms)" >>"$events"
  start_worker "$k"
  stopped=${pids[$s]}
  t0=$(now_ms)
  kill -STOP "$stopped"
  sleep 1.5
  kill -CONT "$stopped"
  echo "stop $s $stopped $t0 $(now_ms)" >>"$events"
  echo "soak.sh: $((total_s - (end - SECONDS)))s: killed worker $k, stopped worker $s" >&2
done
((SECONDS < end)) && sleep $((end - SECONDS))

for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for _ in $(seq 1 300); do
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  ((alive)) || break
  sleep 0.1
done
for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
pids=()

report="$dir/report.json"
"$worker" report --redis "$url" --keys "$keys" --lock-ttl-ms 1000 --stats-dir "$dir/stats" --events "$events" \
  --redis-pid "$redis_pid" --redis-rss-start-kb "$redis_rss_start" --minutes "$minutes" >"$report" ||
  { echo "soak.sh: report failed" >&2; exit 1; }
cat "$report"
if command -v jq >/dev/null; then
  jq -e '.stale_writes_accepted == 0 and .callers_waited_past_timeout == 0 and .errors == 0
         and .expiries_with_several_loads.unexplained == 0' "$report" >/dev/null ||
    { echo "soak.sh: an invariant broke (see $report)" >&2; exit 1; }
fi
