#!/usr/bin/env bash
# scripts/bench.sh: builds the benchmarks in Release, runs them, writes JSON and plots.
#
#   scripts/bench.sh            # = --quick: every benchmark, bounded, < 3 min on 2 cores
#   scripts/bench.sh --full     # the published figures (docs/performance.md)
#   scripts/bench.sh --smoke    # CI: one short iteration each, no plots, numbers never asserted
#   scripts/bench.sh --quick -- --benchmark_filter=BM_Wave_   # extra flags go to both binaries
#   scripts/bench.sh --quick --peers   # also Go (sync.Map, singleflight) and Java (Caffeine) peers
#
# Output: bench-out/{inprocess,redis}.json, bench-out/summary.md, bench-out/machine.txt and (not
# in --smoke) docs/bench-*.png; --full also rewrites the generated section of docs/performance.md.
# --peers builds benchmarks/peers/{go,java} (offline: Debian's golang-go + golang-golang-x-sync-dev,
# openjdk-17-jdk-headless + libcaffeine-java), runs them after our suites with the same profile and
# writes bench-out/peers-{go,java}.json for the summary's peer table, printed at the end. A
# missing toolchain or a failing peer is skipped with one line; as root the script offers to
# install the packages (STAMPEDE_INSTALL_OPTIONAL=1: without asking). The peers take ~15 s in
# --quick, ~70 s in --full.
# The Redis suite runs when the stampede::redis target exists: the script starts its own
# redis-server on a free loopback port (no persistence) and stops it on exit, also on failure.
# Environment: STAMPEDE_BENCH_BUILD_DIR (default build/bench).
#   --prebuilt DIR: use the benchmark binaries already built in DIR (no configure, no build), e.g.
#   scripts/test.sh runs `scripts/bench.sh --smoke --prebuilt build/dev` so they keep working in CI.
set -euo pipefail

profile=quick
extra=()
prebuilt=""
peers=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) profile=smoke ;;
    --quick) profile=quick ;;
    --full) profile=full ;;
    --prebuilt) shift; prebuilt="${1:?--prebuilt needs a build directory}" ;;
    --) shift; extra=("$@"); break ;;
    --peers) peers=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1' (--smoke, --quick, --full, --peers, --prebuilt DIR, -- <benchmark flags>)" >&2; exit 2 ;;
  esac
  shift
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${STAMPEDE_BENCH_BUILD_DIR:-$root/build/bench}"
out="$root/bench-out"
mkdir -p "$out"

redis_pid=""
redis_dir=""
cleanup() {
  if [[ -n "$redis_pid" ]] && kill -0 "$redis_pid" 2>/dev/null; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  if [[ -n "$redis_dir" ]]; then rm -rf "$redis_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

targets=(stampede_bench)
if [[ -n "$prebuilt" ]]; then
  build="$(cd "$prebuilt" && pwd)"
  echo "== prebuilt benchmarks in $build"
  [[ -x "$build/benchmarks/stampede_bench" ]] || { echo "bench.sh: no $build/benchmarks/stampede_bench" >&2; exit 1; }
  [[ -x "$build/benchmarks/stampede_bench_redis" ]] && targets+=(stampede_bench_redis)
else
  echo "== configure + build (Release) in $build"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSTAMPEDE_BUILD_TESTS=OFF \
    -DSTAMPEDE_BUILD_DEMOS=OFF -DSTAMPEDE_BUILD_BENCHMARKS=ON >/dev/null
  build_targets="$(cmake --build "$build" --target help 2>/dev/null || true)"
  if grep -qw 'stampede_bench_redis' <<<"$build_targets"; then
    targets+=(stampede_bench_redis)
  fi
  cmake --build "$build" -j2 --target "${targets[@]}"
fi

{
  echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "profile: $profile"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "loadavg_before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "kernel: $(uname -r)"
  echo "compiler: $(c++ --version | head -1)"
  dirty="$(git -C "$root" status --porcelain --untracked-files=no -- include src 2>/dev/null | awk '{print $2}' | tr '\n' ' ')"
  echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)${dirty:+ + uncommitted changes in ${dirty% }}"
} > "$out/machine.txt"
cat "$out/machine.txt"

jsons=()
echo "== in-process suite ($profile)"
"$build/benchmarks/stampede_bench" --stampede_profile="$profile" \
  --benchmark_out="$out/inprocess.json" --benchmark_out_format=json ${extra[@]+"${extra[@]}"}
jsons+=("$out/inprocess.json")

if [[ " ${targets[*]} " == *" stampede_bench_redis "* ]]; then
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  redis_dir="$(mktemp -d)"
  echo "== redis-server on 127.0.0.1:$port (no persistence)"
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$redis_dir" \
    --daemonize no --loglevel warning --logfile "$redis_dir/redis.log" &
  redis_pid=$!
  for _ in $(seq 50); do
    redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
    kill -0 "$redis_pid" 2>/dev/null || { echo "redis-server failed to start:" >&2; cat "$redis_dir/redis.log" >&2; exit 1; }
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null
  echo "== Redis suite ($profile)"
  "$build/benchmarks/stampede_bench_redis" --stampede_profile="$profile" \
    --stampede_redis_url="redis://127.0.0.1:$port" \
    --benchmark_out="$out/redis.json" --benchmark_out_format=json ${extra[@]+"${extra[@]}"}
  jsons+=("$out/redis.json")
else
  echo "== Redis suite skipped: target stampede_bench_redis not available"
  rm -f "$out/redis.json"
fi

# Peer programs (--peers): each step that fails prints one line and the run goes on.
peer_go() {
  local gopath="${STAMPEDE_PEERS_GOPATH:-/usr/share/gocode}" dir="$build/peers"
  if ! command -v go >/dev/null 2>&1 || [[ ! -d "$gopath/src/golang.org/x/sync/singleflight" ]]; then
    if ! stampede_offer_packages "${STAMPEDE_PEER_GO_PACKAGES[@]}"; then
      echo "== peers: Go skipped: no go or no golang.org/x/sync in $gopath (apt-get install -y ${STAMPEDE_PEER_GO_PACKAGES[*]})"
      return 0
    fi
  fi
  mkdir -p "$dir"
  if ! GO111MODULE=off GOPATH="$gopath" GOFLAGS="" GOCACHE="$dir/go-cache" \
      go build -o "$dir/go-peer" "$root/benchmarks/peers/go/main.go" >"$out/peers-go.log" 2>&1; then
    echo "== peers: Go skipped: build failed (bench-out/peers-go.log)"
    return 0
  fi
  echo "== peers: Go ($(go version | cut -d' ' -f3))"
  if timeout "$peer_timeout" "$dir/go-peer" -profile "$profile" -spread-keys "$spread_keys" \
      -out "$out/peers-go.json" >>"$out/peers-go.log" 2>&1; then
    jsons+=("$out/peers-go.json")
  else
    echo "== peers: Go skipped: the run failed or timed out after ${peer_timeout}s (bench-out/peers-go.log)"
  fi
}

peer_java() {
  local jar="${STAMPEDE_CAFFEINE_JAR:-/usr/share/java/caffeine.jar}" dir="$build/peers/java"
  if ! command -v javac >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1 || [[ ! -f "$jar" ]]; then
    if ! stampede_offer_packages "${STAMPEDE_PEER_JAVA_PACKAGES[@]}"; then
      echo "== peers: Java skipped: no javac/java or no $jar (apt-get install -y ${STAMPEDE_PEER_JAVA_PACKAGES[*]})"
      return 0
    fi
  fi
  mkdir -p "$dir"
  if ! javac -d "$dir" -cp "$jar" "$root/benchmarks/peers/java/CaffeinePeer.java" >"$out/peers-java.log" 2>&1; then
    echo "== peers: Java skipped: javac failed (bench-out/peers-java.log)"
    return 0
  fi
  echo "== peers: Java ($(java -version 2>&1 | head -1)), $(basename "$(readlink -f "$jar")")"
  if timeout "$peer_timeout" java -Xms2g -Xmx2g -cp "$dir:$jar" CaffeinePeer --profile "$profile" \
      --spread-keys "$spread_keys" --out "$out/peers-java.json" >>"$out/peers-java.log" 2>&1; then
    jsons+=("$out/peers-java.json")
  else
    echo "== peers: Java skipped: the run failed or timed out after ${peer_timeout}s (bench-out/peers-java.log)"
  fi
}

rm -f "$out"/peers-*.json "$out"/peers-*.log
if ((peers)); then
  peers_started=$SECONDS
  # shellcheck source=scripts/lib/deps.sh
  source "$root/scripts/lib/deps.sh"
  # The spread case uses as many warm keys as our hit path did in this run.
  spread_keys="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["context"]["spread_keys"])' \
                 "$out/inprocess.json" 2>/dev/null || echo 1000000)"
  case "$profile" in full) peer_timeout=300 ;; *) peer_timeout=120 ;; esac
  peer_go
  peer_java
  echo "== peers took $((SECONDS - peers_started)) s"
fi
echo "loadavg_after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"

echo "== report"
case "$profile" in
  smoke) python3 "$root/benchmarks/report.py" --out "$out/summary.md" --machine "$out/machine.txt" "${jsons[@]}" ;;
  quick) python3 "$root/benchmarks/report.py" --out "$out/summary.md" --machine "$out/machine.txt" --plots "$root/docs" "${jsons[@]}" ;;
  full) python3 "$root/benchmarks/report.py" --out "$out/summary.md" --machine "$out/machine.txt" --plots "$root/docs" \
          --doc "$root/docs/performance.md" "${jsons[@]}" ;;
esac
if ((peers)); then
  # The peer table of the summary, from its heading to the next one.
  echo
  awk '/^### Peers and floors/ { show = 1; print; next } /^### / { show = 0 } show' "$out/summary.md"
fi
