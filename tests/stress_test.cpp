#include "catch_shim.hpp"
#include "support.hpp"

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

#include <algorithm>
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
#include <optional>
#include <random>
#include <sstream>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ErrorSource;

namespace {

using Key = int;
constexpr int key_count = 32;

/// The runnables' own failures, so that the test tells them from anything the library throws.
///
/// Told apart by type, never by reading them: under ThreadSanitizer, reading an exception on one
/// thread while another drops the last `std::exception_ptr` to it is a false report, because the
/// reference count lives in the uninstrumented libstdc++ (`exception_ptr::_M_release`). Catching
/// by type happens inside libstdc++ too, so TSan sees no access; and no string member (as in
/// `std::runtime_error`) is freed with the exception.
struct StressError : std::exception {};
struct InitFailed final : StressError {
  [[nodiscard]] const char* what() const noexcept override { return "init failed"; }
};
struct ShutdownFailed final : StressError {
  [[nodiscard]] const char* what() const noexcept override { return "shutdown failed"; }
};

/// The `Threads:` line of /proc/self/status, or -1 where there is none (not Linux).
int thread_count() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) {
      return std::stoi(line.substr(8));
    }
  }
  return -1;
}

std::string describe(const std::error_code& ec) {
  return std::string(ec.category().name()) + ":" + std::to_string(ec.value()) + " (" +
         ec.message() + ")";
}

/// Blocks until one of three tokens is requested.
void wait_any(const std::stop_token& a, const std::stop_token& b, const std::stop_token& c) {
  std::mutex mutex;
  std::condition_variable_any cv;
  auto wake = [&]() noexcept {
    std::lock_guard lock(mutex);
    cv.notify_all();
  };
  // Registered before the lock is taken: on an already-requested token they run at once.
  std::stop_callback on_a(a, wake);
  std::stop_callback on_b(b, wake);
  std::stop_callback on_c(c, wake);
  std::unique_lock lock(mutex);
  cv.wait(lock, [&] { return a.stop_requested() || b.stop_requested() || c.stop_requested(); });
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

struct StressRunnable;
using Table = supervisor::MapTable<Key, StressRunnable>;

/// What every runnable of one test shares: per-key live counters and global counts.
struct Shared {
  struct Slot {
    std::atomic<int> live{0};
    std::mutex mutex;
    /// The slow phases under way for this key; requested to end them. Never more than one, but
    /// a list all the same, so that a broken invariant fails the test instead of hanging it.
    std::vector<std::shared_ptr<std::stop_source>> releases;
  };

  std::array<Slot, key_count> slots;
  std::atomic<long> violations{0};  // a runnable entered while its key had a live one
  std::atomic<long> entries{0};
  std::atomic<long> exits{0};
  std::atomic<long> not_ready{0};          // returned without calling ready
  std::atomic<long> threw_at_init{0};      // threw before ready (counted in not_ready too)
  std::atomic<long> threw_after_ready{0};  // threw after ready had returned
  std::atomic<long> erased_self{0};
  /// Requested when the workers are done: slow phases end at once from then on, so that a
  /// graceful shutdown never waits for a release that nobody will give.
  std::stop_source wind_down;
  /// Not owning: the table owns runnables that point here.
  Table* table = nullptr;

  /// The counts, read once, as plain numbers for the assertions.
  struct Totals {
    long entries, exits, not_ready, threw_after_ready, erased_self, violations, live;
  };
  [[nodiscard]] Totals totals() const {
    long live = 0;
    for (const auto& slot : slots) {
      live += slot.live.load();
    }
    return {entries.load(),
            exits.load(),
            not_ready.load(),
            threw_after_ready.load(),
            erased_self.load(),
            violations.load(),
            live};
  }

  /// Ends the slow phase of the runnable of `key`, if it is in one.
  void release(Key key) {
    Slot& slot = slots.at(static_cast<std::size_t>(key));
    std::lock_guard lock(slot.mutex);
    for (const auto& release : slot.releases) {
      release->request_stop();
    }
  }

  /// Blocks until released (by a worker's `get` or the clock driver), forced, or wound down.
  void slow_phase(Key key, const std::stop_token& force) {
    Slot& slot = slots.at(static_cast<std::size_t>(key));
    auto release = std::make_shared<std::stop_source>();
    {
      std::lock_guard lock(slot.mutex);
      slot.releases.push_back(release);
    }
    wait_any(release->get_token(), force, wind_down.get_token());
    std::lock_guard lock(slot.mutex);
    std::erase(slot.releases, release);
  }
};

enum class Start : std::uint8_t { ready, slow, throw_init, exit_early };
enum class Wait : std::uint8_t { until_stopped, early, early_erase };
enum class Finish : std::uint8_t { clean, slow, throw_error };

/// A runnable that counts itself in and out of its key, and misbehaves as told. Copies share one
/// `Shared`; a table row may be started many times (each pass restarts it once it has exited).
struct StressRunnable {
  std::shared_ptr<Shared> shared;
  Key key = 0;
  Start start = Start::ready;
  Wait wait = Wait::until_stopped;
  Finish finish = Finish::clean;

  void run(std::stop_token force, supervisor::Ready& ready) const {
    Shared& s = *shared;
    Shared::Slot& slot = s.slots.at(static_cast<std::size_t>(key));
    s.entries.fetch_add(1);
    if (slot.live.fetch_add(1) + 1 > 1) {
      s.violations.fetch_add(1);
    }
    struct Leave {
      Shared& s;
      Shared::Slot& slot;
      ~Leave() {
        slot.live.fetch_sub(1);
        s.exits.fetch_add(1);
      }
    } leave{s, slot};

    switch (start) {
      case Start::ready:
        break;
      case Start::slow:
        s.slow_phase(key, force);
        if (force.stop_requested()) {
          s.not_ready.fetch_add(1);
          return;
        }
        break;
      case Start::throw_init:
        s.not_ready.fetch_add(1);
        s.threw_at_init.fetch_add(1);
        throw InitFailed{};
      case Start::exit_early:
        s.not_ready.fetch_add(1);
        return;
    }

    if (wait == Wait::until_stopped) {
      ready();
    } else {
      // Return early on its own: `ready` with a token already requested returns at once.
      if (wait == Wait::early_erase) {
        s.table->erase(key);  // Removes itself for good (until a worker re-inserts the key).
        s.erased_self.fetch_add(1);
      }
      std::stop_source finished;
      finished.request_stop();
      ready(finished.get_token());
    }

    switch (finish) {
      case Finish::clean:
        return;
      case Finish::slow:
        s.slow_phase(key, force);
        return;
      case Finish::throw_error:
        s.threw_after_ready.fetch_add(1);
        throw ShutdownFailed{};
    }
  }
};

using Sup = supervisor::Supervisor<Key, StressRunnable>;

StressRunnable random_runnable(const std::shared_ptr<Shared>& shared, Key key, std::mt19937& rng) {
  StressRunnable r{shared, key};
  // Plain `%` on mt19937's output, whose sequence the standard fixes: the same seed gives the same
  // choices with every standard library (uniform_int_distribution does not promise that).
  const auto start_dice = rng() % 100;
  r.start = start_dice < 55   ? Start::ready
            : start_dice < 75 ? Start::slow
            : start_dice < 88 ? Start::throw_init
                              : Start::exit_early;
  const auto wait_dice = rng() % 100;
  r.wait = wait_dice < 60 ? Wait::until_stopped : wait_dice < 85 ? Wait::early : Wait::early_erase;
  const auto finish_dice = rng() % 100;
  r.finish = finish_dice < 55   ? Finish::clean
             : finish_dice < 75 ? Finish::slow
                                : Finish::throw_error;
  return r;
}

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
  std::array<std::atomic<long>, 7> reports{};  // by ErrorSource
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
    options.initial_wait = 1ms;  // Ended by the driver's first advance, if the starts hang.
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
    const auto limit = std::chrono::steady_clock::now() + 10s;
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

/// One worker's view: random operations on random keys, checking each outcome.
class Worker {
 public:
  Worker(Rig& rig, std::uint32_t seed) : rig_(rig), rng_(seed) {}

  void operations(int count) {
    for (int i = 0; i < count; ++i) {
      const Key key = static_cast<Key>(rng_() % key_count);
      const auto dice = rng_() % 100;
      try {
        if (dice < 24) {
          start(key);
        } else if (dice < 36) {
          stop(key);
        } else if (dice < 44) {
          rig_.table->erase(key);  // Stop for good: erase first, then stop.
          stop(key);
        } else if (dice < 60) {
          get(key);
        } else if (dice < 65) {
          keys();
        } else if (dice < 92) {
          rig_.table->insert_or_assign(key, random_runnable(rig_.shared, key, rng_));
          ++counts_["table insert"];
        } else {
          rig_.table->erase(key);
          ++counts_["table erase"];
        }
      } catch (...) {
        rig_.problems.add("unexpected exception escaped an operation: " +
                          test::what(std::current_exception()));
      }
    }
    flush();
  }

  /// Adds this worker's outcome counts to the rig's tally.
  void flush() {
    rig_.tally.merge(counts_);
    counts_.clear();
  }

  [[nodiscard]] long count(const std::string& outcome) const {
    auto it = counts_.find(outcome);
    return it == counts_.end() ? 0 : it->second;
  }

  /// Returns the outcome code (success also when the runnable threw).
  std::error_code start(Key key) {
    std::error_code ec;
    std::optional<StressRunnable> runnable;
    try {
      runnable = rig_.sup->start(key, ec);
    } catch (const InitFailed&) {
      ++counts_["start: runnable's exception"];
      return {};
    } catch (const ShutdownFailed&) {
      rig_.problems.add("start rethrew the runnable's shutdown failure, which comes after ready");
      return {};
    } catch (...) {
      rig_.problems.add("start threw " + test::what(std::current_exception()));
      return {};
    }
    ++counts_["start: " + (ec ? ec.message() : std::string("success"))];
    if (!ec) {
      expect(runnable.has_value() && runnable->key == key, "start", "returned a foreign runnable");
      return ec;
    }
    const bool allowed = ec == errc::process_exists || ec == errc::not_in_table ||
                         ec == errc::exited_before_ready ||
                         ec == errc::invalid_state ||  // a concurrent stop found it initial
                         (ec == errc::not_running && rig_.returning.load());
    expect(allowed, "start", describe(ec));
    return ec;
  }

  /// Random start / stop / get / keys (no table changes) until `start` reports `not_running`:
  /// across the callback's return and into `run`'s shutdown.
  void until_not_running() {
    for (;;) {
      const Key key = static_cast<Key>(rng_() % key_count);
      const auto dice = rng_() % 100;
      if (dice < 40) {
        if (start(key) == errc::not_running) {
          break;
        }
      } else if (dice < 70) {
        stop(key);
      } else if (dice < 95) {
        get(key);
      } else {
        keys();
      }
      std::this_thread::yield();
    }
    flush();
  }

  void stop(Key key) {
    std::error_code ec;
    try {
      rig_.sup->stop(key, ec);
    } catch (const StressError&) {  // Either: it may have been stopped while starting.
      ++counts_["stop: runnable's exception"];
      return;
    } catch (...) {
      rig_.problems.add("stop threw " + test::what(std::current_exception()));
      return;
    }
    ++counts_["stop: " + (ec ? ec.message() : std::string("success"))];
    expect(!ec || ec == errc::process_not_found, "stop", describe(ec));
  }

  void get(Key key) {
    std::error_code ec;
    std::optional<StressRunnable> runnable;
    const bool by_visit = rng_() % 2 == 0;  // the copy-free lookup, whose result is the same
    try {
      if (by_visit) {
        ec = rig_.sup->visit(key, [&](const StressRunnable& found) { runnable = found; });
      } else {
        runnable = rig_.sup->get(key, ec);
      }
    } catch (...) {
      rig_.problems.add("get threw " + test::what(std::current_exception()));
      return;
    }
    ++counts_[(by_visit ? "visit: " : "get: ") + (ec ? ec.message() : std::string("success"))];
    if (by_visit && ec == errc::process_not_running) {
      expect(!runnable.has_value(), "visit", "called back for a process not running");
      return;
    }
    if (!ec || ec == errc::process_not_running) {
      expect(runnable.has_value() && runnable->key == key, "get", "returned a foreign runnable");
    } else if (ec == errc::process_not_found) {
      expect(!runnable.has_value(), "get", "process_not_found with a runnable");
    } else {
      expect(false, "get", describe(ec));
    }
    if (rng_() % 2 == 0) {
      rig_.shared->release(key);  // Helps a slow start or a slow shutdown along.
    }
  }

  void keys() {
    auto keys = rig_.sup->keys();
    ++counts_["keys"];
    std::sort(keys.begin(), keys.end());
    expect(std::adjacent_find(keys.begin(), keys.end()) == keys.end(), "keys", "a duplicate key");
    expect(std::all_of(keys.begin(), keys.end(), [](Key k) { return k >= 0 && k < key_count; }),
           "keys", "a key out of range");
  }

 private:
  void expect(bool ok, const std::string& what, const std::string& detail) {
    if (!ok) {
      rig_.problems.add("unexpected outcome of " + what + ": " + detail);
    }
  }

  Rig& rig_;
  std::mt19937 rng_;
  std::map<std::string, long> counts_;
};

}  // namespace

TEST_CASE("stress: random start/stop/get/keys and table churn under a running restart loop",
          "[stress]") {
  constexpr int workers = 4;
  constexpr int operations_per_worker = 30000;
  constexpr std::uint32_t seed = 0x5EED2024;
  INFO("seeds: table " << seed << ", workers " << seed + 1 << ".." << seed + workers
                       << ", late worker " << seed + workers + 1 << ", clock driver "
                       << seed + 100);

  Rig rig;
  std::mt19937 table_rng(seed);
  for (Key key = 0; key < key_count; ++key) {
    rig.table->insert_or_assign(key, random_runnable(rig.shared, key, table_rng));
  }

  // One more thread keeps calling start / stop / get / keys across the callback's return and
  // into `run`'s shutdown, until `start` reports `not_running`; joined once `run` has returned.
  std::thread late;
  rig.run(
      seed + 100,
      [&] {
        late = std::thread([&rig] { Worker(rig, seed + workers + 1).until_not_running(); });
        std::vector<std::thread> pool;
        pool.reserve(workers);
        for (int w = 0; w < workers; ++w) {
          pool.emplace_back([&rig, w] {
            Worker(rig, seed + 1 + static_cast<std::uint32_t>(w)).operations(operations_per_worker);
          });
        }
        for (auto& thread : pool) {
          thread.join();
        }
      },
      [&] {
        if (late.joinable()) {
          late.join();
        }
      });

  const Shared::Totals s = rig.shared->totals();
  INFO("outcomes:\n" << rig.tally.str());
  INFO("runnables entered " << s.entries << ", exited " << s.exits << ", not ready " << s.not_ready
                            << ", threw after ready " << s.threw_after_ready
                            << ", erased themselves " << s.erased_self << "; restart passes "
                            << rig.passes);
  INFO("reports: start " << rig.reported(ErrorSource::start) << ", exit "
                         << rig.reported(ErrorSource::exit) << ", shutdown "
                         << rig.reported(ErrorSource::shutdown));
  INFO("unexpected outcomes: " << rig.problems.total() << "\n" << rig.problems.str());

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
  // 5. Nothing absurd from the error hook.
  CHECK(rig.reported(ErrorSource::iterate) == 0);
  CHECK(rig.reported(ErrorSource::row) == 0);
  CHECK(rig.reported(ErrorSource::close) == 0);
  CHECK(rig.reported(ErrorSource::start) <= s.not_ready);
  CHECK(rig.reported(ErrorSource::exit) <= s.threw_after_ready);
  CHECK(rig.reported(ErrorSource::start) + rig.reported(ErrorSource::exit) +
            rig.reported(ErrorSource::shutdown) <=
        s.not_ready + s.threw_after_ready);
  // The stress did stress: work happened, and the restart loop kept passing.
  CHECK(s.entries > 0);
  CHECK(rig.passes > 1);
  CHECK(rig.sup->keys().empty());
}

TEST_CASE("stress: stop races the restarts of a process that keeps failing", "[stress]") {
  // One key whose runnable fails as soon as it is ready: every restart pass starts it again,
  // while one thread keeps stopping it and another keeps starting and getting it. Each stop
  // lands on a process that is starting, running, exiting on its own, or gone.
  constexpr long restarts = 3000;
  constexpr std::uint32_t seed = 0x5EED0001;
  INFO("seeds: stopper " << seed << ", starter " << seed + 1 << ", clock driver " << seed + 100);

  Rig rig;
  const Key key = 0;
  rig.table->insert_or_assign(
      key, StressRunnable{rig.shared, key, Start::ready, Wait::early, Finish::throw_error});

  long stops_won = 0;
  bool reached = false;
  rig.run(seed + 100, [&] {
    const Shared& s = *rig.shared;
    const auto limit = std::chrono::steady_clock::now() + test::patience;
    auto more = [&] { return s.entries < restarts && std::chrono::steady_clock::now() < limit; };
    std::thread stopper([&] {
      Worker worker(rig, seed);
      while (more()) {
        worker.stop(key);
        std::this_thread::yield();
      }
      stops_won = worker.count("stop: success") + worker.count("stop: runnable's exception");
      worker.flush();
    });
    std::thread starter([&] {
      Worker worker(rig, seed + 1);
      while (more()) {
        worker.start(key);
        worker.get(key);
        std::this_thread::yield();
      }
      worker.flush();
    });
    stopper.join();
    starter.join();
    reached = s.entries >= restarts;
  });

  const Shared::Totals s = rig.shared->totals();
  INFO("outcomes:\n" << rig.tally.str());
  INFO("runnables entered " << s.entries << ", exited " << s.exits << "; restart passes "
                            << rig.passes << "; stops that won " << stops_won);
  INFO("reports: start " << rig.reported(ErrorSource::start) << ", exit "
                         << rig.reported(ErrorSource::exit) << ", shutdown "
                         << rig.reported(ErrorSource::shutdown));
  INFO("unexpected outcomes: " << rig.problems.total() << "\n" << rig.problems.str());

  CHECK_FALSE(rig.watchdog_fired);
  CHECK(rig.run_failure == nullptr);
  CHECK(reached);
  CHECK(rig.problems.total() == 0);
  CHECK(s.violations == 0);
  CHECK(s.entries == s.exits);
  CHECK(s.live == 0);
  CHECK(rig.threads_after == rig.threads_before);
  CHECK(rig.reported(ErrorSource::iterate) == 0);
  CHECK(rig.reported(ErrorSource::row) == 0);
  CHECK(rig.reported(ErrorSource::close) == 0);
  CHECK(stops_won > 0);                          // Stop did race the restarts...
  CHECK(rig.reported(ErrorSource::exit) > 0);    // ...and so did the process's own exits.
  CHECK(rig.reported(ErrorSource::start) == 0);  // It always becomes ready.
  CHECK(rig.reported(ErrorSource::exit) + rig.reported(ErrorSource::shutdown) <=
        s.threw_after_ready);
  CHECK(rig.sup->keys().empty());
}
