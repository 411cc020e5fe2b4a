#!/usr/bin/env bash
# coroutines-side-by-side.sh: the coroutine rows of supervisor_bench (`--only=coroutines`) and the
# Go original's lifecycle and start+stop scenarios (go.pact.im/x/supervisor, built from
# ../shared/go-anchor), run alternately on this machine at the same number of processes, then one
# table of both. The counterpart of go-anchor's run-side-by-side.sh, which has no coroutine rows.
#
#   bench/coroutines-side-by-side.sh [--processes=N] [--rounds=N] [--heap-huge-pages]
#
# Defaults: 1,000,000 processes, 2 rounds (each round: C++, Go lifecycle, Go start+stop). Needs
# Go (Debian: golang-go) and the go-anchor sources laid out as its README says.
# --heap-huge-pages runs the C++ side (library and floor alike) with glibc's heap on transparent
# huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.top_pad=64 MiB), as a service
# at this scale may run; Go's runtime is left as it is.
#
# Environment:
#   GO_ANCHOR  the go-anchor directory (default: ../shared/go-anchor beside the project root)
#   WORK_DIR   builds and raw outputs (default: a new temporary directory)
#   CXX        the C++ compiler (default g++)
#
# Rows: the Go original has one kind of process (goroutines), so each C++ coroutine row is set
# beside the Go row that measures the same thing: restore, resident memory (Go's KiB turned into
# bytes), the restart pass end to end (cold), shutdown, and the start+stop cycle (Go's at 10,000
# processes, its own scenario, for both of our cycle rows). Run it on a quiet machine: a figure
# measured beside a compile is not a figure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
processes=1000000
rounds=2
heap_huge_pages=0
for arg in "$@"; do
  case "$arg" in
    --processes=*) processes=${arg#--processes=} ;;
    --rounds=*) rounds=${arg#--rounds=} ;;
    --heap-huge-pages) heap_huge_pages=1 ;;
    -h | --help)
      sed -n '2,24p' "$0"
      exit 0
      ;;
    *)
      echo "coroutines-side-by-side.sh: unknown argument $arg" >&2
      exit 2
      ;;
  esac
done
[[ "$processes" =~ ^[1-9][0-9]*$ ]] || { echo "bad --processes=$processes" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bad --rounds=$rounds" >&2; exit 2; }
command -v go >/dev/null || { echo "coroutines-side-by-side.sh: no go (apt-get install golang-go)" >&2; exit 1; }

GO_ANCHOR=${GO_ANCHOR:-$root/../shared/go-anchor}
GO_ANCHOR=$(cd "$GO_ANCHOR" && pwd)
src=$GO_ANCHOR/go-src
for m in go-pkg/clock go-pkg/process go-pkg/supervisor go-pkg/syncx go-pkg/task atomic multierr; do
  [[ -f "$src/$m/go.mod" ]] || { echo "coroutines-side-by-side.sh: $src/$m/go.mod missing" >&2; exit 1; }
done
WORK_DIR=${WORK_DIR:-$(mktemp -d)}
mkdir -p "$WORK_DIR"
echo "== work dir: $WORK_DIR"
echo "== C++ source: $root ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))"

# ---- build Go ----
go_dir=$WORK_DIR/go-bench
rm -rf "$go_dir"
mkdir -p "$go_dir"
cp "$GO_ANCHOR/go-bench/main.go" "$GO_ANCHOR/go-bench/go.mod" "$go_dir/"
cat >>"$go_dir/go.mod" <<EOF

replace (
	go.pact.im/x/clock => $src/go-pkg/clock
	go.pact.im/x/process => $src/go-pkg/process
	go.pact.im/x/supervisor => $src/go-pkg/supervisor
	go.pact.im/x/syncx => $src/go-pkg/syncx
	go.pact.im/x/task => $src/go-pkg/task
	go.uber.org/atomic => $src/atomic
	go.uber.org/multierr => $src/multierr
)
EOF
export GOPROXY=off GOSUMDB=off GOFLAGS=-mod=mod GOWORK=off GOTOOLCHAIN=local
export GOPATH=${GOPATH:-$WORK_DIR/gopath} GOCACHE=${GOCACHE:-$WORK_DIR/gocache}
echo "== building Go ($(go version))"
(cd "$go_dir" && go build -trimpath -o go-bench .)

# ---- build C++ ----
build=$WORK_DIR/cpp-build
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
echo "== building C++ ($(${CXX:-g++} --version | head -1))"
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="${CXX:-g++}" -DSUPERVISOR_BUILD_BENCHMARKS=ON \
  -DSUPERVISOR_BUILD_TESTS=OFF -DSUPERVISOR_BUILD_EXAMPLES=OFF >"$WORK_DIR/configure.log"
cmake --build "$build" --target supervisor_bench >"$WORK_DIR/build.log"

# ---- run, alternating ----
runs=$WORK_DIR/runs
mkdir -p "$runs"
cpp_env=()
if ((heap_huge_pages)); then
  # hugetlb=1: malloc asks for transparent huge pages on what it maps (the kernel's `madvise`
  # mode); top_pad: it grows its heap 64 MiB ahead, so that new pages lie in whole 2 MiB ranges.
  cpp_env=("GLIBC_TUNABLES=${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1:glibc.malloc.top_pad=67108864")
  echo "== C++ runs with ${cpp_env[0]}"
fi
echo "== load before: $(uptime)"
for ((round = 1; round <= rounds; round++)); do
  echo "== round $round of $rounds"
  env "${cpp_env[@]}" "$build/bench/supervisor_bench" --only=coroutines --co-processes="$processes" --reps=1 \
    >"$runs/$round-cpp.txt" 2>&1 || echo "   C++ run failed: $runs/$round-cpp.txt"
  "$go_dir/go-bench" --only=lifecycle --processes="$processes" --reps=1 \
    >"$runs/$round-go-lifecycle.txt" 2>&1 || echo "   Go lifecycle failed: $runs/$round-go-lifecycle.txt"
  "$go_dir/go-bench" --only=start_stop --reps=1 \
    >"$runs/$round-go-start-stop.txt" 2>&1 || echo "   Go start+stop failed: $runs/$round-go-start-stop.txt"
done
echo "== load after: $(uptime)"

# ---- one table ----
python3 - "$runs" "$processes" <<'PY'
import glob, json, os, statistics, sys

runs, processes = sys.argv[1], int(sys.argv[2])

def rows(pattern):
    out = {}
    for path in sorted(glob.glob(os.path.join(runs, pattern))):
        lines = [l for l in open(path, errors="replace") if l.startswith("{")]
        if not lines:
            print(f"   {os.path.basename(path)}: no JSON line (failed run), left out")
            continue
        doc = json.loads(lines[-1])
        for r in doc["results"]:
            if r.get("median") is not None:
                out.setdefault(r["name"], []).append(r)
    return out

cpp = rows("*-cpp.txt")
go = rows("*-go-lifecycle.txt")
for name, got in rows("*-go-start-stop.txt").items():
    go.setdefault(name, []).extend(got)

def figures(table, name, scale=1.0):
    return [r["median"] * scale for r in table.get(name, [])]

def fmt(values):
    return ", ".join(f"{v:.3g}" for v in values) if values else "-"

spec = [  # C++ row, its Go counterpart, Go's scale into the C++ unit
    ("co_restore", "restore", 1.0),
    ("co_memory", "memory_per_process", 1024.0),
    ("co_restart_pass", "restart_pass_end_to_end", 1.0),
    ("co_shutdown", "shutdown", 1.0),
    ("co_start_stop_pool", "start_stop_cycle", 1.0),
    ("co_start_stop_outside", "start_stop_cycle", 1.0),
    ("co_start_stop_pool_one_key", "start_stop_cycle", 1.0),
    ("co_start_stop_outside_one_key", "start_stop_cycle", 1.0),
]
print(f"\n{processes:,} processes; figures are each run's median, in run order")
print(f"{'row':30} {'unit':14} {'C++':>16} {'floor':>16} {'Go':>16} {'C++ / Go':>9}")
for cpp_name, go_name, scale in spec:
    ours = figures(cpp, cpp_name)
    floor = [r["floor_median"] for r in cpp.get(cpp_name, []) if r.get("floor_median")]
    theirs = figures(go, go_name, scale)
    unit = cpp[cpp_name][0]["unit"] if cpp.get(cpp_name) else ""
    ratio = (f"{statistics.median(ours) / statistics.median(theirs):.2f}"
             if ours and theirs else "-")
    print(f"{cpp_name:30} {unit:14} {fmt(ours):>16} {fmt(floor):>16} {fmt(theirs):>16} {ratio:>9}")
print("\nThe machine in each C++ run, before and after it (the VM's mode moves the rows that hand"
      " work between threads\nand those that touch new memory):")
for path in sorted(glob.glob(os.path.join(runs, "*-cpp.txt"))):
    lines = [l for l in open(path, errors="replace") if l.startswith("{")]
    doc = json.loads(lines[-1]) if lines else {}
    trip, touch = doc.get("line_round_trip_ns"), doc.get("first_touch_ns")
    if trip and touch:
        tunables = doc.get("glibc_tunables", "none")
        print(f"  {os.path.basename(path)}: cache line round trip {trip[0]:.0f} and {trip[1]:.0f} ns,"
              f" first touch {touch[0]:.0f} and {touch[1]:.0f} ns per 4 KiB page"
              + ("" if tunables == "none" else f", GLIBC_TUNABLES={tunables}"))
print("\nGo's start+stop cycle starts and stops one key over and over in a supervisor of its own,"
      " with no other process;\nthe C++ rows do so with the million processes live, on a fresh"
      " key each cycle or (one_key) on one key.\nC++ / Go below 1 is faster than Go.")
PY
