// Scenario 6, what the operations layer costs when it is on, against the same library with it off
// (the seed's behaviour), both measured in the same run:
//
// - A restart pass with the restart policy on (backoff, give-up) and 1% of the keys with a
//   failure history, against the same pass with the default options and no history. Two
//   supervisors over tables of the same keys live at once (one `run` nested in the other's
//   callback), and each repetition alternates their passes in `Config::slices` rounds, one cold
//   (caches flushed first) then four warm; a repetition's figure is the median of its passes. A
//   pass is one `reconcile()` on the calling thread: the whole pass, from `iterate()` through the
//   history walk at its end, with no thread hand-off.
// - A start+stop cycle with an empty `Options::on_event` hook, against the same cycle without a
//   hook: two supervisors with one key each, alternating in slices as scenario 1 does.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "harness.hpp"

namespace bench {
namespace {

/// A runnable that fails (throws before `ready`) on its first `fail_runs` runs, then behaves as
/// `Worker`.
struct FlakyWorker {
  mutable std::atomic<int> fail_runs{0};

  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) const {
    int left = fail_runs.load(std::memory_order_relaxed);
    while (left > 0 && !fail_runs.compare_exchange_weak(left, left == INT_MAX ? left : left - 1)) {
    }
    if (left > 0) {
      throw std::runtime_error("flaky: failing on purpose");
    }
    ready();
  }
};
using FlakyPtr = std::shared_ptr<FlakyWorker>;
using FlakyTable = supervisor::MapTable<Key, FlakyPtr>;
using FlakySup = supervisor::Supervisor<Key, FlakyPtr>;

/// Counts the failures the flaky rows are expected to report; anything else goes to the sink.
class FailureCounter {
 public:
  explicit FailureCounter(ErrorSink& sink) : sink_(&sink) {}

  void add(const supervisor::ErrorReport<Key>& report) {
    bool expected = false;
    try {
      std::rethrow_exception(report.error);
    } catch (const std::runtime_error& e) {
      expected = report.source == supervisor::ErrorSource::start &&
                 std::string(e.what()) == "flaky: failing on purpose";
    } catch (...) {  // NOLINT(bugprone-empty-catch): not ours; the sink reports it.
    }
    if (!expected) {
      sink_->add(report);
      return;
    }
    {
      std::lock_guard lock(mutex_);
      ++count_;
    }
    cv_.notify_all();
  }

  /// Waits until `n` expected failures have been reported in all.
  void wait_for(std::size_t n, const std::stop_token& bound) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait(lock, bound, [&] { return count_ >= n; })) {
      throw BenchError("restart pass with policy: " + std::to_string(count_) + " of " +
                       std::to_string(n) + " expected failures reported");
    }
  }

 private:
  ErrorSink* sink_;
  std::mutex mutex_;
  std::condition_variable_any cv_;
  std::size_t count_ = 0;
};

/// Evicts the caches (as lifecycle.cpp's flusher does), so that the pass after it starts cold.
class Flusher {
 public:
  void operator()() {
    for (std::size_t i = 0; i < buffer_.size(); i += 64) {
      buffer_[i] = static_cast<char>(buffer_[i] + 1);
    }
    sink_.fetch_add(static_cast<unsigned char>(buffer_[64]), std::memory_order_relaxed);
  }

 private:
  static inline std::atomic<unsigned> sink_{0};
  std::vector<char> buffer_ = std::vector<char>(std::size_t{64} << 20U);
};

/// Waits (bounded, yielding) until the supervisor's snapshot shows `running` ready processes and
/// `backing_off` keys backing off.
void wait_for_states(const FlakySup& sup, std::size_t running, std::size_t backing_off,
                     const char* where) {
  const auto give_up = Clock::now() + std::chrono::seconds(60);
  for (;;) {
    const auto snap = sup.snapshot();
    const std::size_t now_running = snap.count(supervisor::KeyState::running);
    const std::size_t now_backing_off = snap.count(supervisor::KeyState::backing_off);
    if (now_running == running && now_backing_off == backing_off) {
      return;
    }
    if (Clock::now() > give_up) {
      throw BenchError(std::string(where) + ": " + std::to_string(now_running) + " running and " +
                       std::to_string(now_backing_off) + " backing off, expected " +
                       std::to_string(running) + " and " + std::to_string(backing_off));
    }
    std::this_thread::yield();
  }
}

struct PolicyPassSample {
  double on_cold_us = 0;  // per table row
  double on_warm_us = 0;
  double off_cold_us = 0;
  double off_warm_us = 0;
};

constexpr int warm_passes = 4;  // back-to-back warm passes after each cold one

/// One repetition of the restart pass with and without the policy.
PolicyPassSample policy_pass_repetition(const Config& config, bool off_first, Flusher& flush) {
  const std::size_t n = config.processes;
  // 1% of the keys fail: half of them once (running again, with a history, when measured), half
  // always (backing off, with a history, when measured).
  const std::size_t flaky_every = 100;
  auto on_table = std::make_shared<FlakyTable>();
  auto off_table = std::make_shared<FlakyTable>();
  std::size_t fail_once = 0;
  std::size_t fail_always = 0;
  for (std::size_t i = 0; i < n; ++i) {
    auto row = std::make_shared<FlakyWorker>();
    if (i % flaky_every == 0) {
      const bool always = (i / flaky_every) % 2 == 1;
      row->fail_runs.store(always ? INT_MAX : 1);
      ++(always ? fail_always : fail_once);
    }
    on_table->insert_or_assign(key_at(i), std::move(row));
    off_table->insert_or_assign(key_at(i), std::make_shared<FlakyWorker>());
  }

  ErrorSink errors;
  FailureCounter failures(errors);
  auto on_clock = std::make_shared<supervisor::ManualClock>();
  auto off_clock = std::make_shared<supervisor::ManualClock>();
  auto on_options = bench_options(config.tuning, on_clock, errors);
  on_options.on_error = [&failures](const supervisor::ErrorReport<Key>& r) { failures.add(r); };
  on_options.restart.initial_backoff = std::chrono::minutes(10);
  on_options.restart.multiplier = 2.0;
  on_options.restart.jitter = 0.0;
  on_options.restart.give_up_after = 100;
  on_options.restart.give_up_window = std::chrono::hours(1);
  const auto off_options = bench_options(config.tuning, off_clock, errors);
  FlakySup on(on_table, on_options);
  FlakySup off(off_table, off_options);

  // Microseconds per pass. A pass over 1,000 entries takes tens of microseconds: one preemption
  // would outweigh a sum of them, so each figure is the median of its passes.
  std::vector<double> on_cold;
  std::vector<double> on_warm;
  std::vector<double> off_cold;
  std::vector<double> off_warm;
  const WaitBound bound(std::chrono::seconds(120));
  on.run([&] {
    // Every flaky row failed in the initial pass. Let the backoff pass: the loop's next pass
    // restarts them; the fail-once rows stay up, the others fail again (backoff 20 minutes).
    failures.wait_for(fail_once + fail_always, bound.token());
    if (!on_clock->wait_for_sleepers(1, bound.token())) {
      throw BenchError("restart pass with policy: the restart loop never waited on the clock");
    }
    const auto arms = on_clock->arms();
    on_clock->advance(on_options.restart.initial_backoff);
    if (!on_clock->wait_for_arms(arms + 1, bound.token())) {
      throw BenchError("restart pass with policy: the restart loop never re-armed");
    }
    failures.wait_for(2 * fail_always + fail_once, bound.token());
    wait_for_states(on, n - fail_always, fail_always, "restart pass with policy");

    off.run([&] {
      errors.check("restart pass with policy, restore");
      if (const auto running = off.keys().size(); running != n) {
        throw BenchError("restart pass without policy: " + std::to_string(running) + " of " +
                         std::to_string(n) + " running");
      }
      auto timed_pass = [](FlakySup& sup) {
        const auto t0 = Clock::now();
        if (const auto ec = sup.reconcile()) {
          throw BenchError("reconcile() failed: " + ec.message());
        }
        return seconds_since(t0) * 1e6;
      };
      auto measure = [&](FlakySup& sup, std::vector<double>& cold, std::vector<double>& warm) {
        flush();
        cold.push_back(timed_pass(sup));
        for (int i = 0; i < warm_passes; ++i) {
          warm.push_back(timed_pass(sup));
        }
      };
      // One warm-up pass each, unmeasured.
      timed_pass(on);
      timed_pass(off);
      for (int round = 0; round < config.slices; ++round) {
        if ((round % 2 == 0) == off_first) {
          measure(off, off_cold, off_warm);
          measure(on, on_cold, on_warm);
        } else {
          measure(on, on_cold, on_warm);
          measure(off, off_cold, off_warm);
        }
      }
      // The passes changed nothing: the backing-off keys stayed down, nothing else was started.
      wait_for_states(on, n - fail_always, fail_always, "restart pass with policy, afterwards");
      if (const auto running = off.keys().size(); running != n) {
        throw BenchError("restart pass without policy: " + std::to_string(running) +
                         " running afterwards");
      }
    });
  });
  errors.check("restart pass with policy");
  const double rows = static_cast<double>(n);
  return {stats_of(on_cold).median / rows, stats_of(on_warm).median / rows,
          stats_of(off_cold).median / rows, stats_of(off_warm).median / rows};
}

/// CPU time of the whole process (every thread), in seconds.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct HookSample {
  double hooked_us = 0;  // wall clock, per cycle
  double plain_us = 0;
  double hooked_cpu_us = 0;  // CPU time of the process, per cycle
  double plain_cpu_us = 0;
};

/// One repetition of the start+stop cycle with an empty event hook and without a hook,
/// microseconds per cycle (wall clock and process CPU time), interleaved in `slices` slices.
HookSample hook_repetition(const Config& config, bool plain_first) {
  const int cycles = config.cycles;
  const int slices = config.slices;
  auto hooked_table = std::make_shared<Table>();
  auto plain_table = std::make_shared<Table>();
  auto hooked_clock = std::make_shared<supervisor::ManualClock>();
  auto plain_clock = std::make_shared<supervisor::ManualClock>();
  ErrorSink errors;
  auto hooked_options = bench_options(config.tuning, hooked_clock, errors);
  hooked_options.on_event = [](const supervisor::Event<Key>& /*event*/) {};
  Sup hooked(hooked_table, hooked_options);
  Sup plain(plain_table, bench_options(config.tuning, plain_clock, errors));
  HookSample sample;
  hooked.run([&] {
    plain.run([&] {
      const Key key = 42;
      // Inserted after the initial passes: the key is ours to start.
      hooked_table->insert_or_assign(key, std::make_shared<Worker>());
      plain_table->insert_or_assign(key, std::make_shared<Worker>());
      auto timed = [&](Sup& sup, int count, double& cpu_us) {
        const double cpu0 = process_cpu_seconds();
        const auto t0 = Clock::now();
        for (int i = 0; i < count; ++i) {
          std::error_code ec;
          if (!sup.start(key, ec) || ec) {
            throw BenchError("start(" + std::to_string(key) + ") failed: " + ec.message());
          }
          sup.stop(key, ec);
          if (ec) {
            throw BenchError("stop(" + std::to_string(key) + ") failed: " + ec.message());
          }
        }
        const double wall = seconds_since(t0) * 1e6;
        cpu_us += (process_cpu_seconds() - cpu0) * 1e6;
        return wall;
      };
      const int warm_up = std::min(cycles / 20, 100);
      double ignored = 0;
      timed(hooked, warm_up, ignored);
      timed(plain, warm_up, ignored);
      for (int slice = 0; slice < slices; ++slice) {
        const int count = cycles / slices + (slice < cycles % slices ? 1 : 0);
        if ((slice % 2 == 0) != plain_first) {
          sample.hooked_us += timed(hooked, count, sample.hooked_cpu_us);
          sample.plain_us += timed(plain, count, sample.plain_cpu_us);
        } else {
          sample.plain_us += timed(plain, count, sample.plain_cpu_us);
          sample.hooked_us += timed(hooked, count, sample.hooked_cpu_us);
        }
      }
    });
  });
  errors.check("start+stop with event hook");
  for (double* us :
       {&sample.hooked_us, &sample.plain_us, &sample.hooked_cpu_us, &sample.plain_cpu_us}) {
    *us /= cycles;
  }
  return sample;
}

}  // namespace

std::vector<Row> scenario_operations(const Config& config) {
  Paired pass_cold;
  Paired pass_warm;
  Paired hook;
  Paired hook_cpu;
  Flusher flush;  // one 64 MiB buffer for every repetition
  for (int rep = 0; rep < config.reps; ++rep) {
    const auto pass = policy_pass_repetition(config, floor_first(rep), flush);
    pass_cold.add(pass.on_cold_us, pass.off_cold_us);
    pass_warm.add(pass.on_warm_us, pass.off_warm_us);
    const auto cycle = hook_repetition(config, floor_first(rep));
    hook.add(cycle.hooked_us, cycle.plain_us);
    hook_cpu.add(cycle.hooked_cpu_us, cycle.plain_cpu_us);
  }
  return {
      paired_row("restart_pass_policy", "restart pass, policy on: cold", "us/entry", pass_cold,
                 "the same pass (reconcile()) with the default options and no history, caches "
                 "flushed; library: backoff + give-up on, 1% of the keys with a history",
                 {TargetKind::ratio_at_most, 1.3}),
      paired_row("restart_pass_policy_warm", "restart pass, policy on: warm", "us/entry", pass_warm,
                 "the same, back-to-back passes", {TargetKind::ratio_at_most, 1.3}),
      paired_row("start_stop_cycle_event_hook", "start+stop cycle, empty event hook", "us/cycle",
                 hook, "the same start+stop cycle with no Options::on_event",
                 {TargetKind::ratio_at_most, 1.05}),
      paired_row("start_stop_cycle_event_hook_cpu", "start+stop, empty event hook: CPU", "us/cycle",
                 hook_cpu,
                 "the same, CPU time of the process (all threads) instead of the wall clock: "
                 "steadier on a loaded machine"),
  };
}

}  // namespace bench
