#!/usr/bin/env bash
# Static checks: clang-format over every tracked C++ file, then clang-tidy (the repository's
# .clang-tidy) over the test and example translation units, which instantiate the headers.
#
#   tools/lint.sh [build-dir]    default: build/dev, as configured by `cmake --preset dev`
#
# clang-tidy reads the compile commands of <build-dir> (CMAKE_EXPORT_COMPILE_COMMANDS, on in every
# preset); the build itself need not have run. Fails on:
# - a file that clang-format would change;
# - any clang-tidy finding in include/supervisor/ (the headers are what users compile);
# - a translation unit that clang-tidy cannot compile or crashes on (its findings would be lost).
# Findings in the test and example files themselves are printed but do not fail.
#
# When run as root on a Debian-like system, installs clang-format and clang-tidy if missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_dir="${1:-build/dev}"

source tools/setup.sh
need_command clang-format clang-format
need_command clang-tidy clang-tidy
install_missing tools/lint.sh

# ---- clang-format ----

SECONDS=0
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -d '' sources < <(git ls-files -z -- '*.hpp' '*.cpp')
else # A source tarball: the same directories, without git.
  mapfile -d '' sources < <(find include tests examples bench -type f \
    \( -name '*.hpp' -o -name '*.cpp' \) -print0 2>/dev/null)
fi
if ((${#sources[@]} == 0)); then
  echo "tools/lint.sh: no C++ sources found" >&2
  exit 1
fi
clang-format --dry-run --Werror "${sources[@]}"
echo "clang-format: ${#sources[@]} files formatted (${SECONDS}s)"

# ---- clang-tidy ----

SECONDS=0
compile_commands="${build_dir}/compile_commands.json"
if [[ ! -f "${compile_commands}" ]]; then
  echo "tools/lint.sh: ${compile_commands} not found; configure first: cmake --preset dev" >&2
  exit 1
fi

# The translation units to check: ours only (not CMake's generated header checks, not Catch2's
# main), as the compile database names them (under the source directory that build was made from).
source_dir="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "${build_dir}/CMakeCache.txt")"
units=()
while IFS= read -r file; do
  case "${file}" in
    "${source_dir}"/tests/*_test.cpp | "${source_dir}"/examples/*.cpp) units+=("${file}") ;;
  esac
done < <(sed -n 's/^ *"file": "\(.*\)",\{0,1\}$/\1/p' "${compile_commands}")
if ((${#units[@]} == 0)); then
  echo "tools/lint.sh: no test or example sources in ${compile_commands}" >&2
  exit 1
fi

logs="$(mktemp -d)"
trap 'rm -rf "${logs}"' EXIT

# Findings are warnings here (--warnings-as-errors='-*' cancels the config's '*'), so a non-zero
# exit means a compile error or a crash. The compile commands are GCC's: clang does not know
# some of its warning options (-Wno-maybe-uninitialized), hence -Wno-unknown-warning-option.
# One log per unit, so the two parallel runs do not interleave; a failed unit gets a .failed mark.
tidy_status=0
# shellcheck disable=SC2016 # The sh -c script expands its own arguments.
printf '%s\0' "${units[@]}" |
  xargs -0 -P 2 -I '{}' sh -c '
    log="$3/$(printf "%s" "$2" | tr / _).log"
    clang-tidy -p "$1" --quiet --header-filter="/include/supervisor/" --warnings-as-errors="-*" \
      --extra-arg=-Wno-unknown-warning-option "$2" >"${log}" 2>&1 || {
      echo "clang-tidy exited with status $? on $2" | tee -a "${log}" >&2
      touch "${log}.failed"
      exit 1
    }' sh "${build_dir}" '{}' "${logs}" || tidy_status=$?

# The same header finding shows up once per unit that includes the header: print each once.
# (Errors are compile errors, shown below with their unit's log.)
findings="$(cat "${logs}"/*.log | grep -E '^[^ :]+:[0-9]+:[0-9]+: warning: ' | sort -u || true)"
header_findings="$(grep -E '^[^:]*/include/supervisor/' <<<"${findings}" || true)"
other_findings="$(grep -vE '^[^:]*/include/supervisor/' <<<"${findings}" || true)"

if [[ -n "${other_findings}" ]]; then
  echo "clang-tidy: findings in the tests and examples (not fatal):"
  echo "${other_findings}"
fi
if ((tidy_status != 0)); then
  echo "clang-tidy: could not check every translation unit:" >&2
  for mark in "${logs}"/*.failed; do
    [[ -e "${mark}" ]] || continue
    grep -vE '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$' "${mark%.failed}" >&2 || true
  done
  exit 1
fi
if [[ -n "${header_findings}" ]]; then
  echo "clang-tidy: findings in include/supervisor/:" >&2
  echo "${header_findings}" >&2
  exit 1
fi
echo "clang-tidy: ${#units[@]} translation units, no findings in include/supervisor/ (${SECONDS}s)"
