#pragma once

// The rig: one supervisor over a FaultTable on a ManualClock, `run` on a thread of its own, and
// the bookkeeping that the invariants need: what every caller and the error hook saw, and what
// went wrong. Every wait is bounded by `patience()`; a step that runs out of it records a
// `hang` and aborts the story (`StoryAborted`), and the checks then run on what is left.

#include <array>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <supervisor/supervisor.hpp>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "inject.hpp"
#include "subjects.hpp"

namespace fault {

/// How long a step may take before it counts as a hang (FAULT_PATIENCE_MS, default 2 s).
std::chrono::milliseconds patience();

/// Spins (never sleeps) until `condition` holds; false if `limit` ran out.
template <class Condition>
bool within(Condition condition, std::chrono::milliseconds limit = patience()) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > until) {
      return false;
    }
    std::this_thread::yield();
  }
  return true;
}

/// How many threads this process has now (entries of /proc/self/task).
int thread_count();

/// What one run of a scenario found. `problems` start with the symptom: hang, stuck key,
/// thread left, lost report, duplicated report, unusable.
struct Verdict {
  long opportunities = 0;  // K: faultable points met while armed
  long fired = 0;          // the N that fired, or 0
  std::vector<std::string> problems;
  void fail(std::string problem) { problems.push_back(std::move(problem)); }
};

struct StoryAborted {};

/// The outcome of one call into the library.
struct Outcome {
  long tag = 0;          // an injected exception reached the caller
  std::error_code code;  // an expected outcome
  bool other = false;    // some other exception (a worker's own, rethrown)
  [[nodiscard]] bool ok() const { return tag == 0 && !code && !other; }
};

using Sup = supervisor::Supervisor<FaultKey, Worker, FaultHash, FaultEqual>;
using CoSup = supervisor::Supervisor<FaultKey, CoWorker, FaultHash, FaultEqual>;

/// The executor of the coroutine flavor: the rig's pool, with every `schedule` an injection point
/// of kind `thread` (for a coroutine process, the counterpart of the thread made for it). A
/// launch that cannot be scheduled fails; a wake-up that cannot is resumed where it was made
/// (`ExecutorRef::schedule`).
class FaultExecutor {
 public:
  explicit FaultExecutor(supervisor::ThreadPool& pool) : pool_(pool) {}
  void schedule(std::coroutine_handle<> handle) {
    point(Kind::thread);
    pool_.schedule(handle);
  }
  [[nodiscard]] bool running_in_this_thread() const { return pool_.running_in_this_thread(); }

 private:
  supervisor::ThreadPool& pool_;
};

/// Which kind of runnable the supervisor under test runs: `Worker`s (a thread each), or
/// `CoWorker`s: coroutines on a one-thread pool of the rig's, whose every `schedule` may fail
/// (`coroutines`), or on the pool the supervisor starts for its `run` when it is given no
/// executor, one thread per core (`own_pool`: the default, with wake-ups across threads). The
/// stories are the same.
enum class Flavor { threads, coroutines, own_pool };

class Rig {
 public:
  Rig(Verdict& verdict, Flavor flavor);
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;
  ~Rig();

  // ---- Set-up (quiet) ----
  /// Puts a fresh script under `name` in the table and returns it.
  std::shared_ptr<Script> row(const std::string& name, Script::Start start = Script::Start::ready,
                              Script::Stop stop = Script::Stop::clean);
  void erase_row(const std::string& name);
  std::shared_ptr<Script> script(const std::string& name) { return scripts_.at(name); }
  [[nodiscard]] std::vector<std::string> names() const;

  // ---- Driving the story ----
  /// Starts `run`; returns once its callback runs (advancing the clock past the initial wait,
  /// and recording a hang, if the initial pass never lets go).
  void start_run();
  /// Returns from the callback (graceful) / cancels `run` (forced); neither waits.
  void request_finish() { finish_.request_stop(); }
  void request_cancel() { cancel_.request_stop(); }
  [[nodiscard]] bool run_returned() const { return run_done_.count() > runs_started_ - 1; }
  /// Waits until `run` returned (a hang otherwise).
  void await_run(const char* what);
  /// Lets the restart loop run one pass and waits until it armed its next wait.
  void restart_pass();
  /// Waits until every start of `names` has finished: its script readied or returned, or a
  /// start report for it came since `mark_reports()`.
  void settle(const std::vector<std::string>& names);
  void mark_reports() { report_mark_ = reports_.load(); }
  /// A bounded wait; on timeout records `hang: what` and aborts the story, which also ends when
  /// `run` has returned.
  template <class Condition>
  void wait(const std::string& what, Condition condition) {
    if (!within([&] { return condition() || run_returned(); }) || run_returned()) {
      hang(what);
    }
  }
  [[noreturn]] void hang(const std::string& what);

  Outcome start(const std::string& name, supervisor::Cancel cancel = {});
  Outcome stop(const std::string& name, supervisor::Cancel cancel = {});
  Outcome get(const std::string& name);
  /// Whether `name` still has a process (a quiet lookup: it meets no fault).
  bool has_process(const std::string& name);
  Outcome visit(const std::string& name);
  Outcome keys(std::vector<std::string>* out = nullptr);

  // ---- Checks, disarmed ----
  /// While `run` is active: for every key, get / keys() / a fresh start+stop agree.
  void check_keys_agree();
  /// Ends `run` (gracefully, then forced), then: no thread left, no key left.
  void end_run_and_check(int baseline_threads);
  /// Every injected exception that fired reached a caller or the hook exactly once.
  void check_reports(Kind kind);
  /// A second, clean `run` restores every row and starts and stops each key.
  void check_second_run(int baseline_threads);

  Verdict& verdict() { return verdict_; }
  supervisor::ManualClock& clock() { return *clock_; }

 private:
  struct Report {
    supervisor::ErrorSource source;
    long tag;
    std::array<char, 16> key;
  };
  void on_error(const supervisor::ErrorReport<FaultKey>& report);
  Outcome call(const std::function<void(std::error_code&)>& f);
  /// Calls `f(supervisor)` with the supervisor under test, whichever its flavor.
  template <class F>
  decltype(auto) with_sup(F&& f) {
    if (co_sup_) {
      return std::forward<F>(f)(*co_sup_);
    }
    return std::forward<F>(f)(*sup_);
  }
  [[nodiscard]] bool start_reported(const std::string& name) const;

  Verdict& verdict_;
  std::shared_ptr<supervisor::ManualClock> clock_ = std::make_shared<supervisor::ManualClock>();
  std::shared_ptr<FaultTable::Map> map_ = std::make_shared<FaultTable::Map>();
  std::shared_ptr<CoFaultTable::Map> co_map_ = std::make_shared<CoFaultTable::Map>();
  std::map<std::string, std::shared_ptr<Script>> scripts_;
  std::vector<std::shared_ptr<Script>> retired_;  // replaced scripts, still checked for life
  std::unique_ptr<Sup> sup_;
  // The coroutine flavor: the pool goes after the supervisor that schedules on it.
  std::unique_ptr<supervisor::ThreadPool> pool_;
  std::unique_ptr<FaultExecutor> executor_;
  std::unique_ptr<CoSup> co_sup_;
  int pool_threads_ = 0;  // the pool's own, not left behind by `run`

  mutable std::mutex report_mutex_;
  std::array<Report, 1024> report_log_{};
  std::atomic<int> reports_{0};
  int report_mark_ = 0;
  std::mutex caller_mutex_;
  std::vector<long> caller_tags_;

  std::stop_source cancel_;
  std::stop_source finish_;
  test::Event in_callback_;
  test::Event run_done_;
  int runs_started_ = 0;  // `run_done_` counts every run's return
  std::thread runner_;
};

}  // namespace fault
