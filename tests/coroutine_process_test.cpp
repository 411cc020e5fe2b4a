// Coroutine processes (`CoroutineRunnable`): the same contract as thread processes, kept by a
// supervisor whose processes are coroutines resumed on an executor, never on threads of their
// own. Every wait is on a signal (latches, events, the process's own transitions).

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include "catch_shim.hpp"
#include "coroutine_rig.hpp"
#include "operations_event_log.hpp"
#include "supervisor/supervisor.hpp"
#include "support.hpp"

using namespace coroutine_test;  // NOLINT(google-build-using-namespace): the tests' own rig

TEST_CASE("coroutine process: start waits for ready, stop resumes it for a graceful end",
          "[coroutine]") {
  Rig rig;
  Session session;
  rig.table->insert_or_assign("a", session);
  rig.start_run();  // the initial pass starts "a"
  REQUIRE(rig.log.wait_for("a", supervisor::EventKind::ready, 1));
  CHECK(rig.sup->keys() == std::vector<std::string>{"a"});
  rig.table->insert_or_assign("b", session);
  (void)rig.sup->start("b");  // returns once b's coroutine has awaited `ready`
  CHECK(session.script->live == 2);
  rig.sup->stop("a");  // returns once a's coroutine has returned
  CHECK(session.script->graceful_ends == 1);
  CHECK(rig.log.kinds("a") == "starting ready stop_requested stopped");
  REQUIRE(rig.finish() == nullptr);  // the shutdown stops "b" the same way
  CHECK(session.script->live == 0);
  CHECK(session.script->graceful_ends == 2);
  CHECK(rig.reports.entries().empty());
}

TEST_CASE("coroutine process: a start that fails tells its caller why, with the key free again",
          "[coroutine]") {
  Rig rig;
  rig.start_run();
  Session failing;
  failing.script->kind = Script::Kind::fail_before_ready;
  rig.table->insert_or_assign("e", failing);
  CHECK(test::code_of([&] { (void)rig.sup->start("e"); }) == std::errc::io_error);
  Session throwing;
  throwing.script->kind = Script::Kind::throw_before_ready;
  rig.table->insert_or_assign("t", throwing);
  CHECK_THROWS_WITH(rig.sup->start("t"), "no connection");
  Session quitting;
  quitting.script->kind = Script::Kind::quit_before_ready;
  rig.table->insert_or_assign("q", quitting);
  CHECK(test::code_of([&] { (void)rig.sup->start("q"); }) == supervisor::errc::exited_before_ready);
  // Each key is free again at once: its record left the map before `start` returned.
  CHECK(test::code_of([&] { (void)rig.sup->start("e"); }) == std::errc::io_error);
  REQUIRE(rig.finish() == nullptr);
  CHECK(failing.script->lives == 2);
  CHECK(throwing.script->live == 0);
}

TEST_CASE("coroutine process: `co_await ready(early)` goes on when its token is requested",
          "[coroutine]") {
  Rig rig;
  Session session;
  session.script->kind = Script::Kind::exit_after;
  rig.table->insert_or_assign("x", session);
  rig.start_run();
  REQUIRE(rig.log.wait_for("x", supervisor::EventKind::ready, 1));
  rig.sup->stop("x");  // graceful: `ready(force)` is woken by the stop, not by force
  CHECK(rig.log.kinds("x") == "starting ready stop_requested stopped");
  REQUIRE(rig.finish() == nullptr);
}

TEST_CASE("coroutine process: a blocking call from a thread of the executor is refused",
          "[coroutine][deadlock]") {
  Rig rig;
  Session caller;
  std::error_code from_start;
  std::error_code from_stop;
  Sup* sup = nullptr;
  caller.script->inside = [&] {
    std::error_code ec;
    (void)sup->start("other", ec);
    from_start = ec;
    sup->stop("other", ec);
    from_stop = ec;
    return std::error_code{};
  };
  rig.table->insert_or_assign("other", Session{});
  rig.start_run();
  sup = rig.sup.get();
  rig.table->insert_or_assign("caller", caller);  // after `sup` is set: no pass starts it before
  (void)rig.sup->start("caller");
  CHECK(from_start == std::errc::resource_deadlock_would_occur);
  CHECK(from_stop == std::errc::resource_deadlock_would_occur);
  REQUIRE(rig.finish() == nullptr);
}

namespace {

/// An executor that holds what it is given until the test resumes it, on the test's thread.
class HeldExecutor {
 public:
  void schedule(std::coroutine_handle<> h) {
    const std::lock_guard lock(mutex_);
    queue_.push_back(h);
  }
  [[nodiscard]] bool running_in_this_thread() const noexcept { return draining(); }
  /// Resumes everything queued, and what that schedules, on the calling thread.
  void drain() {
    draining() = true;
    for (;;) {
      std::coroutine_handle<> next;
      {
        const std::lock_guard lock(mutex_);
        if (queue_.empty()) {
          break;
        }
        next = queue_.front();
        queue_.erase(queue_.begin());
      }
      next.resume();
    }
    draining() = false;
  }
  [[nodiscard]] std::size_t queued() const {
    const std::lock_guard lock(mutex_);
    return queue_.size();
  }

 private:
  static bool& draining() noexcept {
    thread_local bool on = false;
    return on;
  }
  mutable std::mutex mutex_;
  std::vector<std::coroutine_handle<>> queue_;
};
static_assert(supervisor::Executor<HeldExecutor>);

/// Ends `run`, resuming on this thread what its shutdown schedules; then `run`'s exception.
std::exception_ptr finish_draining(Rig& rig, HeldExecutor& executor) {
  rig.finish_source.request_stop();
  REQUIRE(test::eventually([&] {
    executor.drain();
    return rig.runner->finished();
  }));
  return rig.runner->join();
}

}  // namespace

TEST_CASE("coroutine process: scheduled and not yet resumed, it is already there",
          "[coroutine][executor]") {
  HeldExecutor executor;
  Rig rig;
  rig.options.executor = executor;
  rig.options.initial_wait = 0s;
  Session session;
  rig.table->insert_or_assign("a", session);
  rig.start_run();  // the initial pass schedules "a"; nothing runs it yet
  CHECK(executor.queued() == 1);
  CHECK(session.script->lives == 0);
  CHECK(rig.sup->keys() == std::vector<std::string>{"a"});  // taken, and found by lookups
  std::error_code ec;
  (void)rig.sup->start("a", ec);
  CHECK(ec == supervisor::errc::process_exists);
  executor.drain();  // "a" begins, and parks on `ready`
  CHECK(session.script->live == 1);
  CHECK(rig.log.kinds("a") == "starting ready");
  // The supervisor's shutdown wakes it through the executor, which the test drains meanwhile.
  REQUIRE(finish_draining(rig, executor) == nullptr);
  CHECK(session.script->graceful_ends == 1);
}

TEST_CASE("coroutine process: from the executor's thread, every call that may wait is refused",
          "[coroutine][executor][deadlock]") {
  HeldExecutor executor;
  Rig rig;
  rig.options.executor = executor;
  rig.options.initial_wait = 0s;
  Session caller;
  std::vector<std::error_code> said;
  caller.script->inside = [&] {
    std::error_code ec;
    (void)rig.sup->start("b", ec);
    said.push_back(ec);
    rig.sup->stop("b", ec);
    said.push_back(ec);
    said.push_back(rig.sup->reconcile());
    said.push_back(rig.sup->reconcile("b"));
    rig.sup->run(
        supervisor::Cancel{}, [] {}, ec);
    said.push_back(ec);
    return std::error_code{};
  };
  rig.table->insert_or_assign("a", caller);
  rig.start_run();
  executor.drain();
  REQUIRE(said.size() == 5);
  for (const auto& ec : said) {
    CHECK(ec == std::errc::resource_deadlock_would_occur);
  }
  REQUIRE(finish_draining(rig, executor) == nullptr);
}

TEST_CASE("coroutine process: canceling run forces the parked coroutines awake",
          "[coroutine][force]") {
  Rig rig;
  rig.options.initial_wait = std::chrono::hours(1);  // the callback sees both started
  Session session;
  rig.table->insert_or_assign("a", session);
  rig.table->insert_or_assign("b", session);
  std::stop_source cancel;
  rig.sup = std::make_unique<Sup>(rig.table, rig.options);
  test::Background runner([&] {
    rig.sup->run(supervisor::Cancel(cancel.get_token()), [&](const std::stop_token& stopping) {
      rig.in_callback.notify();
      test::wait_until_either(stopping, rig.finish_source.get_token());
    });
  });
  REQUIRE(rig.in_callback.wait());
  REQUIRE(session.script->live == 2);
  cancel.request_stop();  // force, not a graceful stop: each is woken by its force callback
  (void)runner.join();
  CHECK(session.script->live == 0);
  CHECK(session.script->graceful_ends == 0);
}

TEST_CASE("coroutine process: ten thousand live at once, all ready, none left after run",
          "[coroutine][many]") {
  constexpr int count = 10'000;
  supervisor::ThreadPool pool(2);  // before the rig: it outlives `run`
  Rig rig;
  rig.options.on_event = nullptr;  // the log would hold 40,000 events
  Session session;
  for (int i = 0; i < count; ++i) {
    rig.table->insert_or_assign("k" + std::to_string(i), session);
  }
  rig.options.executor = pool;
  rig.options.initial_wait = std::chrono::hours(1);  // ends when every start has settled
  rig.start_run();
  CHECK(rig.sup->keys().size() == count);
  CHECK(session.script->live == count);
  REQUIRE(rig.finish() == nullptr);
  CHECK(rig.sup->keys().empty());
  CHECK(session.script->live == 0);
  CHECK(session.script->graceful_ends == count);
  CHECK(rig.reports.entries().empty());
}

TEST_CASE("coroutine process: `ready.signal()` marks it running without suspending it",
          "[coroutine]") {
  Rig rig;
  Session worker;
  worker.script->kind = Script::Kind::signal_then_work;
  test::Event seen_running;
  bool signaled_before_it_parked = false;
  worker.script->after_signal = [&] {
    // Blocks a pool thread on purpose, until the test has seen the `ready` event: only the
    // signal can have sent it, since the coroutine has not awaited `ready` yet.
    signaled_before_it_parked = seen_running.wait();
  };
  rig.table->insert_or_assign("w", worker);
  rig.start_run();
  REQUIRE(rig.log.wait_for("w", supervisor::EventKind::ready, 1));
  seen_running.notify();
  REQUIRE(rig.finish() == nullptr);
  CHECK(signaled_before_it_parked);
  CHECK(worker.script->graceful_ends == 1);
  CHECK(rig.log.kinds("w") == "starting ready stop_requested stopped");  // one `ready` only
}

TEST_CASE(
    "coroutine process: ready.executor() is where it runs (the supervisor's own pool by "
    "default)",
    "[coroutine][executor]") {
  // No `Options::executor`: a stubborn session, woken by a graceful stop, suspends in
  // `until_stopped(force, ready.executor())`. Only then does the test, on a thread of its own,
  // cancel the stop, which forces it from that thread: it is resumed on the pool, not there.
  Rig rig;
  Session stubborn;
  stubborn.script->kind = Script::Kind::stubborn;  // its `executor` left empty
  stubborn.script->after_graceful = [] {};
  rig.table->insert_or_assign("s", stubborn);
  rig.start_run();
  REQUIRE(rig.log.wait_for("s", supervisor::EventKind::ready, 1));
  std::stop_source cancel;
  std::error_code code;
  test::Background stopper(
      [&] { rig.sup->stop("s", supervisor::Cancel(cancel.get_token()), code); });
  REQUIRE(stubborn.script->parked_for_force.wait());
  cancel.request_stop();
  REQUIRE(stopper.join() == nullptr);
  CHECK(code == supervisor::errc::canceled);
  CHECK(stubborn.script->forced_ends == 1);
  CHECK(stubborn.script->resumed_on_own_executor);
  CHECK(stubborn.script->live == 0);
  REQUIRE(rig.finish() == nullptr);
}

namespace {

/// A coroutine runnable as small as a session's handle: four bytes of state.
struct SmallSession {
  std::uint32_t tag = 0;
  supervisor::Task<> run(std::stop_token /*force*/, supervisor::AsyncReady& ready) const {
    co_await ready;
  }
};

}  // namespace

TEST_CASE("a supervisor's coroutine record stays within its byte budget", "[coroutine][memory]") {
  // Every live process pays for its record, a million times over (the bench's co_memory row).
  // With a 64-bit key and a small runnable it is 224 bytes with libstdc++ on 64-bit targets (the
  // sizes of its `std::shared_ptr`, `std::exception_ptr` and `std::stop_source` measured): the
  // parent token, the executor and the hand-off spin are its owner's, one table pointer serves
  // both ready targets, and the small fields fill what would be padding, the record's own in the
  // tail padding of its `ProcessCore`. With its control block and a frame of 128 bytes and its
  // home byte (g++ 12, a `run` that only awaits ready) its block is then 369 bytes, a 384-byte
  // chunk for glibc's malloc. A field added must find padding or pay for itself here.
#if defined(__GLIBCXX__)
  using Sup = supervisor::Supervisor<std::uint64_t, SmallSession>;
  using Record = supervisor::detail::ManagedProcess<Sup, std::uint64_t, SmallSession>;
  if constexpr (sizeof(void*) == 8) {
    CHECK(sizeof(Record) <= 224);
  }
#endif
}
