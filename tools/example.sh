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

source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
need_command cmake cmake
need_command ninja ninja-build
need_command g++ g++
if [[ "${example}" == sqlite_table ]]; then
  need_package libsqlite3-dev
fi
install_missing tools/example.sh

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=build/example
# The tests are not needed here (nor Catch2): only the library and the examples.
cmake -S . -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSUPERVISOR_BUILD_TESTS=OFF \
  -DSUPERVISOR_BUILD_EXAMPLES=ON >/dev/null
cmake --build "${build}" --target "supervisor_example_${example}"
echo
exec "${build}/examples/${example}" "${args[@]}"
