#!/usr/bin/env bash
# Configure, build and test supervisor with one CMake workflow preset (default: "test").
#
#   tools/test.sh [test|tsan-gcc|tsan-clang|asan-gcc|asan-clang]
#
# When run as root on a Debian-like system, installs the missing build tools first.
set -euo pipefail

preset="${1:-test}"

source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
need_command cmake cmake
need_command ninja ninja-build
need_command g++ g++
need_command clang++ clang
need_package catch2
need_package libsqlite3-dev   # for examples/sqlite_table.cpp, which the build skips without it
need_package libpq-dev        # for supervisor::postgres, which the build skips without it
need_package libasio-dev      # for examples/asio_sessions.cpp, which the build skips without it
need_package postgresql       # initdb + pg_ctl: the postgres tests start a throwaway server
need_package libclang-rt-dev  # clang's sanitizer runtimes: only a Recommends of clang on Debian 12
install_missing tools/test.sh

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cmake --workflow --preset "${preset}"
