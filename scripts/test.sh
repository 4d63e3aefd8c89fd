#!/usr/bin/env bash
# scripts/test.sh: lints stampede, builds and tests it in the dev, tsan and asan presets, then checks
# the installed package and a demo. Exits non-zero on any failure.
#
#   scripts/test.sh                  # everything (~what CI runs: .ci/run)
#   scripts/test.sh --preset tsan    # one preset only (repeatable); package + demo stages need dev
#   scripts/test.sh --preset lint    # the lint stages only
#   scripts/test.sh --preset fuzz    # the fuzz stage only
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
#   <preset>: build      cmake --build --preset <preset> -j2 (tsan and asan compile with -O1 -g1,
#                        which halves their build time against -O2 -g and keeps file:line in reports)
#   <preset>: test       ctest --preset <preset> -j2 --output-on-failure (the Redis tests start their
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
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1

presets=()
run_fuzz=0
run_lint=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset)
      [[ $# -ge 2 ]] || { echo "test.sh: --preset needs a name (dev, tsan, asan, lint, fuzz)" >&2; exit 2; }
      case "$2" in dev|tsan|asan) presets+=("$2") ;;
        lint) run_lint=1 ;;
        fuzz) run_fuzz=1 ;;
        *) echo "test.sh: unknown preset '$2' (dev, tsan, asan, lint, fuzz)" >&2; exit 2 ;; esac
      shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1' (--preset NAME, --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((${#presets[@]} == 0 && run_fuzz == 0 && run_lint == 0)); then
  presets=(dev tsan asan)
  run_lint=1
  run_fuzz=1
fi

passed=0
failed=0
skipped=0
report=()
t_all=$SECONDS

# stage NAME COMMAND...: runs COMMAND, records PASS/FAIL with its duration.
stage() {
  local name="$1"; shift
  local t0=$SECONDS rc=0
  echo
  echo "==== [$name] $(date -u +%H:%M:%S)"
  "$@" || rc=$?
  local took=$((SECONDS - t0))
  if ((rc == 0)); then
    passed=$((passed + 1)); report+=("PASS  ${took}s  $name")
  else
    failed=$((failed + 1)); report+=("FAIL  ${took}s  $name (exit $rc)")
  fi
  return "$rc"
}
skip() {
  skipped=$((skipped + 1)); report+=("SKIP        $1 ($2)")
}

summary() {
  echo
  echo "==== summary ($((SECONDS - t_all)) s)"
  printf '  %s\n' "${report[@]}"
  if ((skipped)); then
    echo "$passed passed, $failed failed, $skipped skipped"
  else
    echo "$passed passed, $failed failed"
  fi
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
  run-clang-tidy-16 -p "$root/build/clang-tsa" -j2 -quiet "^$root_re/src/" || {
    echo "lint: clang-tidy-16 findings above (.clang-tidy makes each one an error)" >&2
    return 1
  }
}

if ((run_lint)); then
  stage "lint: format" lint_format
  if stage "lint: configure" lint_configure; then
    stage "lint: tidy" lint_tidy
    stage "lint: tsa build" cmake --build --preset clang-tsa -j2 --target stampede stampede_redis
  else
    skip "lint: tidy" "configure failed"; skip "lint: tsa build" "configure failed"
  fi
fi

dev_built=0
for p in "${presets[@]}"; do
  if ! stage "$p: configure" cmake --preset "$p"; then
    skip "$p: build" "configure failed"; skip "$p: test" "configure failed"; continue
  fi
  if ! stage "$p: build" cmake --build --preset "$p" -j2; then
    skip "$p: test" "build failed"; continue
  fi
  [[ "$p" == dev ]] && dev_built=1
  if ! stage "$p: test" ctest --preset "$p" -j2 --output-on-failure --timeout 600; then
    # Name the failed tests in the summary (ctest lists them as "<number>:<name>").
    failed_log="$root/build/$p/Testing/Temporary/LastTestsFailed.log"
    if [[ -f "$failed_log" ]]; then
      while IFS= read -r line; do report+=("        failed: ${line#*:}"); done < <(head -n 10 "$failed_log")
    fi
  fi
done

package_test() {
  "$root/tests/consumer/check_package.sh" "$root/build/dev" "$root/build/package-test"
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

if ((dev_built)); then
  stage package package_test
  stage demo demo_smoke
  stage "bench smoke" bench_smoke
elif [[ " ${presets[*]} " == *" dev "* ]]; then
  skip package "dev build failed"; skip demo "dev build failed"; skip "bench smoke" "dev build failed"
fi

if ((run_fuzz)); then
  if command -v clang++ >/dev/null; then
    stage fuzz "$root/scripts/fuzz.sh" --seconds 30
  else
    skip fuzz "clang++ not installed"
  fi
fi

summary
((failed == 0))
