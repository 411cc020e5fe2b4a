// What `async_start` and `async_stop` return, a `Call`: lazy, awaited once, convertible to a
// `Task`; and the calls' outcomes on their own path, the one without a token to watch or an event
// hook to wait for, where the wait lives in the caller's frame. Every wait is on a signal.

#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include "catch_shim.hpp"
#include "coroutine_rig.hpp"
#include "supervisor/supervisor.hpp"
#include "support.hpp"

namespace {

using coroutine_test::PoolRig;
using coroutine_test::Script;
using coroutine_test::Session;
using supervisor::Task;

using Call = coroutine_test::Sup::Call;
static_assert(!std::is_copy_constructible_v<Call>);
static_assert(std::is_convertible_v<Call&&, Task<std::error_code>>);

/// A key whose move throws while `throw_on_move` is set (its copy never does).
struct FragileKey {
  static inline std::atomic<bool> throw_on_move{false};
  std::string name;

  explicit FragileKey(std::string n) : name(std::move(n)) {}
  FragileKey(const FragileKey&) = default;
  // NOLINTNEXTLINE(performance-noexcept-move-constructor,performance-move-constructor-init)
  FragileKey(FragileKey&& other) : name(other.name) {
    if (throw_on_move) {
      throw std::runtime_error("key move");
    }
  }
  FragileKey& operator=(const FragileKey&) = default;
  FragileKey& operator=(FragileKey&&) = default;
  ~FragileKey() = default;
  bool operator==(const FragileKey& other) const { return name == other.name; }
};
struct FragileKeyHash {
  std::size_t operator()(const FragileKey& key) const { return std::hash<std::string>{}(key.name); }
};

}  // namespace

TEST_CASE("async call: without a token or a hook, each outcome reaches the awaiting caller",
          "[coroutine][async]") {
  PoolRig q(2, false);
  Session steady;
  q.rig.table->insert_or_assign("a", steady);
  Session quitting;
  quitting.script->kind = Script::Kind::quit_before_ready;
  Session failing;
  failing.script->kind = Script::Kind::fail_before_ready;
  Session throwing;
  throwing.script->kind = Script::Kind::throw_before_ready;
  Session stubborn;  // throws once woken by its graceful stop
  stubborn.script->kind = Script::Kind::stubborn;
  stubborn.script->after_graceful = [] { throw std::runtime_error("flush failed"); };
  q.rig.start_run();  // its first pass starts "a"
  q.rig.table->insert_or_assign("q", quitting);
  q.rig.table->insert_or_assign("e", failing);
  q.rig.table->insert_or_assign("t", throwing);
  q.rig.table->insert_or_assign("s", stubborn);
  std::vector<std::error_code> codes;
  std::vector<std::string> thrown;
  int live_after_start = -1;
  REQUIRE(q.drive([&]() -> Task<> {
    auto& sup = *q.rig.sup;
    codes.push_back(co_await sup.async_start("a"));  // started by the pass
    codes.push_back(co_await sup.async_stop("a"));   // graceful
    codes.push_back(co_await sup.async_stop("a"));   // gone
    codes.push_back(co_await sup.async_start("missing"));
    codes.push_back(co_await sup.async_start("a"));
    live_after_start = steady.script->live;
    codes.push_back(co_await sup.async_start("q"));
    for (const char* key : {"e", "t", "s"}) {
      try {
        codes.push_back(co_await sup.async_start(key));
        codes.push_back(co_await sup.async_stop(key));
      } catch (const std::runtime_error& e) {
        thrown.emplace_back(e.what());
      }
    }
  }) == nullptr);
  CHECK(codes == std::vector<std::error_code>{
                     supervisor::errc::process_exists, std::error_code{},
                     supervisor::errc::process_not_found, supervisor::errc::not_in_table,
                     std::error_code{}, supervisor::errc::exited_before_ready, std::error_code{}});
  REQUIRE(thrown.size() == 3);  // the first: the code "e" returned, as an exception
  CHECK(thrown[1] == "no connection");
  CHECK(thrown[2] == "flush failed");
  CHECK(failing.script->live == 0);
  CHECK(live_after_start == 1);
  CHECK(steady.script->graceful_ends == 1);
  CHECK(stubborn.script->live == 0);  // the stop's caller heard it once `run` had returned
  REQUIRE(q.rig.finish() == nullptr);
  CHECK(q.rig.reports.entries().empty());  // each failure went to its caller
}

TEST_CASE("async call: without a hook, a process is refused its own stop and may stop others",
          "[coroutine][async][deadlock]") {
  PoolRig q(2, false);
  Session other;
  q.rig.table->insert_or_assign("other", other);
  q.rig.start_run();
  Session caller;
  std::vector<std::error_code> codes;
  caller.script->inside_async = [&]() -> Task<std::error_code> {
    auto& sup = *q.rig.sup;
    codes.push_back(co_await sup.async_stop("caller"));  // itself: would wait for itself
    codes.push_back(co_await sup.async_stop("other"));
    codes.push_back(co_await sup.async_start("other"));
    co_return std::error_code{};
  };
  q.rig.table->insert_or_assign("caller", caller);
  REQUIRE(q.drive([&]() -> Task<> { (void)co_await q.rig.sup->async_start("caller"); }) == nullptr);
  CHECK(codes ==
        std::vector<std::error_code>{std::make_error_code(std::errc::resource_deadlock_would_occur),
                                     std::error_code{}, std::error_code{}});
  CHECK(caller.script->live == 1);  // refused with no effect: still running
  CHECK(other.script->lives == 2);
  REQUIRE(q.rig.finish() == nullptr);
}

TEST_CASE("async call: without a hook, a second stop while the first waits is refused at once",
          "[coroutine][async]") {
  PoolRig q(2, false);
  Session stubborn;  // after its graceful stop, waits for force
  stubborn.script->kind = Script::Kind::stubborn;
  stubborn.script->after_graceful = [] {};
  q.rig.options.shutdown_timeout = {};  // the shutdown forces it at once
  q.rig.start_run();
  q.rig.table->insert_or_assign("s", stubborn);
  REQUIRE(q.drive([&]() -> Task<> { (void)co_await q.rig.sup->async_start("s"); }) == nullptr);
  std::error_code first{supervisor::errc::invalid_state};
  const auto first_done = std::make_shared<test::Event>();  // outlives a late `notify`
  const auto stop_first = [&]() -> Task<> { first = co_await q.rig.sup->async_stop("s"); };
  supervisor::spawn(supervisor::ExecutorRef(q.pool), stop_first(),
                    [first_done](const std::exception_ptr&) { first_done->notify(); });
  REQUIRE(stubborn.script->parked_for_force.wait());  // the first stop's claim is taken
  std::error_code second;
  REQUIRE(q.drive([&]() -> Task<> { second = co_await q.rig.sup->async_stop("s"); }) == nullptr);
  CHECK(second == supervisor::errc::process_not_found);
  CHECK(first_done->count() == 0);     // still waiting for the process
  REQUIRE(q.rig.finish() == nullptr);  // forces it
  REQUIRE(first_done->wait());
  CHECK(first == std::error_code{});
  CHECK(stubborn.script->forced_ends == 1);
}

TEST_CASE("async call: runs only when awaited, once; a moved-from or awaited call throws",
          "[coroutine][async]") {
  PoolRig q(2, false);
  Session session;
  q.rig.start_run();
  q.rig.table->insert_or_assign("a", session);
  std::vector<std::error_code> codes;
  std::vector<std::string> thrown;
  int lives_before_await = -1;
  REQUIRE(q.drive([&]() -> Task<> {
    auto& sup = *q.rig.sup;
    { Call dropped = sup.async_start("a"); }  // never awaited: nothing runs
    Call first = sup.async_start("a");
    lives_before_await = session.script->lives;
    Call moved = std::move(first);
    // NOLINTNEXTLINE(bugprone-use-after-move): awaiting a moved-from call is what is tested.
    for (Call* call : {&first, &moved, &moved}) {
      try {
        codes.push_back(co_await std::move(*call));
      } catch (const std::logic_error& e) {
        thrown.emplace_back(e.what());
      }
    }
    codes.push_back(co_await sup.async_stop("a"));
  }) == nullptr);
  CHECK(lives_before_await == 0);
  CHECK(codes == std::vector<std::error_code>{std::error_code{}, std::error_code{}});
  CHECK(thrown.size() == 2);  // the moved-from call, and the second await
  CHECK(session.script->lives == 1);
  REQUIRE(q.rig.finish() == nullptr);
}

TEST_CASE("async call: converts to a Task, which runs it when awaited", "[coroutine][async]") {
  PoolRig q(2, false);
  Session session;
  q.rig.start_run();
  q.rig.table->insert_or_assign("a", session);
  std::vector<std::error_code> codes;
  int lives_before_await = -1;
  int live_after_start = -1;
  REQUIRE(q.drive([&]() -> Task<> {
    auto& sup = *q.rig.sup;
    Task<std::error_code> start = sup.async_start("a");
    const std::function<Task<std::error_code>()> stop = [&] { return sup.async_stop("a"); };
    lives_before_await = session.script->lives;
    codes.push_back(co_await std::move(start));
    live_after_start = session.script->live;
    codes.push_back(co_await stop());
  }) == nullptr);
  CHECK(lives_before_await == 0);
  CHECK(codes == std::vector<std::error_code>{std::error_code{}, std::error_code{}});
  CHECK(live_after_start == 1);
  CHECK(session.script->live == 0);
  CHECK(session.script->graceful_ends == 1);
  REQUIRE(q.rig.finish() == nullptr);
}

TEST_CASE("async call: a key whose move throws leaves the call whole, to be awaited again",
          "[coroutine][async]") {
  using FragileSup = supervisor::Supervisor<FragileKey, Session, FragileKeyHash>;
  supervisor::ThreadPool pool(2);
  auto table = std::make_shared<supervisor::MapTable<FragileKey, Session, FragileKeyHash>>();
  Session session;
  table->insert_or_assign(FragileKey("a"), session);
  supervisor::Options<FragileKey> options;
  options.executor = supervisor::ExecutorRef(pool);
  FragileSup sup(table, options);
  std::vector<std::error_code> codes;
  int moves_thrown = 0;
  int live_after_start = -1;
  sup.run([&] {
    sup.stop(FragileKey("a"));                              // the restore started it
    const auto finished = std::make_shared<test::Event>();  // outlives a late `notify`
    std::exception_ptr failure;
    const auto body = [&]() -> Task<> {
      auto start = sup.async_start(FragileKey("a"));
      FragileKey::throw_on_move = true;
      try {
        auto moved = std::move(start);  // throws: `start` keeps its supervisor
      } catch (const std::runtime_error&) {
        ++moves_thrown;
      }
      try {
        // NOLINTNEXTLINE(bugprone-use-after-move): the move threw, so `start` is whole.
        codes.push_back(co_await std::move(start));  // the awaiter's move throws too
      } catch (const std::runtime_error&) {
        ++moves_thrown;
      }
      FragileKey::throw_on_move = false;
      // NOLINTNEXTLINE(bugprone-use-after-move): both moves threw, so `start` is whole.
      codes.push_back(co_await std::move(start));
      live_after_start = session.script->live;
      codes.push_back(co_await sup.async_stop(FragileKey("a")));
    };
    supervisor::spawn(supervisor::ExecutorRef(pool), body(),
                      [&failure, finished](std::exception_ptr e) {
                        failure = std::move(e);
                        finished->notify();
                      });
    REQUIRE(finished->wait());
    CHECK(failure == nullptr);
  });
  FragileKey::throw_on_move = false;
  CHECK(moves_thrown == 2);
  CHECK(codes == std::vector<std::error_code>{std::error_code{}, std::error_code{}});
  CHECK(live_after_start == 1);
  CHECK(session.script->live == 0);
}
