#pragma once

// Bounded stress tests: random concurrent start / stop / get / keys and table churn while the
// restart loop runs continuously on a ManualClock that a driver thread advances. Nothing here
// sleeps: every wait is on a condition variable, a stop token, or the manual clock. The only
// polling is bounded: the thread count after `run` (see `Rig::run`), and busy loops of calls
// that yield between iterations.
//
// What they check, on the test's main thread once `run` has returned:
// 1. at most one live runnable per key, ever (each runnable counts itself in and out of its key);
// 2. every runnable that entered `run` has returned;
// 3. no thread is left behind (`Threads:` of /proc/self/status, before and after);
// 4. every outcome of start / stop / get / keys is one the docs allow;
// 5. the error hook got nothing absurd (no table errors from a MapTable, keys and exceptions
//    that fit the source, no more reports than failures).

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "../catch_shim.hpp"
#include "../support.hpp"
#include "runnable.hpp"

namespace stress {

using supervisor::errc;
using supervisor::ErrorSource;

/// The `Threads:` line of /proc/self/status, or -1 where there is none (not Linux).
inline int thread_count() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) {
      return std::stoi(line.substr(8));
    }
  }
  return -1;
}

inline std::string describe(const std::error_code& ec) {
  return std::string(ec.category().name()) + ":" + std::to_string(ec.value()) + " (" +
         ec.message() + ")";
}

/// A thread-safe list of everything that went wrong off the main thread.
class Problems {
 public:
  void add(std::string problem) {
    std::lock_guard lock(mutex_);
    ++total_;
    if (list_.size() < 50) {
      list_.push_back(std::move(problem));
    }
  }
  /// The problems, one a line, for INFO.
  [[nodiscard]] std::string str() const {
    std::lock_guard lock(mutex_);
    std::string out;
    for (const auto& problem : list_) {
      out += "  " + problem + "\n";
    }
    return out;
  }
  [[nodiscard]] long total() const {
    std::lock_guard lock(mutex_);
    return total_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> list_;
  long total_ = 0;
};

/// How often each outcome happened: printed on failure (or with `-s`), to show the mix.
class Tally {
 public:
  void merge(const std::map<std::string, long>& counts) {
    std::lock_guard lock(mutex_);
    for (const auto& [what, n] : counts) {
      counts_[what] += n;
    }
  }
  [[nodiscard]] std::string str() const {
    std::lock_guard lock(mutex_);
    std::ostringstream out;
    for (const auto& [what, n] : counts_) {
      out << "  " << what << ": " << n << '\n';
    }
    return out.str();
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, long> counts_;
};

/// A supervisor on a manual clock, a counting error hook, and `run` with a clock driver going.
class Rig {
 public:
  static constexpr auto interval = std::chrono::minutes(1);
  /// A safety net, not a timing: if `run` has not returned by then, it is canceled (forcing every
  /// runnable, which unblocks every worker) and the test fails instead of hanging.
  static constexpr auto run_limit = std::chrono::minutes(4);

  std::shared_ptr<Shared> shared = std::make_shared<Shared>();
  std::shared_ptr<Table> table = std::make_shared<Table>();
  std::shared_ptr<supervisor::ManualClock> clock = std::make_shared<supervisor::ManualClock>();
  Problems problems;
  Tally tally;
  std::array<std::atomic<long>, 8> reports{};  // by ErrorSource
  std::unique_ptr<Sup> sup;
  /// Set just before the callback returns: from then on, `start` may fail with `not_running`.
  std::atomic<bool> returning{false};

  // Filled by `run`.
  int threads_before = 0;
  int threads_after = 0;
  long passes = 0;
  bool watchdog_fired = false;
  std::exception_ptr run_failure;

  Rig() {
    shared->table = table.get();
    supervisor::Options<Key> options;
    options.clock = clock;
    options.initial_wait =
        std::chrono::milliseconds(1);  // Ended by the driver's first advance, if the starts hang.
    options.restart_interval = interval;
    options.on_error = [this](const supervisor::ErrorReport<Key>& report) { on_report(report); };
    sup = std::make_unique<Sup>(table, std::move(options));
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;
  ~Rig() = default;

  [[nodiscard]] long reported(ErrorSource source) const {
    return reports.at(static_cast<std::size_t>(source)).load();
  }

  /// What every stress test shows on failure (or with `-s`): the mix of outcomes, the reports of
  /// runnables' failures, and what went wrong off the main thread.
  [[nodiscard]] std::string summary() const {
    std::ostringstream out;
    out << "outcomes:\n"
        << tally.str() << "reports: start " << reported(ErrorSource::start) << ", exit "
        << reported(ErrorSource::exit) << ", shutdown " << reported(ErrorSource::shutdown)
        << "\nunexpected outcomes: " << problems.total() << "\n"
        << problems.str();
    return out.str();
  }

  /// Runs `sup.run(callback)` on this thread while a driver thread keeps the restart loop going:
  /// it waits until the supervisor sleeps on the clock, releases some slow runnables, and
  /// advances the clock by one interval. The driver starts before `run`, so that it also ends
  /// the initial wait if some starts of the initial pass hang.
  template <class Callback>
  void run(std::uint32_t driver_seed, Callback callback) {
    run(driver_seed, std::move(callback), [] {});
  }

  /// The same, with `after_run` called once `run` has returned, before the threads are counted:
  /// to join threads that outlive the callback.
  template <class Callback, class AfterRun>
  void run(std::uint32_t driver_seed, Callback callback, AfterRun after_run) {
    // Under ThreadSanitizer the first thread creation also starts TSan's own background thread:
    // make that happen before counting.
    std::thread([] {}).join();
    threads_before = thread_count();

    std::stop_source cancel;
    std::stop_source driver_stop;
    std::atomic<long> driver_passes{0};
    std::mutex finished_mutex;
    std::condition_variable finished_cv;
    bool finished = false;
    std::atomic<bool> fired{false};
    {
      test::Background driver([&] {
        std::mt19937 rng(driver_seed);
        const std::stop_token stop = driver_stop.get_token();
        while (clock->wait_for_sleepers(1, stop)) {
          for (Key key = 0; key < key_count; ++key) {
            if (rng() % 4 == 0) {
              shared->release(key);
            }
          }
          clock->advance(interval);
          driver_passes.fetch_add(1);
        }
      });
      test::Background watchdog([&] {
        std::unique_lock lock(finished_mutex);
        if (!finished_cv.wait_for(lock, run_limit, [&] { return finished; })) {
          fired = true;
          cancel.request_stop();
        }
      });

      try {
        sup->run(cancel.get_token(), [&] {
          callback();
          shared->wind_down.request_stop();
          returning = true;
        });
      } catch (...) {
        run_failure = std::current_exception();
      }
      after_run();

      {
        std::lock_guard lock(finished_mutex);
        finished = true;
      }
      finished_cv.notify_all();
      driver_stop.request_stop();
      if (auto failure = driver.join()) {
        problems.add("clock driver threw: " + test::what(failure));
      }
      if (auto failure = watchdog.join()) {
        problems.add("watchdog threw: " + test::what(failure));
      }
    }
    passes = driver_passes.load();
    watchdog_fired = fired.load();

    // A joined thread may still be counted for a moment: the kernel wakes `join` when it clears
    // the thread's tid, a little before it drops the thread from the count. Poll (bounded).
    threads_after = thread_count();
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (threads_after != threads_before && std::chrono::steady_clock::now() < limit) {
      std::this_thread::yield();
      threads_after = thread_count();
    }
  }

 private:
  void on_report(const supervisor::ErrorReport<Key>& report) {
    const auto index = static_cast<std::size_t>(report.source);
    if (index >= reports.size()) {
      problems.add("report with an unknown source " + std::to_string(index));
      return;
    }
    reports.at(index).fetch_add(1);
    const std::string source(supervisor::to_string(report.source));
    if (!report.error) {
      problems.add("report without an error from " + source);
      return;
    }
    switch (report.source) {
      case ErrorSource::iterate:
      case ErrorSource::row:
      case ErrorSource::close:
      case ErrorSource::clock:
        problems.add("a MapTable and a ManualClock never throw, yet: " + source + ": " +
                     test::what(report.error));
        return;
      case ErrorSource::given_up:
        problems.add("no key is given up without a restart policy, yet: " +
                     test::what(report.error));
        return;
      case ErrorSource::start:
      case ErrorSource::exit:
      case ErrorSource::shutdown:
        break;
    }
    if (report.key == nullptr || *report.key < 0 || *report.key >= key_count) {
      problems.add(source + " report without a valid key: " + test::what(report.error));
      return;
    }
    try {
      std::rethrow_exception(report.error);
    } catch (const InitFailed&) {
      // A start fails in init. So may a process that `run`'s shutdown stops while a pass is still
      // starting it: that one is reported as a shutdown failure.
      if (report.source == ErrorSource::exit) {
        problems.add("exit report with the runnable's init failure");
      }
    } catch (const ShutdownFailed&) {
      // Thrown after ready: never a failed start.
      if (report.source == ErrorSource::start) {
        problems.add("start report with the runnable's shutdown failure");
      }
    } catch (const std::system_error& e) {  // Made on this thread: safe to read.
      if (report.source != ErrorSource::start || e.code() != errc::exited_before_ready) {
        problems.add(source + " report with an unexpected code: " + describe(e.code()));
      }
    } catch (...) {
      problems.add(source + " report with an unexpected exception: " + test::what(report.error));
    }
  }
};

/// The checks every stress test ends with, once `run` has returned (numbered as at the top).
inline void check_invariants(const Rig& rig, const Shared::Totals& s) {
  CHECK_FALSE(rig.watchdog_fired);
  CHECK(rig.run_failure == nullptr);
  CHECK(rig.problems.total() == 0);
  // 1. At most one live runnable per key.
  CHECK(s.violations == 0);
  // 2. Every runnable that was started has returned.
  CHECK(s.entries == s.exits);
  CHECK(s.live == 0);
  // 3. No thread left behind.
  CHECK(rig.threads_after == rig.threads_before);
  // 5. No table errors from a MapTable.
  CHECK(rig.reported(ErrorSource::iterate) == 0);
  CHECK(rig.reported(ErrorSource::row) == 0);
  CHECK(rig.reported(ErrorSource::close) == 0);
  CHECK(rig.sup->keys().empty());
}

}  // namespace stress
