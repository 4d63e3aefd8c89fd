#!/usr/bin/env bash
# tests/consumer/check_package.sh: checks stampede as a package, the way downstream projects use it.
# scripts/test.sh runs it as its "package" stage:
#
#   tests/consumer/check_package.sh BUILD_DIR WORK_DIR
#
# BUILD_DIR is a configured and built stampede with the Redis backend (build/dev: static libraries).
# WORK_DIR is emptied, except WORK_DIR/shared-build (an incremental build, kept between runs).
# Each check prints "---- name" and stops the script at the first failure:
#   static install   cmake --install BUILD_DIR; tests/consumer (find_package, COMPONENTS redis) builds
#                    and runs against it; version.hpp, redis/ headers and the .pc files are there
#   pkg-config       main.cpp / redis_main.cpp compiled and linked with `pkg-config --cflags --libs
#                    stampede` / `stampede-redis` of that install, and run
#   build tree       tests/consumer against BUILD_DIR itself (stampede_DIR=BUILD_DIR: export())
#   shared           the libraries alone with BUILD_SHARED_LIBS=ON (no tests, demos, benchmarks),
#                    installed; versioned .so files with their SONAME; tests/consumer and pkg-config
#                    build against them and run on them
#   components       find_package(stampede COMPONENTS bogus) fails, naming the component; a stampede
#                    configured (not built) without Redis and Asio installs no redis/ headers and no
#                    asio.hpp (component stampede_development) and its build tree's
#                    find_package(stampede COMPONENTS redis) (or asio) fails, saying what it was
#                    built without
# With the Asio layer in BUILD_DIR, the static install and build-tree checks also build and run
# consumer_asio (find_package(stampede COMPONENTS asio)).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[[ $# -eq 2 ]] || { echo "usage: $0 BUILD_DIR WORK_DIR" >&2; exit 2; }
build="$(cd "$1" && pwd)"
work="$2"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
find "$work" -mindepth 1 -maxdepth 1 ! -name shared-build -exec rm -rf {} +

cxx="${CXX:-c++}"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
build_type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")"
build_type="${build_type:-RelWithDebInfo}"
# What is checked here is the packaging (install, find_package, pkg-config, sonames), not the code:
# the builds this script makes compile without optimisation or debug information, for speed. NDEBUG
# stays as in BUILD_DIR's build type.
ndebug=-DNDEBUG
[[ "$build_type" == Debug ]] && ndebug=
fast=("-DCMAKE_CXX_FLAGS_${build_type^^}=-O0 $ndebug")

step() { echo; echo "---- $*"; }
fail() { echo "check_package: $*" >&2; exit 1; }

# consumer NAME CMAKE_ARGS...: configures, builds and runs tests/consumer in WORK_DIR/NAME.
consumer() {
  local name="$1"; shift
  cmake -S "$here" -B "$work/$name" -DCMAKE_BUILD_TYPE="$build_type" "${fast[@]}" "${launcher[@]}" "$@"
  cmake --build "$work/$name" -j2
  "$work/$name/consumer"
  if [[ -x "$work/$name/consumer_redis" ]]; then "$work/$name/consumer_redis"; fi
  if [[ -x "$work/$name/consumer_asio" ]]; then "$work/$name/consumer_asio"; fi
}

# The Asio layer is checked when BUILD_DIR has it (standalone Asio was found).
with_asio=()
grep -q '^STAMPEDE_ASIO_INCLUDE_DIR:PATH=/' "$build/CMakeCache.txt" && with_asio=(-DCONSUMER_WITH_ASIO=ON)

# pkgconfig_consumer PREFIX OUT_NAME: builds main.cpp (and redis_main.cpp, if stampede-redis.pc is
# installed) with pkg-config's flags only, and runs them.
pkgconfig_consumer() {
  local prefix="$1" name="$2" pcdir version
  pcdir="$(dirname "$(find "$prefix" -name stampede.pc -print -quit)")"
  [[ -f "$pcdir/stampede.pc" ]] || fail "no stampede.pc under $prefix"
  export PKG_CONFIG_PATH="$pcdir"
  echo "pkg-config --cflags --libs stampede: $(pkg-config --cflags --libs stampede)"
  version="$(pkg-config --modversion stampede)"
  # shellcheck disable=SC2046  # pkg-config's output is a list of flags
  "$cxx" -std=c++20 -O0 -DCONSUMER_PACKAGE_VERSION="\"$version\"" "$here/main.cpp" -o "$work/$name" \
    $(pkg-config --cflags --libs stampede)
  "$work/$name"
  if [[ -f "$pcdir/stampede-redis.pc" ]]; then
    echo "pkg-config --cflags --libs stampede-redis: $(pkg-config --cflags --libs stampede-redis)"
    # shellcheck disable=SC2046
    "$cxx" -std=c++20 -O0 "$here/redis_main.cpp" -o "$work/$name-redis" $(pkg-config --cflags --libs stampede-redis)
    "$work/$name-redis"
  fi
  unset PKG_CONFIG_PATH
}

# expect_configure_failure NAME MESSAGE_REGEX CMAKE_ARGS...: tests/consumer must fail to configure,
# saying MESSAGE_REGEX.
expect_configure_failure() {
  local name="$1" regex="$2"; shift 2
  local log="$work/$name.log"
  if cmake -S "$here" -B "$work/$name" "$@" >"$log" 2>&1; then
    cat "$log"; fail "$name: configuring succeeded; expected a failure saying '$regex'"
  fi
  # CMake wraps long messages: match on the log with its line breaks and indentation folded.
  tr -s ' \n' '  ' <"$log" | grep -Eq "$regex" || { cat "$log"; fail "$name: the failure does not say '$regex'"; }
  echo "$name: fails as expected, saying: $(tr -s ' \n' '  ' <"$log" | grep -Eo "Reason given by package: .*" | sed 's/ -- .*//')"
}

step "static install ($build -> $work/static)"
cmake --install "$build" --prefix "$work/static"
for f in include/stampede/version.hpp include/stampede/stampede.hpp include/stampede/redis/redis.hpp; do
  [[ -f "$work/static/$f" ]] || fail "not installed: $f"
done
consumer static-consumer -DCMAKE_PREFIX_PATH="$work/static" -DCONSUMER_WITH_REDIS=ON "${with_asio[@]}"

step "pkg-config (static install)"
pkgconfig_consumer "$work/static" pc-static

step "build tree ($build)"
consumer build-tree-consumer -Dstampede_DIR="$build" -DCONSUMER_WITH_REDIS=ON "${with_asio[@]}"

step "shared (BUILD_SHARED_LIBS=ON, libraries only)"
cmake -S "$root" -B "$work/shared-build" -DCMAKE_BUILD_TYPE="$build_type" "${fast[@]}" "${launcher[@]}" \
  -DBUILD_SHARED_LIBS=ON -DSTAMPEDE_WERROR=ON -DSTAMPEDE_BUILD_TESTS=OFF -DSTAMPEDE_BUILD_DEMOS=OFF \
  -DSTAMPEDE_BUILD_BENCHMARKS=OFF
cmake --build "$work/shared-build" -j2
cmake --install "$work/shared-build" --prefix "$work/shared"
version="$(sed -n 's/^#define STAMPEDE_VERSION_STRING "\(.*\)"$/\1/p' "$work/shared/include/stampede/version.hpp")"
soversion="$(sed -n 's/^CMAKE_PROJECT_VERSION:[A-Z]*=//p' "$work/shared-build/CMakeCache.txt")"
[[ "$soversion" == 0.* ]] && soversion="${soversion%.*}" || soversion="${soversion%%.*}"
for lib in stampede stampede_redis; do
  so="$(find "$work/shared" -name "lib$lib.so.$version" -print -quit)"
  [[ -n "$so" ]] || fail "not installed: lib$lib.so.$version"
  libdir="$(dirname "$so")"
  [[ "$(readlink "$libdir/lib$lib.so")" == "lib$lib.so.$soversion" ]] || fail "lib$lib.so is no link to .so.$soversion"
  [[ "$(readlink "$libdir/lib$lib.so.$soversion")" == "lib$lib.so.$version" ]] || fail "lib$lib.so.$soversion is no link to .so.$version"
  objdump -p "$so" | grep -q "SONAME *lib$lib.so.$soversion\$" || fail "lib$lib.so.$version: SONAME is not lib$lib.so.$soversion"
  echo "lib$lib.so -> lib$lib.so.$soversion -> lib$lib.so.$version (SONAME lib$lib.so.$soversion)"
done
consumer shared-consumer -DCMAKE_PREFIX_PATH="$work/shared" -DCONSUMER_WITH_REDIS=ON -DCONSUMER_EXPECT_SHARED=ON
ldd "$work/shared-consumer/consumer_redis" | grep -E "libstampede(_redis)?\.so" ||
  fail "consumer_redis does not load the shared libraries"
ldd "$work/shared-consumer/consumer_redis" | grep -q "libstampede_redis.so.$soversion => $work/shared" ||
  fail "consumer_redis does not load libstampede_redis from $work/shared"
LD_LIBRARY_PATH="$libdir" pkgconfig_consumer "$work/shared" pc-shared

step "components"
expect_configure_failure unknown-component "stampede has no component 'bogus'" \
  -DCMAKE_PREFIX_PATH="$work/static" -DCONSUMER_COMPONENTS=bogus
cmake -S "$root" -B "$work/no-redis-build" -DCMAKE_BUILD_TYPE="$build_type" "${launcher[@]}" \
  -DSTAMPEDE_WITH_REDIS=OFF -DSTAMPEDE_WITH_ASIO=OFF -DSTAMPEDE_BUILD_TESTS=OFF -DSTAMPEDE_BUILD_DEMOS=OFF \
  -DSTAMPEDE_BUILD_BENCHMARKS=OFF >"$work/no-redis-build.log"
expect_configure_failure no-redis-component "built without its Redis backend" \
  -Dstampede_DIR="$work/no-redis-build" -DCONSUMER_WITH_REDIS=ON
expect_configure_failure no-asio-component "built without its Asio layer" \
  -Dstampede_DIR="$work/no-redis-build" -DCONSUMER_WITH_ASIO=ON
# Its install, less the (unbuilt) library files: no redis/ headers, no stampede-redis.pc.
cmake --install "$work/no-redis-build" --prefix "$work/no-redis" --component stampede_development >/dev/null
[[ -f "$work/no-redis/include/stampede/stampede.hpp" && -f "$work/no-redis/include/stampede/version.hpp" ]] ||
  fail "a build without Redis does not install the headers"
[[ ! -e "$work/no-redis/include/stampede/redis" ]] || fail "a build without Redis installs include/stampede/redis"
[[ ! -e "$work/no-redis/include/stampede/asio.hpp" ]] || fail "a build without Asio installs include/stampede/asio.hpp"
[[ -n "$(find "$work/no-redis" -name stampede.pc)" && -z "$(find "$work/no-redis" -name stampede-redis.pc)" ]] ||
  fail "a build without Redis: expected stampede.pc and no stampede-redis.pc"
echo "a build without Redis installs no include/stampede/redis and no stampede-redis.pc"

echo
echo "check_package: all checks passed"
