// `Supervisor::async_start` and `async_stop`: `start` and `stop` for callers that are coroutines
// on the executor's own threads, where the blocking forms are refused. Every wait is on a signal
// (latches, the process's own transitions, the event log).

#include <condition_variable>
#include <coroutine>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "catch_shim.hpp"
#include "coroutine_rig.hpp"
#include "fifo_loop.hpp"
#include "supervisor/supervisor.hpp"
#include "support.hpp"

namespace {

using coroutine_test::PoolRig;
using coroutine_test::Rig;
using coroutine_test::Script;
using coroutine_test::Session;
using supervisor::Task;
using test::FifoLoop;

}  // namespace

TEST_CASE("async calls: a coroutine on the pool starts and stops processes without blocking it",
          "[coroutine][async]") {
  PoolRig p;
  Session session;
  p.rig.table->insert_or_assign("a", session);
  p.rig.start_run();
  // The initial pass's wait ends as the process becomes ready, and its `ready` event may come
  // after the callback began (events.hpp: a `ready` and a `stop_requested` from another thread
  // come in either order): wait for it, so that the order checked below is the only one.
  REQUIRE(p.rig.log.wait_for("a", supervisor::EventKind::ready, 1));
  std::vector<std::error_code> codes;
  bool live_after_start = false;
  REQUIRE(p.drive([&]() -> Task<> {
    auto& sup = *p.rig.sup;
    codes.push_back(co_await sup.async_start("a"));        // the initial pass started it
    codes.push_back(co_await sup.async_stop("a"));         // graceful
    codes.push_back(co_await sup.async_stop("a"));         // gone
    codes.push_back(co_await sup.async_start("missing"));  // not in the table
    codes.push_back(co_await sup.async_start("a"));        // free again, and ready
    live_after_start = session.script->live == 1;
  }) == nullptr);
  CHECK(codes == std::vector<std::error_code>{supervisor::errc::process_exists, std::error_code{},
                                              supervisor::errc::process_not_found,
                                              supervisor::errc::not_in_table, std::error_code{}});
  CHECK(live_after_start);
  CHECK(session.script->graceful_ends == 1);
  REQUIRE(p.rig.log.wait_for("a", supervisor::EventKind::ready, 2));  // may follow the return
  CHECK(p.rig.log.kinds("a") == "starting ready stop_requested stopped starting ready");
  REQUIRE(p.rig.finish() == nullptr);
  CHECK(session.script->live == 0);
  CHECK(p.rig.reports.entries().empty());
}

TEST_CASE("async calls: a start that fails tells its awaiting caller why, with the key free",
          "[coroutine][async]") {
  PoolRig p;
  p.rig.start_run();
  Session failing;
  failing.script->kind = Script::Kind::fail_before_ready;
  p.rig.table->insert_or_assign("e", failing);
  Session throwing;
  throwing.script->kind = Script::Kind::throw_before_ready;
  p.rig.table->insert_or_assign("t", throwing);
  Session quitting;
  quitting.script->kind = Script::Kind::quit_before_ready;
  p.rig.table->insert_or_assign("q", quitting);
  std::vector<std::error_code> codes;
  std::vector<std::string> thrown;
  REQUIRE(p.drive([&]() -> Task<> {
    auto& sup = *p.rig.sup;
    for (const char* key : {"e", "t", "q", "e"}) {
      try {
        codes.push_back(co_await sup.async_start(key));
      } catch (const std::exception& e) {
        thrown.emplace_back(e.what());
      }
    }
  }) == nullptr);
  CHECK(codes == std::vector<std::error_code>{supervisor::errc::exited_before_ready});
  REQUIRE(thrown.size() == 3);
  CHECK(thrown[1] == "no connection");
  CHECK(failing.script->lives == 2);  // the key was free again at once
  REQUIRE(p.rig.finish() == nullptr);
  CHECK(p.rig.reports.entries().empty());  // each failure went to its caller
}

TEST_CASE("async calls: a canceled start forces the process and finishes once it has returned",
          "[coroutine][async]") {
  PoolRig p;
  p.rig.start_run();
  Session slow;
  slow.script->kind = Script::Kind::never_ready;
  slow.script->executor = supervisor::ExecutorRef(p.pool);
  std::stop_source cancel;
  slow.script->inside = [&] {
    cancel.request_stop();  // the caller is waiting for the start by now, or about to
    return std::error_code{};
  };
  p.rig.table->insert_or_assign("slow", slow);
  std::error_code code;
  int live_when_done = -1;
  REQUIRE(p.drive([&]() -> Task<> {
    code = co_await p.rig.sup->async_start("slow", cancel.get_token());
    live_when_done = slow.script->live;
  }) == nullptr);
  CHECK(code == supervisor::errc::canceled);
  CHECK(live_when_done == 0);
  CHECK(slow.script->forced_ends == 1);
  CHECK(p.rig.sup->keys().empty());
  REQUIRE(p.rig.finish() == nullptr);
}

TEST_CASE("async calls: a canceled stop forces the process, tells the hook, and waits for it",
          "[coroutine][async]") {
  PoolRig p;
  Session stubborn;
  stubborn.script->kind = Script::Kind::stubborn;
  stubborn.script->executor = supervisor::ExecutorRef(p.pool);
  std::stop_source cancel;
  stubborn.script->after_graceful = [&] { cancel.request_stop(); };
  p.rig.table->insert_or_assign("s", stubborn);
  p.rig.start_run();
  REQUIRE(p.rig.log.wait_for("s", supervisor::EventKind::ready, 1));
  std::error_code code;
  REQUIRE(p.drive([&]() -> Task<> {
    code = co_await p.rig.sup->async_stop("s", cancel.get_token());
  }) == nullptr);
  CHECK(code == supervisor::errc::canceled);
  CHECK(stubborn.script->live == 0);
  CHECK(stubborn.script->forced_ends == 1);
  CHECK(p.rig.log.kinds("s") == "starting ready stop_requested forced stopped");
  REQUIRE(p.rig.finish() == nullptr);
}

TEST_CASE("async calls: a process may start and stop others, and is refused its own stop",
          "[coroutine][async][deadlock]") {
  PoolRig p;
  Session other;
  p.rig.table->insert_or_assign("other", other);
  p.rig.start_run();
  REQUIRE(p.rig.log.wait_for("other", supervisor::EventKind::ready, 1));
  Session caller;
  std::vector<std::error_code> codes;
  caller.script->inside_async = [&]() -> Task<std::error_code> {
    auto& sup = *p.rig.sup;
    codes.push_back(co_await sup.async_stop("caller"));  // itself: would wait for itself
    codes.push_back(co_await sup.async_stop("other"));
    codes.push_back(co_await sup.async_start("other"));
    co_return std::error_code{};
  };
  p.rig.table->insert_or_assign("caller", caller);
  REQUIRE(p.drive([&]() -> Task<> { (void)co_await p.rig.sup->async_start("caller"); }) == nullptr);
  CHECK(codes ==
        std::vector<std::error_code>{std::make_error_code(std::errc::resource_deadlock_would_occur),
                                     std::error_code{}, std::error_code{}});
  CHECK(other.script->lives == 2);
  CHECK(other.script->graceful_ends == 1);
  REQUIRE(p.rig.finish() == nullptr);
}

TEST_CASE("async calls: a stop's caller is not released by the process calling ready again",
          "[coroutine][async]") {
  PoolRig p(1);  // one worker, which takes its own slot first: the order below is fixed
  Session twice;
  twice.script->kind = Script::Kind::ready_twice;
  twice.script->executor = supervisor::ExecutorRef(p.pool);
  p.rig.table->insert_or_assign("r", twice);
  p.rig.start_run();
  REQUIRE(p.rig.log.wait_for("r", supervisor::EventKind::ready, 1));
  std::error_code code;
  int live_when_done = -1;
  REQUIRE(p.drive([&]() -> Task<> {
    code = co_await p.rig.sup->async_stop("r");
    live_when_done = twice.script->live;
  }) == nullptr);
  CHECK(code == std::error_code{});
  CHECK(live_when_done == 0);
  CHECK(p.rig.log.kinds("r") == "starting ready stop_requested stopped");
  REQUIRE(p.rig.finish() == nullptr);
}

TEST_CASE("async calls: a stop of a process still queued on a one-thread executor goes through",
          "[coroutine][async][deadlock]") {
  FifoLoop loop;
  Rig rig;
  rig.options.executor = supervisor::ExecutorRef(loop);
  Session session;
  rig.table->insert_or_assign("a", session);
  rig.start_run();
  REQUIRE(rig.log.wait_for("a", supervisor::EventKind::ready, 1));
  std::error_code stopped{supervisor::errc::invalid_state};
  const auto both = std::make_shared<test::Event>();  // outlives a late `notify`
  // Named, not temporaries: the tasks' frames refer to the lambdas' captures.
  const auto second = [&]() -> Task<> { stopped = co_await rig.sup->async_stop("a"); };
  const std::stop_source never;  // a token: the start queues the task (see below)
  const auto first = [&]() -> Task<> {
    (void)co_await rig.sup->async_stop("a");
    supervisor::spawn(supervisor::ExecutorRef(loop), second(),
                      [both](const std::exception_ptr&) { both->notify(); });
    // Its task is queued behind `second`. (Without a token to watch, a caller on the executor
    // would run the task at once, in its own stead.)
    (void)co_await rig.sup->async_start("a", never.get_token());
  };
  supervisor::spawn(supervisor::ExecutorRef(loop), first(),
                    [both](const std::exception_ptr&) { both->notify(); });
  const bool went_through = both->wait(2);
  CHECK(went_through);
  if (!went_through) {
    loop.drain_here();
    REQUIRE(both->wait(2));
  }
  CHECK(stopped == std::error_code{});
  REQUIRE(rig.finish() == nullptr);
}

TEST_CASE("async calls: a stop that waits for the process's task to begin is woken when it does",
          "[coroutine][async][deadlock]") {
  // With an event hook, `async_stop` waits for the task's first step (its `starting` comes
  // first). Here the task begins and then waits for force without ever being ready: only the
  // wake-up at its beginning lets the stop go on and force it.
  FifoLoop loop;
  Rig rig;
  rig.options.executor = supervisor::ExecutorRef(loop);
  Session session;
  session.script->kind = Script::Kind::never_ready;
  rig.start_run();
  rig.table->insert_or_assign("a", session);
  std::error_code stopped{supervisor::errc::invalid_state};
  const auto both = std::make_shared<test::Event>();  // outlives a late `notify`
  // Named, not temporaries: the tasks' frames refer to the lambdas' captures. On the one
  // thread, first in first out: the start queues the task, then the stop runs before it. (With
  // a token to watch: without one, a caller on the executor would run the task at once.)
  const std::stop_source never;
  const auto starter = [&]() -> Task<> {
    (void)co_await rig.sup->async_start("a", never.get_token());
  };
  const auto stopper = [&]() -> Task<> { stopped = co_await rig.sup->async_stop("a"); };
  const auto first = [&]() -> Task<> {
    supervisor::spawn(supervisor::ExecutorRef(loop), starter(),
                      [both](const std::exception_ptr&) { both->notify(); });
    supervisor::spawn(supervisor::ExecutorRef(loop), stopper(),
                      [both](const std::exception_ptr&) { both->notify(); });
    co_return;
  };
  supervisor::spawn(supervisor::ExecutorRef(loop), first(), [](const std::exception_ptr&) {});
  CHECK(both->wait(2));
  CHECK(stopped == std::error_code{});
  CHECK(session.script->forced_ends == 1);
  REQUIRE(rig.finish() == nullptr);  // forces the process if the stop never went on
  REQUIRE(both->wait(2));
}
