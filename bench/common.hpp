// The helpers every scenario shares: the runnable under test (`Worker`) and the table and
// supervisor types around it, the benchmark's own error type, readings of /proc/self/status
// (resident set, thread count), the guards that turn a broken library into a failure instead of a
// hang or a silent miss (`WaitBound`, `ErrorSink`), the library options every scenario builds its
// supervisor with, and the scattered keys and tables the scenarios measure over. It knows nothing
// of repetitions, statistics or output: those are the harness's (harness.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <supervisor/supervisor.hpp>
#include <thread>
#include <utility>

#if defined(__GLIBC__)
#include <malloc.h>  // malloc_trim: give freed heap back so that each RSS sample starts clean.
#endif

namespace bench {

using Clock = std::chrono::steady_clock;
using Key = std::uint64_t;

/// The runnable of every scenario: ready at once, returns as soon as `ready` returns.
struct Worker {
  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) const { ready(); }
};
using WorkerPtr = std::shared_ptr<Worker>;
using Table = supervisor::MapTable<Key, WorkerPtr>;
using Sup = supervisor::Supervisor<Key, WorkerPtr>;

/// A failure of the benchmark itself (not a missed target).
class BenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// A field of /proc/self/status ("VmRSS", "Threads"), as its leading number; -1 if unavailable.
inline long proc_status(std::string_view field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > field.size() && line.compare(0, field.size(), field) == 0 &&
        line[field.size()] == ':') {
      return std::strtol(line.c_str() + field.size() + 1, nullptr, 10);
    }
  }
  return -1;
}

inline long rss_kib() {
  const long v = proc_status("VmRSS");
  if (v < 0) {
    throw BenchError("cannot read VmRSS from /proc/self/status (the memory figures need Linux)");
  }
  return v;
}

inline long thread_count() {
  const long v = proc_status("Threads");
  if (v < 0) {
    throw BenchError("cannot read Threads from /proc/self/status");
  }
  return v;
}

/// Returns freed heap to the system, so that a resident-set sample does not reuse what the
/// previous repetition freed. A no-op outside glibc.
inline void trim_heap() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

inline std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

inline std::string limits_hint() {
  std::string hint = " (threads-max " + read_first_line("/proc/sys/kernel/threads-max") +
                     ", pid_max " + read_first_line("/proc/sys/kernel/pid_max") +
                     ", vm.max_map_count " + read_first_line("/proc/sys/vm/max_map_count");
  std::ifstream limits("/proc/self/limits");
  std::string line;
  while (std::getline(limits, line)) {
    if (line.rfind("Max processes", 0) == 0 || line.rfind("Max stack size", 0) == 0) {
      std::istringstream words(line.substr(14));
      std::string soft;
      words >> soft;
      hint += line[4] == 'p' ? ", max user processes (ulimit -u) " + soft
                             : ", stack size " + soft + " bytes";
    }
  }
  return hint + ")";
}

inline std::string describe_exception(const std::exception_ptr& error) {
  return supervisor::describe(error);
}

/// Bounds a wait on the ManualClock, so that a broken library makes the benchmark fail instead
/// of hang: its token is requested after `bound`.
class WaitBound {
 public:
  explicit WaitBound(std::chrono::seconds bound)
      : thread_([this, bound](const std::stop_token& over) {
          std::mutex mutex;
          std::condition_variable_any cv;
          std::unique_lock lock(mutex);
          cv.wait_for(lock, over, bound, [] { return false; });
          if (!over.stop_requested()) {
            expired_.request_stop();
          }
        }) {}

  [[nodiscard]] std::stop_token token() const { return expired_.get_token(); }

 private:
  std::stop_source expired_;
  std::jthread thread_;  // Last: stopped and joined first.
};

/// Collects what the supervisor reports to `Options::on_error`: in a benchmark, any report is
/// an internal error (a failed background start, most likely for lack of threads).
class ErrorSink {
 public:
  void add(const supervisor::ErrorReport<Key>& report) {
    std::lock_guard lock(mutex_);
    if (count_++ == 0) {
      first_ = std::string(supervisor::to_string(report.source)) + " failed" +
               (report.key != nullptr ? " for key " + std::to_string(*report.key) : "") + ": " +
               describe_exception(report.error);
    }
  }

  void check(const std::string& where) const {
    std::lock_guard lock(mutex_);
    if (count_ != 0) {
      throw BenchError(where + ": the supervisor reported " + std::to_string(count_) +
                       " error(s), the first: " + first_ + limits_hint());
    }
  }

 private:
  mutable std::mutex mutex_;
  std::size_t count_ = 0;
  std::string first_;
};

/// The library's tuning knobs under test (`--spin=NS`, `--reuse`); the library's defaults
/// otherwise (an empty spin: the default of each scenario's kind of runnable).
struct Tuning {
  std::optional<std::chrono::nanoseconds> handoff_spin = supervisor::Options<Key>{}.handoff_spin;
  bool reuse_threads = supervisor::Options<Key>{}.reuse_threads;
};

/// The manual clock's time at the real clock's price. A `ManualClock` reads one atomic word;
/// `SteadyClock`, the default a service runs on, reads the time-stamp counter (40 to 60 ns on a
/// virtual machine), a cost the library's rows must show. So each reading here makes the one
/// `SteadyClock` would (`now()` or `coarse_now()`), and returns the manual time, which the
/// scenarios move by hand.
class PricedClock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  explicit PricedClock(std::shared_ptr<supervisor::ManualClock> manual)
      : manual_(std::move(manual)) {}
  [[nodiscard]] time_point now() const noexcept {
    sink(supervisor::SteadyClock{}.now());
    return manual_->now();
  }
  [[nodiscard]] time_point coarse_now() const noexcept {
    sink(supervisor::SteadyClock{}.coarse_now());
    return manual_->now();
  }
  bool wait_until(time_point t, const std::stop_token& token) const {
    return manual_->wait_until(t, token);
  }

 private:
  static void sink(time_point t) noexcept {
    static std::atomic<std::int64_t> last{0};  // a plain store: kept, and no race
    last.store(t.time_since_epoch().count(), std::memory_order_relaxed);
  }
  std::shared_ptr<supervisor::ManualClock> manual_;
};

/// The options of every supervisor the scenarios build.
inline supervisor::Options<Key> bench_options(const Tuning& tuning,
                                              const std::shared_ptr<supervisor::ManualClock>& clock,
                                              ErrorSink& errors) {
  supervisor::Options<Key> options;
  options.handoff_spin = tuning.handoff_spin;
  options.reuse_threads = tuning.reuse_threads;
  // A manual clock never moves on its own: the initial wait ends only when every start of the
  // initial pass has finished, and no restart pass runs unless the benchmark advances it.
  options.clock = PricedClock(clock);
  options.restart_interval = std::chrono::minutes(1);
  options.on_error = [&errors](const supervisor::ErrorReport<Key>& report) { errors.add(report); };
  return options;
}

/// The `i`-th key: scattered 64-bit values (splitmix64, a bijection, so keys never collide).
/// Consecutive integers would flatter the floors: `std::hash<std::uint64_t>` is the identity, so
/// an `std::unordered_map` walked in key order touches its buckets and nodes sequentially.
inline Key key_at(std::uint64_t i) {
  std::uint64_t z = i + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31U);
}

/// A table of rows `key_at(0)` ... `key_at(n - 1)`.
inline std::shared_ptr<Table> make_table(std::size_t n) {
  auto table = std::make_shared<Table>();
  for (std::size_t i = 0; i < n; ++i) {
    table->insert_or_assign(key_at(i), std::make_shared<Worker>());
  }
  return table;
}

}  // namespace bench
