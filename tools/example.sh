#!/usr/bin/env bash
# Build one example and run it (default: the quickstart, in demo mode: about two seconds).
#
#   tools/example.sh                          # quickstart --demo
#   tools/example.sh quickstart               # runs until Ctrl-C
#   tools/example.sh directory_table --demo   # any example, any arguments
#
# Examples: quickstart, directory_table, composition, sqlite_table (needs libsqlite3-dev).
# When run as root on a Debian-like system, installs the missing build tools first.
set -euo pipefail

example="${1:-quickstart}"
if (($# > 1)); then
  args=("${@:2}")
elif (($# == 1)); then
  args=()
else
  args=(--demo)
fi

# Debian package names of whatever is missing.
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
if [[ "${example}" == sqlite_table ]] && command -v dpkg >/dev/null 2>&1; then
  dpkg -s libsqlite3-dev >/dev/null 2>&1 || missing+=(libsqlite3-dev)
fi

if ((${#missing[@]} > 0)); then
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "tools/example.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
  else
    echo "tools/example.sh: missing packages: ${missing[*]}" >&2
    echo "  install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=build/example
# The tests are not needed here (nor Catch2): only the library and the examples.
cmake -S . -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSUPERVISOR_BUILD_TESTS=OFF \
  -DSUPERVISOR_BUILD_EXAMPLES=ON >/dev/null
cmake --build "${build}" --target "supervisor_example_${example}"
echo
exec "${build}/examples/${example}" "${args[@]}"
