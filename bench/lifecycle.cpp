// Scenarios 3 to 5, the lifecycle over 10,000 processes, one `run` per repetition: restore (`run`
// to the callback, a ManualClock so that the initial wait ends only when every start has
// finished), resident memory per idle process, restart passes over the running entries (driven by
// the clock, cold and warm, their thread count checked around them), and shutdown (callback
// return to `run` return). Floors: 10,000 threads spawned, woken and joined, and for the pass,
// iterating the same table and probing a hash set on a thread of its own. These are one-shot
// measurements of process-wide state (threads, resident set), so library and floor alternate by
// repetition only.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include "harness.hpp"

namespace bench {
namespace {

struct LifecycleSample {
  double restore_us = 0;  // per entry
  // Restart passes, per entry: the pass's own work (from `iterate` to `close`, on the loop
  // thread) and the pass end to end (advance the clock ... the loop has re-armed), each cold
  // (caches flushed first) and warm (the second of two back-to-back passes).
  double pass_cold_us = 0;
  double pass_warm_us = 0;
  double pass_end_to_end_us = 0;
  double pass_end_to_end_warm_us = 0;
  double floor_cold_us = 0;
  double floor_warm_us = 0;
  double floor_end_to_end_us = 0;
  double threads_started = 0;
  double rss_kib = 0;      // per process
  double shutdown_us = 0;  // per process
};

/// A `Table` that forwards to a `MapTable` and times each iteration from `iterate()` to the
/// cursor's `close()`: the work of a restart pass, without the thread wake-ups around it (on a
/// virtual machine, waking an idle virtual CPU alone can take milliseconds).
class TimedTable {
 public:
  class Cursor {
   public:
    Cursor(Table::Cursor inner, TimedTable& owner, Clock::time_point began)
        : inner_(std::move(inner)), owner_(&owner), began_(began) {}
    bool next() { return inner_.next(); }
    [[nodiscard]] std::pair<Key, WorkerPtr> get() { return inner_.get(); }
    void close() {
      inner_.close();
      owner_->last_ns_.store(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - began_).count(),
          std::memory_order_release);
    }

   private:
    Table::Cursor inner_;
    TimedTable* owner_;
    Clock::time_point began_;
  };

  explicit TimedTable(std::shared_ptr<Table> table) : table_(std::move(table)) {}

  [[nodiscard]] std::optional<WorkerPtr> get(const Key& key) const { return table_->get(key); }
  Cursor iterate() {
    const auto began = Clock::now();
    return Cursor(table_->iterate(), *this, began);
  }

  /// Microseconds from the last `iterate()` to its cursor's `close()`.
  [[nodiscard]] double last_iteration_us() const {
    return static_cast<double>(last_ns_.load(std::memory_order_acquire)) / 1e3;
  }

 private:
  std::shared_ptr<Table> table_;
  std::atomic<std::int64_t> last_ns_{0};
};

/// Evicts the caches by writing a buffer larger than the last-level cache, so that a pass that
/// follows starts cold, as a real pass a minute after the last one does.
class CacheFlusher {
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

struct FloorPass {
  double cold_us = 0;        // per row, the first pass, timed inside the thread
  double warm_us = 0;        // per row, the second pass, back to back on the same thread
  double end_to_end_us = 0;  // per row, from spawning the thread to joining it, less the second
};

/// The floor of a restart pass: iterate the same table and probe a set of the running keys, twice
/// in a row on a thread of its own (like the library's passes, which run on the restart-loop
/// thread).
FloorPass floor_passes(const Table& table, const std::unordered_set<Key>& running) {
  double work_us[2] = {0, 0};
  std::size_t found = 0;
  std::size_t rows = 0;
  const auto spawned = Clock::now();
  std::thread([&] {
    for (double& us : work_us) {
      const auto t0 = Clock::now();
      auto cursor = table.iterate();
      found = 0;
      rows = 0;
      while (cursor.next()) {
        const auto row = cursor.get();
        found += running.count(row.first);
        ++rows;
      }
      cursor.close();
      us = seconds_since(t0) * 1e6;
    }
  }).join();
  const double total_us = seconds_since(spawned) * 1e6;
  if (rows == 0 || found != rows) {
    throw BenchError("floor pass: key set and table disagree");
  }
  const auto n = static_cast<double>(rows);
  return {work_us[0] / n, work_us[1] / n, (total_us - work_us[1]) / n};
}

/// One life of a supervisor over `table` (every entry not yet running): restore; restart passes
/// over the running entries, cold and warm, each beside its floor; then shutdown.
LifecycleSample library_lifecycle(const std::shared_ptr<Table>& table,
                                  const std::unordered_set<Key>& keys, const Tuning& tuning,
                                  bool floor_first) {
  const std::size_t n = keys.size();
  auto clock = std::make_shared<supervisor::ManualClock>();
  ErrorSink errors;
  const auto options = bench_options(tuning, clock, errors);
  const auto interval = options.restart_interval;
  auto timed = std::make_shared<TimedTable>(table);
  Sup sup(timed, options);
  LifecycleSample sample;

  trim_heap();
  const long rss_before = rss_kib();
  Clock::time_point callback_returned;
  const auto run_called = Clock::now();
  sup.run([&] {
    sample.restore_us = seconds_since(run_called) * 1e6 / static_cast<double>(n);
    const long rss_running = rss_kib();
    // Thread creation failures show up as background-start errors: report those, not a count.
    errors.check("restore");
    if (const auto running = sup.keys().size(); running != n) {
      throw BenchError("restore: " + std::to_string(running) + " of " + std::to_string(n) +
                       " processes running after the initial wait");
    }
    sample.rss_kib = static_cast<double>(rss_running - rss_before) / static_cast<double>(n);

    const WaitBound bound(std::chrono::seconds(60));
    // One restart pass, driven by the clock: (work, end to end), microseconds per entry.
    auto library_pass = [&] {
      if (!clock->wait_for_sleepers(1, bound.token())) {
        throw BenchError("restart pass: the restart loop never waited on the clock");
      }
      const auto arms = clock->arms();
      const auto t0 = Clock::now();
      clock->advance(interval);
      // The loop re-arms only after the pass has finished.
      if (!clock->wait_for_arms(arms + 1, bound.token())) {
        throw BenchError("restart pass: the restart loop never re-armed");
      }
      const double end_to_end = seconds_since(t0) * 1e6;
      return std::pair{timed->last_iteration_us() / static_cast<double>(n),
                       end_to_end / static_cast<double>(n)};
    };
    CacheFlusher flush;
    const long threads_before = thread_count();
    for (int round = 0; round < 2; ++round) {
      if ((round == 0) == floor_first) {
        flush();
        const auto floor = floor_passes(*table, keys);
        sample.floor_cold_us = floor.cold_us;
        sample.floor_warm_us = floor.warm_us;
        sample.floor_end_to_end_us = floor.end_to_end_us;
      } else {
        flush();
        std::tie(sample.pass_cold_us, sample.pass_end_to_end_us) = library_pass();
        std::tie(sample.pass_warm_us, sample.pass_end_to_end_warm_us) = library_pass();
      }
    }
    const long threads_after = thread_count();
    sample.threads_started = static_cast<double>(threads_after - threads_before);
    if (const auto running = sup.keys().size(); running != n) {
      throw BenchError("restart pass: " + std::to_string(running) + " processes afterwards, not " +
                       std::to_string(n));
    }
    callback_returned = Clock::now();
  });
  sample.shutdown_us = seconds_since(callback_returned) * 1e6 / static_cast<double>(n);
  errors.check("shutdown");
  return sample;
}

struct FloorLifecycleSample {
  double restore_us = 0;   // per thread: spawn, wait until every thread signalled readiness
  double rss_kib = 0;      // per idle thread
  double shutdown_us = 0;  // per thread: wake each through its own signal, join all
};

FloorLifecycleSample floor_lifecycle(std::size_t n) {
  struct Slot {
    std::mutex mutex;
    std::condition_variable cv;
    bool stop = false;
  };
  FloorLifecycleSample sample;
  trim_heap();
  const long rss_before = rss_kib();
  const auto slots = std::make_unique<Slot[]>(n);
  std::mutex ready_mutex;
  std::condition_variable ready_cv;
  std::size_t ready = 0;
  std::vector<std::thread> threads;
  threads.reserve(n);
  auto stop_and_join = [&] {
    for (std::size_t i = 0; i < threads.size(); ++i) {
      {
        std::lock_guard lock(slots[i].mutex);
        slots[i].stop = true;
      }
      slots[i].cv.notify_one();
    }
    for (auto& thread : threads) {
      thread.join();
    }
  };

  const auto t0 = Clock::now();
  try {
    for (std::size_t i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        {
          std::lock_guard lock(ready_mutex);
          if (++ready == n) {
            ready_cv.notify_one();
          }
        }
        std::unique_lock lock(slots[i].mutex);
        slots[i].cv.wait(lock, [&] { return slots[i].stop; });
      });
    }
  } catch (const std::system_error& e) {
    const std::size_t made = threads.size();
    stop_and_join();
    throw BenchError("floor: could not create thread " + std::to_string(made + 1) + " of " +
                     std::to_string(n) + ": " + e.what() + limits_hint());
  }
  {
    std::unique_lock lock(ready_mutex);
    ready_cv.wait(lock, [&] { return ready == n; });
  }
  sample.restore_us = seconds_since(t0) * 1e6 / static_cast<double>(n);
  sample.rss_kib = static_cast<double>(rss_kib() - rss_before) / static_cast<double>(n);
  const auto t1 = Clock::now();
  stop_and_join();
  sample.shutdown_us = seconds_since(t1) * 1e6 / static_cast<double>(n);
  return sample;
}

}  // namespace

std::vector<Row> scenario_lifecycle(const Config& config) {
  const std::size_t n = config.processes;
  auto table = make_table(n);
  std::unordered_set<Key> keys;
  for (std::size_t i = 0; i < n; ++i) {
    keys.insert(key_at(i));
  }

  Paired restore;
  Paired pass_cold;
  Paired pass_warm;
  Paired pass_end_to_end;
  Paired pass_end_to_end_warm;
  Paired threads_started;
  Paired memory;
  Paired shutdown;
  for (int rep = 0; rep < config.reps; ++rep) {
    LifecycleSample lib;
    FloorLifecycleSample flo;
    if (floor_first(rep)) {
      flo = floor_lifecycle(n);
      lib = library_lifecycle(table, keys, config.tuning, true);
    } else {
      lib = library_lifecycle(table, keys, config.tuning, false);
      flo = floor_lifecycle(n);
    }
    restore.add(lib.restore_us, flo.restore_us);
    pass_cold.add(lib.pass_cold_us, lib.floor_cold_us);
    pass_warm.add(lib.pass_warm_us, lib.floor_warm_us);
    pass_end_to_end.add(lib.pass_end_to_end_us, lib.floor_end_to_end_us);
    pass_end_to_end_warm.add(lib.pass_end_to_end_warm_us, lib.floor_warm_us);
    threads_started.lib.push_back(lib.threads_started);  // no floor: the target is absolute
    memory.add(lib.rss_kib, flo.rss_kib);
    shutdown.add(lib.shutdown_us, flo.shutdown_us);
  }
  const std::string count = std::to_string(n);
  return {
      paired_row("restore", "restore (run -> callback)", "us/entry", restore,
                 count + " std::threads spawned, each signals readiness", {}, GoReference{9, 11}),
      paired_row("restart_pass", "restart pass: work, cold", "us/entry", pass_cold,
                 "MapTable::iterate + std::unordered_set probe on a thread, caches flushed; "
                 "library: iterate()..close() on the loop thread",
                 {TargetKind::ratio_at_most, 3}),
      paired_row("restart_pass_warm", "restart pass: work, warm", "us/entry", pass_warm,
                 "the same, second of two back-to-back passes on the same thread"),
      paired_row("restart_pass_end_to_end", "restart pass: end to end, cold", "us/entry",
                 pass_end_to_end,
                 "spawn a thread, iterate + probe, join (caches flushed); library: advance() .. "
                 "re-armed"),
      paired_row("restart_pass_end_to_end_warm", "restart pass: end to end, warm", "us/entry",
                 pass_end_to_end_warm,
                 "the warm floor (no thread hand-off); library: advance() .. re-armed", {},
                 GoReference{0.5, 1.0}),
      paired_row("restart_pass_threads_started", "threads started by the pass", "threads",
                 threads_started, "", {TargetKind::max_at_most, 0}),
      paired_row("memory_per_process", "resident memory, idle", "KiB/process", memory,
                 count + " idle std::threads on a condvar", {TargetKind::median_at_most, 16},
                 GoReference{6.1, 6.1}),
      paired_row("shutdown", "shutdown (callback -> return)", "us/process", shutdown,
                 "wake each thread by its own condvar, join all", {TargetKind::ratio_at_most, 1.5},
                 GoReference{2, 2}),
  };
}

}  // namespace bench
