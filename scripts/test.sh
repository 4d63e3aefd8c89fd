#!/usr/bin/env bash
# scripts/test.sh: lints stampede, builds and tests it in the dev, tsan and asan presets, then checks
# the installed package, a demo, the benchmarks and the fuzzers. Exits non-zero on any failure.
#
#   scripts/test.sh                  # everything (what CI runs: .ci/run); ~14 min on 2 idle cores (cold ccache)
#   scripts/test.sh --changed        # the fast loop: an incremental build of the `quick` preset and
#                                    # the tests of every test program that the build changed
#   scripts/test.sh --preset tsan    # one preset only (repeatable); package + demo stages need dev
#   scripts/test.sh --preset lint    # the lint stages only
#   scripts/test.sh --preset fuzz    # the fuzz stage only
#   scripts/test.sh --repeat N       # every ctest run is `ctest --repeat until-fail:N` (flakiness)
#
# Stages, each counted in the closing "N passed, N failed" line:
#   deps                 missing Debian packages are installed (root) or the apt-get line is printed
#   lint: format         clang-format-16 --dry-run --Werror over every tracked .hpp/.cpp/.h
#   lint: configure      cmake --preset clang-tsa (clang++, build/clang-tsa): the compile database
#   lint: tidy           clang-tidy-16 (.clang-tidy, every finding an error) over src/ and src/redis/
#   lint: tsa build      the libraries (stampede, stampede_redis) in clang-tsa: -Wthread-safety -Werror
#                        A lint failure fails the run; the stages after it still run. A missing tool
#                        fails its stage, naming the Debian package.
#   <preset>: configure  cmake --preset <preset>            (build/<preset>)
#   <preset>: build      cmake --build --preset <preset> -j2. In dev the test programs' own files
#                        compile at -O1 (STAMPEDE_TEST_CODE_OPTIONS), the library and the shared
#                        Cache<T> instantiations they test at -O2. Debug information is line tables
#                        (-g1: file:line in backtraces and sanitizer reports) in dev (-O2), tsan
#                        (-O1) and asan (-O0): measured on one Cache suite, full -g costs 45% more
#                        compile CPU than -g1 at -O2, and asan+ubsan at -O1 76% more than at -O0,
#                        where the sanitizers check the same accesses (none optimised away).
#   <preset>: test       ctest --preset <preset> -j3 --output-on-failure (the Redis tests start their
#                        own redis-server on a free loopback port)
#   package              tests/consumer/check_package.sh build/dev build/package-test: installs build/dev
#                        and builds tests/consumer against it (find_package, COMPONENTS redis), with
#                        pkg-config, and against build/dev itself (export()); builds the libraries
#                        shared (build/package-test/shared-build), installs and consumes them; checks
#                        that missing components fail clearly
#   demo                 cache_rebuild_blocking --workers 64 --db-ms 200 --json reports db_hits 1, served 64
#   bench smoke          scripts/bench.sh --smoke --prebuilt build/dev: each benchmark once, nothing asserted
#   fuzz                 scripts/fuzz.sh --seconds 30: builds the fuzz preset (clang, libFuzzer) and runs
#                        each fuzzer 30 s on its seed corpus (skipped without clang++); longer runs:
#                        scripts/fuzz.sh --seconds 3600
#
# What each build tests. dev builds and runs every test. tsan and asan build and run every test
# but these, which the dev build runs (the presets' STAMPEDE_TESTS_LEFT_OUT and
# STAMPEDE_BUILD_DEMOS say which), and which check little more under that sanitizer than the
# tests it does run; each left-out part costs the build minutes of compiling:
#   - flat_table_test, in tsan only: single-threaded (the table's concurrent use is tested through
#     the store and the Cache suites, which tsan runs); asan runs it.
#   - soak_worker's command-line checks (soak_worker.*) and the soak worker itself: CLI11 parsing of
#     a tool that no test runs (scripts/soak.sh does, outside this script).
#   - the demos and their checks (demo.*): their smoke runs drive the library's Cache and lock
#     through the same paths as MemoryCache.ThousandCallersOnAColdKeyShareOneLoad, the SWR topic
#     and the watchdog tests, which both sanitizers run; the rest of each demo is its command line
#     (CLI11, checked in dev) and printing; near_cache_demo's only check without a Redis is
#     `--help`.
#   - the Cache conformance topics over Redis (redis_conformance: Redis.*), in asan only (tsan runs
#     them): asan runs the same topics over the embedded backend, and the Redis backend's own code
#     (store, near cache, client, lock, Redlock, faults, processes) through the rest of redis_test.
#
# What the builds share, to compile less: Cache<T>'s miss path takes the loader as
# detail::LoaderRef<T>, so the Cache<T> of the tests' common value types is compiled once per build
# (tests/support/instances.hpp, tests/redis/instances.hpp: extern templates); the test programs
# share one precompiled header (two with redis_test's); the demos share their command line
# (demos/cli.cpp).
#
# How the stages run: the stages of one kind run in order (lint; the builds dev -> tsan -> asan;
# fuzz), but the kinds run side by side: each preset's tests start as soon as its build is done,
# while the next preset builds; the dev build's package, demo and bench stages follow its tests;
# lint and fuzz run beside the builds. Compilers run at a lower priority (nice) than the tests, so
# the tests run as on an idle machine while the builds take the rest of the CPU. Each stage writes
# its output to build/test-logs/<stage>.log; a failed stage's log is printed when it fails, and the
# summary lists every stage with its time and its log. Every build goes through ccache when it is
# installed (cmake/StampedeBuildSpeed.cmake), so a second run rebuilds from the cache.
#
# The fast loop (--changed): the `quick` preset (build/quick: -O0, no debug info, no demos,
# benchmarks or soak worker; every test program) is built incrementally, then the tests of the
# test programs that the build relinked run (ctest -L <program>), with -j4. After a one-line change
# to a core header (include/stampede/detail/cache-inl.hpp) that is every Cache test: ~145 CPU s of
# compiling, about 1.5 min on 2 idle cores.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1

presets=()
run_fuzz=0
run_lint=0
changed=0
repeat=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset)
      [[ $# -ge 2 ]] || { echo "test.sh: --preset needs a name (dev, tsan, asan, lint, fuzz)" >&2; exit 2; }
      case "$2" in dev|tsan|asan) presets+=("$2") ;;
        lint) run_lint=1 ;;
        fuzz) run_fuzz=1 ;;
        *) echo "test.sh: unknown preset '$2' (dev, tsan, asan, lint, fuzz)" >&2; exit 2 ;; esac
      shift ;;
    --changed) changed=1 ;;
    --repeat)
      [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || { echo "test.sh: --repeat needs a positive integer" >&2; exit 2; }
      repeat="$2"; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1' (--preset NAME, --changed, --repeat N, --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((changed && (${#presets[@]} || run_fuzz || run_lint))); then
  echo "test.sh: --changed runs alone (the quick preset)" >&2; exit 2
fi
if ((${#presets[@]} == 0 && run_fuzz == 0 && run_lint == 0 && changed == 0)); then
  # tsan before asan: the last build's tests are the only ones nothing runs beside, and asan's
  # tests are the shorter (about 35 s against tsan's 90 s, most of which waits on timers and
  # processes, so they overlap the asan build well).
  presets=(dev tsan asan)
  run_lint=1
  run_fuzz=1
fi
ctest_repeat=()
((repeat > 1)) && ctest_repeat=(--repeat "until-fail:$repeat")

t_all=$SECONDS
logs="$root/build/test-logs"
results="$logs/results"
rm -rf "$logs"
mkdir -p "$results"

# stage NAME COMMAND...: runs COMMAND with its output in build/test-logs/<NAME>.log, records PASS or
# FAIL with its duration (one result file per stage, named by its start time, so that stages in
# background jobs count too) with its wall time and the CPU time of its processes, and prints the
# log of a failed stage. Returns COMMAND's status.
last_result=""
# children_cpu: sets cpu_now to the user + system CPU seconds of this shell's finished children
# (bash's `times`, run in this shell: a subshell, as in $(...) or a pipe, has no children of its own).
cpu_now=0
children_cpu() {
  local f="$logs/.times.$BASHPID"
  times >"$f"
  cpu_now="$(awk 'NR == 2 { total = 0
                            for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); total += p[1] * 60 + p[2] }
                            printf "%d\n", total + 0.5 }' "$f")"
  rm -f "$f"
}
stage() {
  local name="$1"; shift
  local t0=$SECONDS rc=0 file log
  file="$(sed -e 's/: /-/g' -e 's/[^a-zA-Z0-9_.-]/_/g' <<<"$name")"
  log="$logs/$file.log"
  last_result="$results/$(date +%s%N)"
  echo "==== [$name] started $(date -u +%H:%M:%S)"
  local cpu0 cpu
  children_cpu; cpu0=$cpu_now
  "$@" >"$log" 2>&1 </dev/null || rc=$?
  local took=$((SECONDS - t0))
  children_cpu; cpu=$((cpu_now - cpu0))
  if ((rc == 0)); then
    printf 'PASS  %4ss  %5s CPU s  %s\n' "$took" "$cpu" "$name" >"$last_result"
    echo "==== [$name] PASS in ${took}s"
  else
    printf 'FAIL  %4ss  %5s CPU s  %s (exit %s; log: build/test-logs/%s.log)\n' "$took" "$cpu" "$name" "$rc" \
      "$file" >"$last_result"
    # One write, so that the log does not interleave with other stages' lines.
    printf '==== [%s] FAIL in %ss (exit %s): build/test-logs/%s.log\n%s\n==== [%s] end of log\n' \
      "$name" "$took" "$rc" "$file" "$(cat "$log")" "$name"
  fi
  return "$rc"
}
skip() {
  last_result="$results/$(date +%s%N)"
  printf 'SKIP                       %s (%s)\n' "$1" "$2" >"$last_result"
}
# note TEXT: a line under the last stage of this job in the summary.
note() {
  printf '        %s\n' "$1" >>"$last_result"
}

summary() {
  local passed failed skipped
  passed=$(cat "$results"/* 2>/dev/null | grep -c '^PASS')
  failed=$(cat "$results"/* 2>/dev/null | grep -c '^FAIL')
  skipped=$(cat "$results"/* 2>/dev/null | grep -c '^SKIP')
  echo
  echo "==== summary ($((SECONDS - t_all)) s; logs in build/test-logs/)"
  cat "$results"/* | sed 's/^/  /'
  if ((skipped)); then
    echo "$passed passed, $failed failed, $skipped skipped"
  else
    echo "$passed passed, $failed failed"
  fi
  ((failed == 0))
}

deps_stage() {
  # shellcheck source=scripts/lib/deps.sh
  source "$root/scripts/lib/deps.sh"
  stampede_ensure_deps
}
if ! stage deps deps_stage; then
  summary
  exit 1
fi

# Compilers and linkers run below the tests' priority (see the header).
build_nice=(nice -n 10)

# need_tool COMMAND PACKAGE: fails, naming the Debian package, when COMMAND is not installed.
need_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "lint: $1 not found: install the Debian package $2 (scripts/lib/deps.sh lists it)" >&2
  return 1
}

lint_format() {
  need_tool clang-format-16 clang-format-16 || return 1
  local files=()
  mapfile -d '' -t files < <(git -C "$root" ls-files -z -- '*.hpp' '*.cpp' '*.h' ':!:fuzz/corpus/**') || true
  ((${#files[@]})) || { echo "lint: git ls-files found no sources (not a git checkout?)" >&2; return 1; }
  clang-format-16 --dry-run --Werror "${files[@]}" || {
    echo "lint: run clang-format-16 -i on the files above" >&2
    return 1
  }
  echo "lint: ${#files[@]} files formatted"
}

lint_configure() {
  need_tool clang++ clang || return 1
  cmake --preset clang-tsa
}

# The sources under src/ in the clang-tsa compile database (the demos are in it too).
lint_tidy() {
  need_tool clang-tidy-16 clang-tidy-16 || return 1
  need_tool run-clang-tidy-16 clang-tidy-16 || return 1
  local root_re
  root_re="$(sed 's/[][\\.*^$()+?{}|]/\\&/g' <<<"$root")"
  "${build_nice[@]}" run-clang-tidy-16 -p "$root/build/clang-tsa" -j2 -quiet "^$root_re/src/" || {
    echo "lint: clang-tidy-16 findings above (.clang-tidy makes each one an error)" >&2
    return 1
  }
}

lint_lane() {
  stage "lint: format" lint_format
  if stage "lint: configure" lint_configure; then
    stage "lint: tidy" lint_tidy
    stage "lint: tsa build" "${build_nice[@]}" cmake --build --preset clang-tsa -j2 --target stampede stampede_redis
  else
    skip "lint: tidy" "configure failed"; skip "lint: tsa build" "configure failed"
  fi
}

fuzz_lane() {
  if command -v clang++ >/dev/null; then
    stage fuzz "$root/scripts/fuzz.sh" --seconds 30  # it builds at a lower priority itself
  else
    skip fuzz "clang++ not installed"
  fi
}

# run_tests PRESET: ctest in build/PRESET; names the failed tests in the summary.
run_tests() {
  local p="$1"
  if ! stage "$p: test" ctest --preset "$p" -j3 --output-on-failure --timeout 600 "${ctest_repeat[@]}"; then
    # Name the failed tests in the summary (ctest lists them as "<number>:<name>").
    local failed_log="$root/build/$p/Testing/Temporary/LastTestsFailed.log" line
    if [[ -f "$failed_log" ]]; then
      while IFS= read -r line; do note "failed: ${line#*:}"; done < <(head -n 10 "$failed_log")
    fi
    return 1
  fi
}

demo_smoke() {
  local out
  out="$(env -u REDIS_URL "$root/build/dev/demos/cache_rebuild_blocking" --workers 64 --db-ms 200 --json)" || return 1
  echo "$out"
  jq -e '.backend == "memory" and .db_hits == 1 and .served == 64 and .errors == 0' <<<"$out" >/dev/null || {
    echo "demo: expected backend memory, db_hits 1, served 64, errors 0" >&2
    return 1
  }
  echo "demo: 64 workers, 1 db hit, 64 served"
}

# The benchmarks (built by the dev preset) run once, briefly, so they keep building and working;
# their numbers are never asserted.
bench_smoke() {
  "$root/scripts/bench.sh" --smoke --prebuilt "$root/build/dev"
}

# After the dev build: its tests, then the stages that use build/dev.
dev_lane() {
  run_tests dev
  stage package "${build_nice[@]}" "$root/tests/consumer/check_package.sh" "$root/build/dev" \
    "$root/build/package-test"
  stage demo demo_smoke
  stage "bench smoke" bench_smoke
}

# The builds one after the other (each uses both cores); each preset's tests start once it is built.
build_lane() {
  local p pids=()
  for p in "${presets[@]}"; do
    if ! stage "$p: configure" cmake --preset "$p"; then
      skip "$p: build" "configure failed"; skip "$p: test" "configure failed"
      [[ "$p" == dev ]] && { skip package "dev build failed"; skip demo "dev build failed"; skip "bench smoke" "dev build failed"; }
      continue
    fi
    if ! stage "$p: build" "${build_nice[@]}" cmake --build --preset "$p" -j2; then
      skip "$p: test" "build failed"
      [[ "$p" == dev ]] && { skip package "dev build failed"; skip demo "dev build failed"; skip "bench smoke" "dev build failed"; }
      continue
    fi
    if [[ "$p" == dev ]]; then
      dev_lane &
    else
      run_tests "$p" &
    fi
    pids+=($!)
  done
  ((${#pids[@]} == 0)) || wait "${pids[@]}"
}

# --changed: the quick preset, built incrementally; the tests of the test programs it relinked.
changed_run() {
  local build="$root/build/quick" stamp="$root/build/quick/.test-stamp"
  stage "quick: configure" cmake --preset quick || return 1
  [[ -f "$stamp" ]] || touch -d '@0' "$stamp"
  stage "quick: build" cmake --build --preset quick -j2 || return 1
  # Test programs newer than the last --changed run that passed, as ctest labels: each program's
  # name (tests/CMakeLists.txt), but "redis" for redis_test (tests/redis/CMakeLists.txt).
  local labels=() exe name
  while IFS= read -r exe; do
    name="$(basename "$exe")"
    [[ "$name" == redis_test ]] && name=redis
    labels+=("$name")
  done < <(find "$build/tests" -type f -executable -newer "$stamp" \( -name '*_test' \))
  if ((${#labels[@]} == 0)); then
    note "no test program changed since the last passing --changed run"
    return 0
  fi
  local re
  re="^($(IFS='|'; echo "${labels[*]}"))\$"
  echo "==== tests of: ${labels[*]}"
  stage "quick: test" ctest --preset quick -L "$re" -j4 --output-on-failure --timeout 600 "${ctest_repeat[@]}" &&
    touch -r "$build/.build-started" "$stamp"
}

if ((changed)); then
  mkdir -p "$root/build/quick"
  touch "$root/build/quick/.build-started"
  changed_run
  summary
  exit
fi

lanes=()
if ((run_lint)); then lint_lane & lanes+=($!); fi
if ((${#presets[@]})); then build_lane & lanes+=($!); fi
if ((run_fuzz)); then fuzz_lane & lanes+=($!); fi
wait "${lanes[@]}"

summary
