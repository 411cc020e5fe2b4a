// `AsyncCalls::async_run`: `run_until` for a service whose main is a coroutine. The caller is
// suspended for the whole run, shutdown included, and resumed on an executor. Every wait is on a
// signal (the event log, the runnables' own events, the spawned coroutine's end).

#include <chrono>
#include <coroutine>
#include <exception>
#include <initializer_list>
#include <memory>
#include <new>
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

/// Sessions supervised on an executor, with an event log, and a coroutine main that awaits the
/// supervisor's `async_run`.
struct CoRun {
  std::shared_ptr<coroutine_test::Table> table = std::make_shared<coroutine_test::Table>();
  test::EventLog<std::string> log;
  supervisor::Options<std::string> options;
  std::unique_ptr<coroutine_test::Sup> sup;
  std::stop_source stop;
  Main out;
  std::unique_ptr<Spawned> main;

  explicit CoRun(supervisor::ExecutorRef executor) {
    options.executor = executor;
    options.on_event = log.hook();
  }
  /// Spawns the main on `on` (resumed on `resume_on`; `where` is the pool it checks it is
  /// resumed on), and waits until each of `keys` has been ready.
  void begin(supervisor::ExecutorRef on, std::chrono::milliseconds grace,
             supervisor::ThreadPool& where, supervisor::ExecutorRef resume_on,
             std::initializer_list<std::string> keys) {
    sup = std::make_unique<coroutine_test::Sup>(table, options);
    main = std::make_unique<Spawned>(
        on, main_coroutine(*sup, stop.get_token(), grace, where, resume_on, out));
    for (const std::string& key : keys) {
      REQUIRE(log.wait_for(key, EventKind::ready, 1));
    }
  }
  /// Requests the stop, and waits until the main has finished, without an exception.
  void end() {
    stop.request_stop();
    REQUIRE(main->wait());
    CHECK(main->failure == nullptr);
  }
};

}  // namespace

TEST_CASE("async_run: a coroutine main restores the table, runs until stop, and shuts down",
          "[coroutine][async]") {
  supervisor::ThreadPool pool(2);
  CoRun run(pool);
  Session a;
  Session b;
  run.table->insert_or_assign("a", a);
  run.table->insert_or_assign("b", b);
  run.begin(pool, 1h, pool, {}, {"a", "b"});
  CHECK(run.sup->keys().size() == 2);
  run.end();
  CHECK(run.out.code == std::error_code{});
  CHECK(run.out.resumed_on_pool);  // on `Options::executor`, the executor given by default
  // Everything stopped before the caller was resumed, gracefully.
  CHECK(a.script->live == 0);
  CHECK(b.script->live == 0);
  CHECK(a.script->graceful_ends == 1);
  CHECK(b.script->graceful_ends == 1);
  CHECK(run.sup->keys().empty());
  std::error_code ec;
  (void)run.sup->start("a", ec);
  CHECK(ec == supervisor::errc::not_running);
}

TEST_CASE("async_run: what outlasts the grace period is forced", "[coroutine][async]") {
  supervisor::ThreadPool pool(2);
  CoRun run(pool);
  Session stubborn;
  stubborn.script->kind = Script::Kind::stubborn;
  stubborn.script->executor = pool;
  // Asked to stop gracefully, it waits for force (with no grace, force may come first).
  stubborn.script->after_graceful = [] {};
  run.table->insert_or_assign("s", stubborn);
  run.begin(pool, 0ms, pool, {}, {"s"});
  run.end();
  CHECK(run.out.code == std::error_code{});
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

namespace {

/// Fails at once, asking for the whole supervisor to stop.
struct Escalator {
  Task<std::error_code> run(std::stop_token /*force*/, supervisor::AsyncReady& /*ready*/) const {
    throw std::system_error(make_error_code(supervisor::errc::escalate));
    co_return std::error_code{};
  }
};

/// Resumes what it is given at once, on the scheduling thread.
struct InlineExecutor {
  void schedule(std::coroutine_handle<> h) { h.resume(); }
};

/// Refuses everything: `ExecutorRef` then resumes inline.
struct RefusingExecutor {
  void schedule(std::coroutine_handle<> /*h*/) { throw std::bad_alloc(); }
};

using ThreadSup = supervisor::Supervisor<std::string, test::Probe>;
using ThreadTable = supervisor::MapTable<std::string, test::Probe>;

}  // namespace

TEST_CASE("async_run: the run's outcome is the awaited code", "[coroutine][async]") {
  supervisor::ThreadPool pool(2);
  auto table = std::make_shared<supervisor::MapTable<std::string, Escalator>>();
  table->insert_or_assign("e", Escalator{});
  test::Reports<std::string> reports;
  supervisor::Options<std::string> options;
  options.executor = pool;
  options.on_error = reports.hook();
  supervisor::Supervisor<std::string, Escalator> sup(table, options);
  std::stop_source never;
  Main out;
  Spawned main(pool, main_coroutine(sup, never.get_token(), 1h, pool, {}, out));
  REQUIRE(main.wait());
  CHECK(main.failure == nullptr);
  CHECK(out.code == supervisor::errc::escalated);
  CHECK(reports.count(supervisor::ErrorSource::start) == 1);
}

TEST_CASE("async_run: resume_on wins over Options::executor, and one thread is enough",
          "[coroutine][async]") {
  supervisor::ThreadPool processes(1);  // also the caller's: the run must not hold its thread
  supervisor::ThreadPool other(1);
  CoRun run(processes);
  Session session;
  run.table->insert_or_assign("s", session);
  run.begin(processes, 1h, other, other, {"s"});
  run.end();
  CHECK(run.out.resumed_on_pool);  // on `other`
  CHECK(session.script->graceful_ends == 1);
}

TEST_CASE("async_run: refused on a thread process of the supervisor too", "[coroutine][async]") {
  supervisor::ThreadPool pool(1);
  auto table = std::make_shared<ThreadTable>();
  test::Probe probe;
  InlineExecutor inline_executor;
  std::unique_ptr<ThreadSup> sup;
  std::stop_source never;
  Main out;
  std::unique_ptr<Spawned> inner;
  probe.state->on_enter = [&] {  // on the process's own thread, before ready
    inner = std::make_unique<Spawned>(inline_executor,
                                      main_coroutine(*sup, never.get_token(), 1h, pool, pool, out));
  };
  table->insert_or_assign("t", probe);
  sup = std::make_unique<ThreadSup>(table);
  std::stop_source stop;
  test::Background runner([&] { sup->run_until(stop.get_token(), 1h); });
  REQUIRE(probe.state->readied.wait());
  REQUIRE(inner->wait());
  CHECK(out.code == std::make_error_code(std::errc::resource_deadlock_would_occur));
  stop.request_stop();
  CHECK(runner.join() == nullptr);
}

// A coroutine process P1 of S1 awaits S2.async_run; a thread process P2 of S2 calls S1.run. P2
// would wait for S1's run, which waits for P1, which waits for S2's run, which waits for P2: as
// with a blocking `run_until` nested in P1, the call is refused at once.
TEST_CASE("async_run: the run works for its caller, so a cycle through it is refused",
          "[coroutine][async]") {
  supervisor::ThreadPool pool(2);
  Rig rig;  // S1
  rig.options.executor = pool;
  auto inner_table = std::make_shared<ThreadTable>();
  test::Probe p2;
  std::error_code from_p2;
  test::Event p2_called;
  p2.state->on_enter = [&] {
    // Bounded, so that a broken refusal fails the test instead of hanging it.
    const supervisor::Cancel bounded(std::chrono::seconds(30));
    rig.sup->run(
        bounded, [] {}, from_p2);
    p2_called.notify();
  };
  inner_table->insert_or_assign("p2", p2);
  ThreadSup s2(inner_table);
  std::stop_source s2_stop;
  Session p1;
  p1.script->inside_async = [&]() -> Task<std::error_code> {
    return s2.async_run(s2_stop.get_token(), 1h, pool);
  };
  rig.table->insert_or_assign("p1", p1);
  rig.start_run();
  REQUIRE(p2_called.wait());
  CHECK(from_p2 == std::make_error_code(std::errc::resource_deadlock_would_occur));
  s2_stop.request_stop();
  REQUIRE(rig.log.wait_for("p1", EventKind::ready, 1));
  CHECK(p1.script->inside_async_result == std::error_code{});
  CHECK(rig.finish() == nullptr);
}

TEST_CASE("async_run: an executor that refuses the caller: it goes on, inline, on the run's thread",
          "[coroutine][async]") {
  supervisor::ThreadPool pool(2);
  CoRun run(pool);
  Session session;
  run.table->insert_or_assign("s", session);
  RefusingExecutor refusing;
  run.begin(pool, 1h, pool, refusing, {"s"});
  run.end();
  CHECK(run.out.code == std::error_code{});
  CHECK_FALSE(run.out.resumed_on_pool);
  CHECK(session.script->live == 0);
}
