#!/usr/bin/env bash
# scripts/demo.sh: builds the demos (preset `dev`) and runs the cache demos on the embedded backend.
#
#   scripts/demo.sh
#
# 1. installs missing Debian packages (as root; otherwise prints the apt-get line and stops),
# 2. cmake --preset dev && cmake --build --preset dev --target <the demos>,
# 3. cache_rebuild_blocking: 16 workers miss one cold key at once -> 1 database query;
#    cache_rebuild_swr: fresh -> stale served at once while one refresh runs -> fresh -> expired;
#    cache_rebuild_async (when the build has stampede::asio, i.e. standalone Asio: libasio-dev):
#    10,000 coroutines on 2 threads miss one cold key -> 1 database query, a handful of OS threads.
# The runs after the build take a few seconds. REDIS_URL is ignored here (embedded backend only).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh
stampede_ensure_deps

echo "== configure + build (preset dev, build/dev)"
cmake --preset dev >/dev/null
demos=(cache_rebuild_blocking cache_rebuild_swr lock_demo)
# cache_rebuild_async is a target only when CMake found standalone Asio (stampede::asio).
targets="$(cmake --build --preset dev --target help)"
if grep -qx '\.\.\. cache_rebuild_async' <<<"$targets"; then demos+=(cache_rebuild_async); fi
cmake --build --preset dev --target "${demos[@]}" -j2
bin="$root/build/dev/demos"

echo
echo "== cache_rebuild_blocking: 16 workers released at once on a cold key; the DB query takes 300 ms"
echo "   (source=db: ran the query; wait: waited for that load; cache: was already cached)"
env -u REDIS_URL "$bin/cache_rebuild_blocking" --key item:1 --workers 16 --db-ms 300 --timeout-ms 1000

echo
echo "== cache_rebuild_swr: soft TTL 0.5 s, stale window 1 s, 8 requests per round every 300 ms"
env -u REDIS_URL "$bin/cache_rebuild_swr" --key item:1 --soft-ttl 0.5 --swr-window 1 --db-ms 200 \
  --workers 8 --rounds 6 --interval-ms 300

if [[ " ${demos[*]} " == *" cache_rebuild_async "* && -x "$bin/cache_rebuild_async" ]]; then
  echo
  echo "== cache_rebuild_async: 10000 coroutines on 2 io threads miss one cold key; the DB query takes 200 ms"
  env -u REDIS_URL "$bin/cache_rebuild_async" --callers 10000 --threads 2 --db-ms 200
fi

echo
echo "More: $bin/cache_rebuild_blocking --help, $bin/cache_rebuild_swr --help, $bin/lock_demo --help"
echo "Across processes: start redis-server, then run several demos at once with --redis redis://127.0.0.1:6379"
