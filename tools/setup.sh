# Sourced by the scripts in tools/: installs the Debian packages a script needs, when missing.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
#   need_command cmake cmake        # a command, and the package that provides it
#   need_package catch2             # a package (checked with dpkg, where there is one)
#   install_missing "tools/test.sh" # installs them as root with apt-get, else says what to run
#
# One place for the package installs, so CI (.ci/run) and a newcomer's first run agree.

setup_missing=()

need_command() {
  command -v "$1" >/dev/null 2>&1 || setup_missing+=("$2")
}

need_package() {
  if command -v dpkg >/dev/null 2>&1; then
    dpkg -s "$1" >/dev/null 2>&1 || setup_missing+=("$1")
  fi
}

install_missing() {
  local who="$1"
  if ((${#setup_missing[@]} == 0)); then
    return 0
  fi
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "${who}: installing ${setup_missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${setup_missing[@]}"
  else
    echo "${who}: missing packages: ${setup_missing[*]}" >&2
    echo "  install them with: sudo apt-get install ${setup_missing[*]}" >&2
    exit 1
  fi
  setup_missing=()
}
