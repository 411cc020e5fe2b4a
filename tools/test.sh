#!/usr/bin/env bash
# Configure, build and test supervisor with one CMake workflow preset (default: "test").
#
#   tools/test.sh [test|tsan-gcc|tsan-clang|asan-gcc|asan-clang]
#
# When run as root on a Debian-like system, installs the missing build tools first.
set -euo pipefail

preset="${1:-test}"

# Debian package names of whatever is missing.
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v clang++ >/dev/null 2>&1 || missing+=(clang)
if command -v dpkg >/dev/null 2>&1; then
  dpkg -s catch2 >/dev/null 2>&1 || missing+=(catch2)
  # For examples/sqlite_table.cpp, which the build skips without it.
  dpkg -s libsqlite3-dev >/dev/null 2>&1 || missing+=(libsqlite3-dev)
  # Clang's sanitizer runtimes are only a Recommends of clang on Debian 12.
  dpkg -s libclang-rt-dev >/dev/null 2>&1 || missing+=(libclang-rt-dev)
fi

if ((${#missing[@]} > 0)); then
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "tools/test.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
  else
    echo "tools/test.sh: missing packages: ${missing[*]}" >&2
    echo "  install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cmake --workflow --preset "${preset}"
