// Scenario 1, the start+stop cycle: what `start(k)` + `stop(k)` cost inside `run`, against the
// least a thread-per-process design can do for the same cycle: spawn a `std::thread` that signals
// readiness, tell it to finish, join it. Each repetition alternates the library and the floor in
// `Config::slices` slices (the first side swaps on odd repetitions), so that a burst of outside
// load hits both alike; `--side=` runs one side alone, for profiling, and then gives no ratio.

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "harness.hpp"

namespace bench {
namespace {

/// The floor of one cycle: a thread that signals readiness and waits to be told to finish, then
/// a join.
class FloorCycle {
 public:
  void operator()() {
    ready_ = false;
    finish_ = false;
    std::thread thread([this] {
      std::unique_lock lock(mutex_);
      ready_ = true;
      ready_cv_.notify_one();
      finish_cv_.wait(lock, [this] { return finish_; });
    });
    {
      std::unique_lock lock(mutex_);
      ready_cv_.wait(lock, [this] { return ready_; });
      finish_ = true;
    }
    finish_cv_.notify_one();
    thread.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_cv_;
  std::condition_variable finish_cv_;
  bool ready_ = false;
  bool finish_ = false;
};

/// One repetition: microseconds per cycle of the library (`start(k)` + `stop(k)` inside `run`)
/// and of the floor, interleaved in `slices` slices so that a burst of outside load hits both.
/// `side` (profiling only) restricts it to one of them; the other figure is then 0.
std::pair<double, double> start_stop_repetition(const Config& config, bool floor_first) {
  const int cycles = config.cycles;
  const int slices = config.slices;
  const bool lib_on = config.side != Side::floor;
  const bool floor_on = config.side != Side::library;
  auto table = std::make_shared<Table>();
  auto clock = std::make_shared<supervisor::ManualClock>();
  ErrorSink errors;
  Sup sup(table, bench_options(config.tuning, clock, errors));
  double lib_seconds = 0;
  double floor_seconds = 0;
  sup.run([&] {
    const Key key = 42;
    // Present in the table, but inserted after the initial pass: the key is ours to start.
    table->insert_or_assign(key, std::make_shared<Worker>());
    auto lib_cycle = [&] {
      std::error_code ec;
      if (!sup.start(key, ec) || ec) {
        throw BenchError("start(" + std::to_string(key) + ") failed: " + ec.message());
      }
      sup.stop(key, ec);
      if (ec) {
        throw BenchError("stop(" + std::to_string(key) + ") failed: " + ec.message());
      }
    };
    FloorCycle floor_cycle;
    auto timed = [](bool on, int n, auto& cycle) {
      if (!on) {
        return 0.0;
      }
      const auto t0 = Clock::now();
      for (int i = 0; i < n; ++i) {
        cycle();
      }
      return seconds_since(t0);
    };
    const int warm_up = std::min(cycles / 20, 100);
    timed(lib_on, warm_up, lib_cycle);
    timed(floor_on, warm_up, floor_cycle);
    for (int slice = 0; slice < slices; ++slice) {
      const int n = cycles / slices + (slice < cycles % slices ? 1 : 0);
      if ((slice % 2 == 0) != floor_first) {
        lib_seconds += timed(lib_on, n, lib_cycle);
        floor_seconds += timed(floor_on, n, floor_cycle);
      } else {
        floor_seconds += timed(floor_on, n, floor_cycle);
        lib_seconds += timed(lib_on, n, lib_cycle);
      }
    }
  });
  errors.check("start+stop");
  return {lib_seconds * 1e6 / cycles, floor_seconds * 1e6 / cycles};
}

}  // namespace

std::vector<Row> scenario_start_stop(const Config& config) {
  Paired samples;
  for (int rep = 0; rep < config.reps; ++rep) {
    const auto [lib, floor] = start_stop_repetition(config, floor_first(rep));
    samples.lib.push_back(config.side == Side::floor ? floor : lib);
    if (config.side == Side::both) {
      samples.floor.push_back(floor);
    }
  }
  if (config.side != Side::both) {
    const bool floor = config.side == Side::floor;
    return {paired_row(floor ? "start_stop_cycle_floor_only" : "start_stop_cycle_library_only",
                       floor ? "start+stop floor only" : "start+stop library only", "us/cycle",
                       samples, "")};
  }
  return {paired_row("start_stop_cycle", "start+stop cycle", "us/cycle", samples,
                     "std::thread + ready/finish handshake (mutex+condvar) + join",
                     {TargetKind::ratio_at_most, 1.25}, GoReference{4.1, 4.8})};
}

}  // namespace bench
