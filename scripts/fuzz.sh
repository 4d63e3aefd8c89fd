#!/usr/bin/env bash
# scripts/fuzz.sh: builds the libFuzzer targets (the `fuzz` preset: clang++, ASan + UBSan) and runs
# each on its seed corpus for a bounded time. Exits non-zero if a fuzzer finds a crash.
#
#   scripts/fuzz.sh                          # 30 s per fuzzer, the fuzzers side by side
#   scripts/fuzz.sh --seconds 3600           # a longer run (the corpus grows in build/fuzz/work/)
#   scripts/fuzz.sh --fuzzer cache_ops_fuzzer --seconds 600
#   scripts/fuzz.sh --build-only
#
# Fuzzers: parse_url_fuzzer (stampede::redis::parse_url), cache_ops_fuzzer (Cache<std::string> over
# the memory backend against a reference model), cache_combo_fuzzer (fail-safe, negative caching,
# loader timeouts, cancellation, another writer and a lagging near cache in one sequence, with
# helper threads, against a model), redis_entry_fuzzer (the Redis store's value-hash
# decoder against a reference decoder, then the JSON codec), redis_reply_fuzzer (the conversion of
# hiredis reply trees); see the comment at the top of each source. They run side by side, so the
# run takes about --seconds whatever their number.
# Each runs on build/fuzz/work/<fuzzer>/ (new inputs go there) plus the committed seeds in
# fuzz/corpus/<fuzzer>/ (read only). A crash is saved as build/fuzz/artifacts/<fuzzer>/crash-*;
# minimise it with
#   build/fuzz/fuzz/<fuzzer> -minimize_crash=1 -max_total_time=60 <crash file>
# and keep the minimised input under fuzz/crashes/<fuzzer>/ (never run by this script). Replay one
# input: build/fuzz/fuzz/<fuzzer> <file>.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1

seconds=30
build_only=0
fuzzers=()
all_fuzzers=(parse_url_fuzzer cache_ops_fuzzer cache_combo_fuzzer redis_entry_fuzzer redis_reply_fuzzer)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds)
      [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --seconds needs a positive integer" >&2; exit 2; }
      seconds="$2"; shift ;;
    --fuzzer)
      [[ $# -ge 2 && " ${all_fuzzers[*]} " == *" $2 "* ]] ||
        { echo "fuzz.sh: --fuzzer needs one of: ${all_fuzzers[*]}" >&2; exit 2; }
      fuzzers+=("$2"); shift ;;
    --build-only) build_only=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (--seconds N, --fuzzer NAME, --build-only, --help)" >&2; exit 2 ;;
  esac
  shift
done
((${#fuzzers[@]})) || fuzzers=("${all_fuzzers[@]}")

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 1; }
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake --preset fuzz "${launcher[@]}" >/dev/null || { echo "fuzz.sh: configure failed" >&2; exit 1; }
nice cmake --build --preset fuzz -j2 --target "${fuzzers[@]}" || { echo "fuzz.sh: build failed" >&2; exit 1; }
((build_only)) && exit 0

out="$root/build/fuzz"
pids=()
for f in "${fuzzers[@]}"; do
  mkdir -p "$out/work/$f" "$out/artifacts/$f" "$out/logs"
  extra=()
  [[ -f "fuzz/$f.dict" ]] && extra+=("-dict=fuzz/$f.dict")
  "$out/fuzz/$f" "$out/work/$f" "fuzz/corpus/$f" "${extra[@]}" \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$f/" >"$out/logs/$f.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!fuzzers[@]}"; do
  f="${fuzzers[$i]}"
  if wait "${pids[$i]}"; then
    echo "fuzz: $f: $(grep -E '^stat::number_of_executed_units' "$out/logs/$f.log" | awk '{print $2}') runs in ${seconds}s, no crash"
  else
    failed=1
    echo "fuzz: $f FAILED; log: $out/logs/$f.log; input: $(ls -t "$out/artifacts/$f/" | head -1)" >&2
    grep -E 'invariant violated|ERROR: |SUMMARY|parse_url_fuzzer:' "$out/logs/$f.log" | head -5 >&2
  fi
done
exit "$failed"
