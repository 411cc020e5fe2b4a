// The harness's side of the contract with the scenarios. A scenario receives the `Config` (sizes,
// repetitions, slices, set from the command line), measures the library and its floor side by
// side, one `Paired` sample per repetition, and hands back `Row`s built by `paired_row`, which
// reduces the samples to medians and the per-repetition ratios to theirs. The harness
// (harness.cpp) parses the command line, runs the scenarios in order and collects their failures;
// report.cpp prints the rows: the table for people, the comparison with the Go original, and the
// one line of JSON for machines.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"

namespace bench {

// ---- configuration -------------------------------------------------------------------------

/// Which side of the start+stop scenario runs (profiling only: `--side=`).
enum class Side { both, library, floor };

struct Config {
  bool quick = false;
  std::string only;                   // empty: every scenario
  int reps = 5;                       // repetitions per figure
  int cycles = 20'000;                // start+stop cycles per repetition
  std::size_t processes = 10'000;     // restore / memory / shutdown
  std::size_t co_processes = 10'000;  // the coroutine scenario's live processes
  std::size_t get_processes = 1'000;
  double get_seconds = 1.0;  // measuring time per get/visit/copy figure, over its repetitions
  int slices = 8;            // library/floor alternations within one repetition
  Side side = Side::both;
  Tuning tuning;
};

/// Whether repetition `rep` measures the floor before the library: they take turns, so that
/// neither always runs on a machine the other has just warmed (or disturbed).
inline bool floor_first(int rep) { return rep % 2 == 1; }

// ---- statistics and rows -------------------------------------------------------------------

struct Stats {
  double median = 0;
  double min = 0;
  double max = 0;
};

Stats stats_of(std::vector<double> values);

/// Paired samples: the library's figure and its floor, one pair per repetition.
struct Paired {
  std::vector<double> lib;
  std::vector<double> floor;

  /// One repetition's pair.
  void add(double lib_sample, double floor_sample) {
    lib.push_back(lib_sample);
    floor.push_back(floor_sample);
  }
};

enum class TargetKind { none, ratio_at_most, median_at_most, median_at_least, max_at_most };

struct Target {
  TargetKind kind = TargetKind::none;
  double value = 0;
};

struct GoReference {
  double low = 0;
  double high = 0;
};

struct Row {
  std::string name;
  std::string label;
  std::string unit;
  Stats lib;
  std::optional<Stats> floor;
  std::optional<Stats> ratio;  // lib / floor, the median of the per-repetition ratios
  std::string floor_note;
  Target target;
  std::optional<GoReference> go;

  [[nodiscard]] std::string target_text() const;
  [[nodiscard]] std::optional<bool> met() const;
  /// -1: faster than the whole Go range, 0: within it, 1: slower. Lower is better for every row
  /// that has a Go reference.
  [[nodiscard]] std::optional<int> versus_go() const;
};

Row paired_row(std::string name, std::string label, std::string unit, const Paired& samples,
               std::string floor_note, Target target = {},
               std::optional<GoReference> go = std::nullopt);

// ---- the scenarios (one file each) ---------------------------------------------------------

std::vector<Row> scenario_start_stop(const Config& config);  // start_stop.cpp
std::vector<Row> scenario_get(const Config& config);         // get_visit.cpp
std::vector<Row> scenario_lifecycle(const Config& config);   // lifecycle.cpp
std::vector<Row> scenario_operations(const Config& config);  // operations.cpp
std::vector<Row> scenario_coroutines(const Config& config);  // coroutines.cpp

// ---- output (report.cpp) -------------------------------------------------------------------

std::string machine_description();
std::string utc_now();

/// The machine's state during a run (machine.cpp): a cache line's round trip between two cores,
/// and the first write to a fresh 4 KiB page, both in nanoseconds; the kernel's transparent huge
/// pages mode (`always` makes a fresh block's faults 2 MiB each, and the page figure small);
/// and glibc's tunables from the environment (`glibc.malloc.hugetlb=1` puts malloc's heap on
/// huge pages in `madvise` mode too), or "none".
struct MachineProbes {
  double line_round_trip_ns = 0;
  double first_touch_ns = 0;
  std::string huge_pages;
  std::string glibc_tunables;
};
MachineProbes probe_machine();
std::string describe(const MachineProbes& probes);
void print_table(const std::vector<Row>& rows);
void print_go(const std::vector<Row>& rows);
void print_json(const std::vector<Row>& rows, const std::vector<std::string>& errors,
                const Config& config, const MachineProbes (&probes)[2]);

}  // namespace bench
