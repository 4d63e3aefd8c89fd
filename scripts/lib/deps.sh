# shellcheck shell=bash
# scripts/lib/deps.sh: makes sure the Debian packages stampede needs are installed.
#
# Source it, then call stampede_ensure_deps:
#   source "$root/scripts/lib/deps.sh"
#   stampede_ensure_deps || exit 1
#
# Missing packages are installed with apt-get when running as root; otherwise the exact apt-get
# command to run is printed and the function returns non-zero. On a system without dpkg (not
# Debian/Ubuntu) it only checks that the needed commands exist and says what it could not check.

STAMPEDE_DEBIAN_PACKAGES=(
  cmake g++ make pkg-config          # toolchain
  ccache mold                        # build speed: compiler cache, fast linker (cmake/StampedeBuildSpeed.cmake)
  nlohmann-json3-dev                 # core dependency
  libgtest-dev libbenchmark-dev      # tests and benchmarks
  libhiredis-dev redis-server        # Redis backend and its integration tests
  gnuplot-nox                        # benchmark plots
  jq                                 # JSON checks in scripts/test.sh
  libcli11-dev                       # command-line flags of the demos and the soak worker (header-only)
  libasio-dev                        # standalone Asio: the optional async layer stampede::asio (header-only)
  clang libclang-rt-14-dev           # the fuzz stage (libFuzzer) and the clang thread-safety build
  clang-format-16 clang-tidy-16      # the lint stages of scripts/test.sh (pinned: the tree is formatted with 16)
)

# Prints the packages from STAMPEDE_DEBIAN_PACKAGES that are not installed, one per line.
stampede_missing_packages() {
  local pkg status
  for pkg in "${STAMPEDE_DEBIAN_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "installed" ]] || echo "$pkg"
  done
}

stampede_ensure_deps() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    local cmd missing_cmds=()
    for cmd in cmake g++ make pkg-config redis-server jq; do
      command -v "$cmd" >/dev/null 2>&1 || missing_cmds+=("$cmd")
    done
    if ((${#missing_cmds[@]})); then
      echo "deps: not a Debian system (no dpkg-query) and these commands are missing: ${missing_cmds[*]}" >&2
      echo "deps: install the equivalents of: ${STAMPEDE_DEBIAN_PACKAGES[*]}" >&2
      return 1
    fi
    echo "deps: not a Debian system; found the commands, assuming the libraries are installed" >&2
    return 0
  fi

  local missing=()
  mapfile -t missing < <(stampede_missing_packages)
  if ((${#missing[@]} == 0)); then
    echo "deps: all ${#STAMPEDE_DEBIAN_PACKAGES[@]} Debian packages are installed"
    return 0
  fi

  echo "deps: missing Debian packages: ${missing[*]}"
  if [[ "$(id -u)" -eq 0 ]]; then
    echo "deps: installing them with apt-get"
    if ! (export DEBIAN_FRONTEND=noninteractive
          apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"); then
      echo "deps: apt-get failed" >&2
      return 1
    fi
    mapfile -t missing < <(stampede_missing_packages)
    if ((${#missing[@]})); then
      echo "deps: still missing after apt-get: ${missing[*]}" >&2
      return 1
    fi
    echo "deps: installed"
    return 0
  fi

  echo "deps: not running as root; install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  return 1
}

# Optional packages: the peer programs of scripts/bench.sh --peers (benchmarks/peers/). Neither
# stampede_ensure_deps nor scripts/test.sh installs them.
# shellcheck disable=SC2034  # used by scripts/bench.sh
STAMPEDE_PEER_GO_PACKAGES=(golang-go golang-golang-x-sync-dev)
# shellcheck disable=SC2034  # used by scripts/bench.sh
STAMPEDE_PEER_JAVA_PACKAGES=(openjdk-17-jdk-headless libcaffeine-java)

# stampede_offer_packages PKG...: installs the missing PKGs with apt-get when running as root and
# either STAMPEDE_INSTALL_OPTIONAL=1 is set or the user says yes on a terminal. Returns 0 when it
# installed them, 1 when it did not (the caller says what is missing and how to install it).
stampede_offer_packages() {
  local pkg status missing=()
  if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "$@"; do
      status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
      [[ "$status" == "installed" ]] || missing+=("$pkg")
    done
  else
    missing=("$@")
  fi
  ((${#missing[@]})) || return 1  # installed, yet the caller did not find what it needs
  local line="apt-get install -y --no-install-recommends ${missing[*]}"
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    local answer="${STAMPEDE_INSTALL_OPTIONAL:-}"
    if [[ "$answer" != 1 && -t 0 ]]; then
      read -r -p "deps: install ${missing[*]} now (${line})? [y/N] " answer || answer=""
    fi
    if [[ "$answer" == 1 || "$answer" == [yY]* ]]; then
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
          "${missing[@]}"; } >/dev/null 2>&1 && return 0
      echo "deps: apt-get failed for ${missing[*]}"
    fi
  fi
  return 1
}
