// `AsyncCalls::async_run`: `run_until` for a service whose main is a coroutine. The caller is
// suspended for the whole run, shutdown included, and resumed on an executor. Every wait is on a
// signal (the event log, the runnables' own events, the spawned coroutine's end).

#include <chrono>
#include <exception>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>

#include "catch_shim.hpp"
#include "coroutine_rig.hpp"
#include "operations_event_log.hpp"
#include "supervisor/supervisor.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using coroutine_test::Rig;
using coroutine_test::Script;
using coroutine_test::Session;
using supervisor::EventKind;
using supervisor::Task;

/// A coroutine spawned on `executor` whose end the test waits for.
struct Spawned {
  std::shared_ptr<test::Event> finished = std::make_shared<test::Event>();
  std::exception_ptr failure;

  Spawned(supervisor::ExecutorRef executor, Task<> body) {
    supervisor::spawn(executor, std::move(body), [this, done = finished](std::exception_ptr e) {
      failure = std::move(e);
      done->notify();
    });
  }
  Spawned(const Spawned&) = delete;
  Spawned& operator=(const Spawned&) = delete;
  bool wait() { return finished->wait(); }
};

struct Main {
  std::error_code code;
  bool resumed_on_pool = false;
};

/// `co_await sup.async_run(stop, grace, resume_on)`, then where it was resumed.
template <class Sup>
Task<> main_coroutine(Sup& sup, std::stop_token stop, std::chrono::milliseconds grace,
                      supervisor::ThreadPool& pool, supervisor::ExecutorRef resume_on, Main& out) {
  out.code = co_await sup.async_run(stop, grace, resume_on);
  out.resumed_on_pool = pool.running_in_this_thread();
}

}  // namespace

TEST_CASE("async_run: a coroutine main restores the table, runs until stop, and shuts down",
          "[coroutine][async]") {
  supervisor::ThreadPool pool(2);
  auto table = std::make_shared<coroutine_test::Table>();
  Session a;
  Session b;
  table->insert_or_assign("a", a);
  table->insert_or_assign("b", b);
  test::EventLog<std::string> log;
  supervisor::Options<std::string> options;
  options.executor = pool;
  options.on_event = log.hook();
  coroutine_test::Sup sup(table, options);

  std::stop_source stop;
  Main out;
  Spawned main(pool, main_coroutine(sup, stop.get_token(), 1h, pool, {}, out));
  REQUIRE(log.wait_for("a", EventKind::ready, 1));
  REQUIRE(log.wait_for("b", EventKind::ready, 1));
  CHECK(sup.keys().size() == 2);
  stop.request_stop();
  REQUIRE(main.wait());
  CHECK(main.failure == nullptr);
  CHECK(out.code == std::error_code{});
  CHECK(out.resumed_on_pool);  // on `Options::executor`, the executor given by default
  // Everything stopped before the caller was resumed, gracefully.
  CHECK(a.script->live == 0);
  CHECK(b.script->live == 0);
  CHECK(a.script->graceful_ends == 1);
  CHECK(b.script->graceful_ends == 1);
  CHECK(sup.keys().empty());
  std::error_code ec;
  (void)sup.start("a", ec);
  CHECK(ec == supervisor::errc::not_running);
}

TEST_CASE("async_run: what outlasts the grace period is forced", "[coroutine][async]") {
  supervisor::ThreadPool pool(2);
  auto table = std::make_shared<coroutine_test::Table>();
  Session stubborn;
  stubborn.script->kind = Script::Kind::stubborn;
  stubborn.script->executor = pool;
  // Asked to stop gracefully, it waits for force (with no grace, force may come first).
  stubborn.script->after_graceful = [] {};
  table->insert_or_assign("s", stubborn);
  test::EventLog<std::string> log;
  supervisor::Options<std::string> options;
  options.executor = pool;
  options.on_event = log.hook();
  coroutine_test::Sup sup(table, options);

  std::stop_source stop;
  Main out;
  Spawned main(pool, main_coroutine(sup, stop.get_token(), 0ms, pool, {}, out));
  REQUIRE(log.wait_for("s", EventKind::ready, 1));
  stop.request_stop();
  REQUIRE(main.wait());
  CHECK(main.failure == nullptr);
  CHECK(out.code == std::error_code{});
  CHECK(stubborn.script->forced_ends == 1);
  CHECK(stubborn.script->live == 0);
}

TEST_CASE("async_run: a process of the supervisor is refused, with no effect",
          "[coroutine][async]") {
  supervisor::ThreadPool pool(2);
  Rig rig;
  rig.options.executor = pool;
  Session session;
  std::stop_source never;
  session.script->inside_async = [&rig, &never]() -> Task<std::error_code> {
    return rig.sup->async_run(never.get_token(), 1h);
  };
  rig.table->insert_or_assign("a", session);
  rig.start_run();
  REQUIRE(rig.log.wait_for("a", EventKind::ready, 1));
  CHECK(session.script->inside_async_result ==
        std::make_error_code(std::errc::resource_deadlock_would_occur));
  CHECK(rig.sup->keys().size() == 1);
  CHECK(rig.finish() == nullptr);
}

TEST_CASE("async_run: thread processes too; the caller needs an executor to come back to",
          "[coroutine][async]") {
  supervisor::ThreadPool pool(1);
  using ThreadSup = supervisor::Supervisor<std::string, test::Probe>;
  auto table = std::make_shared<supervisor::MapTable<std::string, test::Probe>>();
  test::Probe probe;
  table->insert_or_assign("t", probe);
  ThreadSup sup(table);  // no `Options::executor`

  std::stop_source stop;
  {
    Main out;
    Spawned refused(pool, main_coroutine(sup, stop.get_token(), 1h, pool, {}, out));
    REQUIRE(refused.wait());
    REQUIRE(refused.failure != nullptr);
    CHECK_THROWS_AS(std::rethrow_exception(refused.failure), std::invalid_argument);
    CHECK(probe.state->live == 0);  // nothing ran
  }
  Main out;
  Spawned main(pool, main_coroutine(sup, stop.get_token(), 1h, pool, pool, out));
  REQUIRE(probe.state->readied.wait());
  stop.request_stop();
  REQUIRE(main.wait());
  CHECK(main.failure == nullptr);
  CHECK(out.code == std::error_code{});
  CHECK(out.resumed_on_pool);
  CHECK(probe.state->live == 0);
}
