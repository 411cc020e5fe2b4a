// The harness: what a run is and how its figures are reduced. It parses the command line into a
// `Config` (sizes, repetitions, slices, the library's tuning knobs), runs each scenario in turn,
// turns a scenario's exception into a reported error instead of an abort, checks that every
// scenario joined the threads it started, and hands the rows to the report. It also owns the
// statistics every row is built with: the median, minimum and maximum of the per-repetition
// samples, and for a library figure with a floor, the median of the per-repetition ratios (a
// ratio of medians would pair a library repetition with another repetition's floor).
//
// Every figure is the median of several repetitions (5; 3 with --quick). A library figure and its
// floor are measured side by side in the same run: their repetitions alternate (library first on
// even repetitions, floor first on odd ones), and where a scenario allows it (start+stop, get) they
// also alternate in short slices within each repetition, so that a burst of outside load hits both
// sides alike. Targets are reported, not enforced: the exit code is 0 unless a scenario could not
// be measured (an unexpected error, no threads left...).
//
//   supervisor_bench [--quick] [--only=start_stop|get|lifecycle|operations] [--reps=N]
//                    [--cycles=N] [--processes=N] [--side=library|floor] [--spin=NS] [--reuse]
//
// Linux only for the memory and thread counts (/proc/self/status). Standard library only.

#include "harness.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace bench {

Stats stats_of(std::vector<double> values) {
  if (values.empty()) {
    throw BenchError("no samples");
  }
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  const double median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return {median, values.front(), values.back()};
}

Row paired_row(std::string name, std::string label, std::string unit, const Paired& samples,
               std::string floor_note, Target target, std::optional<GoReference> go) {
  Row row{std::move(name),       std::move(label), std::move(unit),
          stats_of(samples.lib), std::nullopt,     std::nullopt,
          std::move(floor_note), target,           go};
  if (!samples.floor.empty()) {
    row.floor = stats_of(samples.floor);
    std::vector<double> ratios;
    for (std::size_t i = 0; i < samples.lib.size() && i < samples.floor.size(); ++i) {
      ratios.push_back(samples.lib[i] / samples.floor[i]);
    }
    row.ratio = stats_of(std::move(ratios));
  }
  return row;
}

namespace {

bool parse_count(std::string_view arg, std::string_view prefix, long& out) {
  if (arg.substr(0, prefix.size()) != prefix) {
    return false;
  }
  const std::string value(arg.substr(prefix.size()));
  char* end = nullptr;
  out = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || out <= 0) {
    throw BenchError("bad value in " + std::string(arg));
  }
  return true;
}

Config parse_args(int argc, char** argv) {
  Config config;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (std::find(args.begin(), args.end(), "--quick") != args.end()) {
    config.quick = true;
    config.reps = 3;
    config.cycles = 2'000;
    config.processes = 1'000;
    config.co_processes = 1'000;
    config.get_seconds = 0.2;
    config.slices = 4;
  }
  for (const auto arg : args) {
    long value = 0;
    if (arg == "--quick") {
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: supervisor_bench [--quick]\n"
          "                        [--only=start_stop|get|lifecycle|operations|coroutines]\n"
          "                        [--reps=N] [--cycles=N] [--processes=N] [--co-processes=N]\n"
          "                        [--side=library|floor] [--spin=NS] [--reuse]\n"
          "  --quick       a few seconds: smaller counts, 3 repetitions (the CI smoke test)\n"
          "  --only=S      run one scenario\n"
          "  --side=X      start+stop only: run one side, for profiling (no ratio)\n"
          "  --spin=NS     Options::handoff_spin in nanoseconds (0: no spinning)\n"
          "  --reuse       Options::reuse_threads = true (park finished threads for reuse)\n");
      std::exit(0);
    }
    if (arg.substr(0, 7) == "--only=") {
      config.only = std::string(arg.substr(7));
      if (config.only != "start_stop" && config.only != "get" && config.only != "lifecycle" &&
          config.only != "operations" && config.only != "coroutines") {
        throw BenchError("unknown scenario in " + std::string(arg));
      }
    } else if (arg == "--side=library" || arg == "--side=floor") {
      config.side = arg == "--side=library" ? Side::library : Side::floor;
    } else if (arg == "--reuse") {
      config.tuning.reuse_threads = true;
    } else if (arg.substr(0, 7) == "--spin=") {
      config.tuning.handoff_spin =
          std::chrono::nanoseconds(std::strtol(arg.data() + 7, nullptr, 10));
    } else if (parse_count(arg, "--reps=", value)) {
      config.reps = static_cast<int>(value);
    } else if (parse_count(arg, "--cycles=", value)) {
      config.cycles = static_cast<int>(value);
    } else if (parse_count(arg, "--processes=", value)) {
      config.processes = static_cast<std::size_t>(value);
    } else if (parse_count(arg, "--co-processes=", value)) {
      config.co_processes = static_cast<std::size_t>(value);
    } else {
      throw BenchError("unknown argument " + std::string(arg) + " (try --help)");
    }
  }
  return config;
}

/// The whole run; `main` only forwards to it, so that it can use the bench namespace.
int run(int argc, char** argv) {
  Config config;
  try {
    config = parse_args(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "supervisor_bench: %s\n", e.what());
    return 2;
  }

  std::printf("supervisor_bench (%s): %d repetitions per figure, library and floor alternating\n",
              config.quick ? "--quick" : "full", config.reps);
  std::printf("machine: %s\ndate: %s\nlimits:%s\n", machine_description().c_str(),
              utc_now().c_str(), limits_hint().c_str());
  const std::string spin = config.tuning.handoff_spin
                               ? std::to_string(config.tuning.handoff_spin->count()) + " ns"
                               : "the default of the kind (threads 0, coroutines 20000 ns)";
  std::printf("library options: handoff_spin=%s, reuse_threads=%s\n", spin.c_str(),
              config.tuning.reuse_threads ? "on" : "off");
  std::printf(
      "sizes: %d start+stop cycles; get and visit over %zu processes, %.2f s per figure; "
      "restore, memory and shutdown over %zu processes\n",
      config.cycles, config.get_processes, config.get_seconds, config.processes);
  MachineProbes probes[2] = {probe_machine(), {}};
  std::printf("machine state before: %s\n", describe(probes[0]).c_str());
  std::fflush(stdout);

  struct Scenario {
    const char* name;
    std::function<std::vector<Row>(const Config&)> run;
  };
  const Scenario scenarios[] = {
      {"start_stop", scenario_start_stop}, {"get", scenario_get},
      {"lifecycle", scenario_lifecycle},   {"operations", scenario_operations},
      {"coroutines", scenario_coroutines},
  };

  std::vector<Row> rows;
  std::vector<std::string> errors;
  const auto t0 = Clock::now();
  for (const auto& scenario : scenarios) {
    if (!config.only.empty() && config.only != scenario.name) {
      continue;
    }
    const auto started = Clock::now();
    try {
      auto produced = scenario.run(config);
      rows.insert(rows.end(), produced.begin(), produced.end());
      std::printf("  %-10s done in %.1f s\n", scenario.name, seconds_since(started));
    } catch (const std::exception& e) {
      std::string what = e.what();
      if (const auto* failure = dynamic_cast<const std::system_error*>(&e);
          failure != nullptr && failure->code() == std::errc::resource_unavailable_try_again) {
        what += " -- could not create a thread" + limits_hint();
      }
      errors.push_back(std::string(scenario.name) + ": " + what);
      std::printf("  %-10s FAILED after %.1f s: %s\n", scenario.name, seconds_since(started),
                  what.c_str());
    }
    std::fflush(stdout);
  }

  // Every scenario joins what it started: nothing but this thread may be left.
  if (const long threads = proc_status("Threads"); threads > 1) {
    errors.push_back(std::to_string(threads - 1) + " thread(s) still running at exit");
  }

  probes[1] = probe_machine();
  print_table(rows);
  print_go(rows);
  std::printf("\nmachine state before: %s\n              after: %s\n", describe(probes[0]).c_str(),
              describe(probes[1]).c_str());
  std::size_t missed = 0;
  for (const auto& row : rows) {
    if (const auto met = row.met(); met && !*met) {
      ++missed;
    }
  }
  std::printf("\n%zu of %zu targets missed (reported, not enforced). Total time %.1f s.\n", missed,
              static_cast<std::size_t>(std::count_if(
                  rows.begin(), rows.end(), [](const Row& r) { return r.met().has_value(); })),
              seconds_since(t0));
  for (const auto& error : errors) {
    std::printf("ERROR: %s\n", error.c_str());
  }
  print_json(rows, errors, config, probes);
  return errors.empty() ? 0 : 1;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) { return bench::run(argc, argv); }
