// Coroutine processes under allocation faults, SQLite's way: a start and a stop of a coroutine
// process, once its type has learned its frame's size (so the record is made with room for the
// frame, frame_room.hpp), with the Nth allocation failing, for every N the pair makes. Whatever
// fails: the failure reaches the caller or `on_error`, nothing terminates, the key ends up free
// (a fresh start and stop of it work), and every copy of the runnable is destroyed once the
// supervisor is (no record leaked, none freed twice: the sanitizer builds tell).

#include <array>
#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>

#include "../catch_shim.hpp"
#include "../support.hpp"
#include "each_in_turn.hpp"
#include "inject.hpp"
#include "supervisor/supervisor.hpp"

namespace {

/// A coroutine runnable that allocates nothing itself; its copies share one count of owners.
struct Lean {
  std::shared_ptr<int> owners = std::make_shared<int>(0);
  supervisor::Task<> run(const std::stop_token& /*force*/, supervisor::AsyncReady& ready) const {
    co_await ready;
  }
};

/// The same with a frame too big for a record's room: it always has a block of its own.
struct Bulky {
  std::shared_ptr<int> owners = std::make_shared<int>(0);
  supervisor::Task<> run(const std::stop_token& /*force*/, supervisor::AsyncReady& ready) const {
    std::array<char, 2 * supervisor::detail::max_frame_room> scratch{};
    co_await ready;
    scratch[0] = 1;  // lives across the suspension: in the frame
  }
};

/// `Lean` with a `run` that takes no force token: its processes make no force source.
struct Forceless {
  std::shared_ptr<int> owners = std::make_shared<int>(0);
  supervisor::Task<> run(supervisor::AsyncReady& ready) const { co_await ready; }
};

/// The same, asking for the force token before it is ready: the source is made then, and the
/// first allocation of it that fails fails the start.
struct ForceWatcher {
  std::shared_ptr<int> owners = std::make_shared<int>(0);
  supervisor::Task<> run(supervisor::AsyncReady& ready) const {
    const std::stop_token force = ready.force_token();
    co_await ready;
  }
};

/// Runs `pair(sup, pool)` with allocation fault `n` armed (0: counts only) inside a `run` of a
/// supervisor of `R` on a one-thread pool, once the type has learned its frame's size; `pair`
/// starts and stops "k", and returns whether its caller heard a `std::bad_alloc`. Returns how
/// many allocations the pair met.
template <class R, class Pair>
long pair_with_fault(long n, Pair pair) {
  using Sup = supervisor::Supervisor<std::string, R>;
  const fault::Quiet quiet;
  R runnable;
  std::atomic<long> reported{0};
  long met = 0;
  {
    supervisor::ThreadPool pool(1);
    auto table = std::make_shared<supervisor::MapTable<std::string, R>>();
    supervisor::Options<std::string> options;
    options.executor = pool;
    options.clock = std::make_shared<supervisor::ManualClock>();
    options.restart_interval = std::chrono::hours(1);
    options.on_error = [&](const supervisor::ErrorReport<std::string>& /*report*/) { ++reported; };
    Sup sup(table, options);
    sup.run([&] {
      for (const char* key : {"learn1", "learn2", "k"}) {
        table->insert_or_assign(key, runnable);
      }
      for (const char* key : {"learn1", "learn2"}) {  // the type learns its frame's size
        (void)sup.start(key);
        sup.stop(key);
      }
      fault::arm(fault::Kind::alloc, n);
      const bool caller_heard = pair(sup, pool);
      fault::disarm();
      met = fault::count();
      if (fault::fired() != 0) {
        // Heard by the caller, or by the hook (a failure on a pool thread, a stop's
        // leftovers), at least once.
        CHECK((caller_heard || reported.load() > 0));
      } else {
        CHECK_FALSE(caller_heard);
      }
      // The key is free again, or still running: either way a stop and a start settle it.
      std::error_code ec;
      sup.stop("k", supervisor::Cancel{}, ec);
      CHECK((!ec || ec == supervisor::errc::process_not_found));
      (void)sup.start("k");
      sup.stop("k");
      CHECK(sup.keys().empty());
    });
  }
  // The supervisor, its table and its pool are gone: only this copy is left.
  CHECK(runnable.owners.use_count() == 1);
  return met;
}

/// A blocking `start` and `stop` of "k" with allocation fault `n` armed.
template <class R>
long start_stop_with_fault(long n) {
  return pair_with_fault<R>(n, [](auto& sup, supervisor::ThreadPool& /*pool*/) {
    try {
      const fault::Loud loud;
      (void)sup.start("k");
      sup.stop("k");
    } catch (const std::bad_alloc&) {
      return true;
    }
    return false;
  });
}

template <class R>
void each_allocation_fails_in_turn() {
  fault::each_allocation_in_turn([](long n) { return start_stop_with_fault<R>(n); });
}

/// The same pair awaited by a coroutine on the pool, `async_start` then `async_stop`: on their
/// own path (no token: the wait in the caller's frame), or through their coroutines (a token,
/// never requested).
long async_start_stop_with_fault(long n, bool with_token) {
  return pair_with_fault<Lean>(n, [with_token](auto& sup, supervisor::ThreadPool& pool) {
    const std::stop_source never;
    const std::stop_token token = with_token ? never.get_token() : std::stop_token{};
    bool caller_heard = false;
    std::exception_ptr escaped;
    const auto finished = std::make_shared<test::Event>();  // outlives a late `notify`
    // On the pool's thread, which is not quiet: the pair's every allocation is counted.
    const auto pair = [&]() -> supervisor::Task<> {
      try {
        (void)co_await sup.async_start("k", token);
        (void)co_await sup.async_stop("k", token);
      } catch (const std::bad_alloc&) {
        caller_heard = true;
      }
    };
    // From this quiet thread: the task's frame and its schedule meet no fault.
    supervisor::spawn(pool, pair(), [&escaped, finished](std::exception_ptr e) {
      escaped = std::move(e);
      finished->notify();
    });
    REQUIRE(finished->wait());
    CHECK(escaped == nullptr);
    return caller_heard;
  });
}

}  // namespace

TEST_CASE("coroutine start and stop, the frame in its record: each allocation fails in turn",
          "[fault][coroutine_allocation]") {
  each_allocation_fails_in_turn<Lean>();
}

TEST_CASE(
    "coroutine start and stop, the frame in a block of its own: each allocation fails in "
    "turn",
    "[fault][coroutine_allocation]") {
  each_allocation_fails_in_turn<Bulky>();
}

TEST_CASE("coroutine async_start and async_stop, no token: each allocation fails in turn",
          "[fault][coroutine_allocation]") {
  fault::each_allocation_in_turn([](long n) { return async_start_stop_with_fault(n, false); });
}

TEST_CASE("coroutine async_start and async_stop with a token: each allocation fails in turn",
          "[fault][coroutine_allocation]") {
  fault::each_allocation_in_turn([](long n) { return async_start_stop_with_fault(n, true); });
}

TEST_CASE("coroutine start and stop, no force token: each allocation fails in turn",
          "[fault][coroutine_allocation]") {
  each_allocation_fails_in_turn<Forceless>();
}

TEST_CASE(
    "coroutine start and stop, the force token made on request: each allocation fails in "
    "turn",
    "[fault][coroutine_allocation]") {
  each_allocation_fails_in_turn<ForceWatcher>();
}

TEST_CASE("a coroutine process whose run takes no force token allocates no force source",
          "[fault][coroutine_allocation]") {
  const long with_token = start_stop_with_fault<Lean>(0);
  const long without = start_stop_with_fault<Forceless>(0);
  const long on_request = start_stop_with_fault<ForceWatcher>(0);
#if defined(FAULT_NO_NEW_REPLACEMENT)
  WARN("allocations are not counted in this build: " << with_token << without << on_request);
#else
  // One `std::stop_source` state fewer; asked for, it costs that and the source's own block.
  CHECK(without == with_token - 1);
  CHECK(on_request == with_token + 1);
#endif
}

namespace {
/// Asks for `ready.stop_token()` with its `fail_at`th allocation failing, then again, keeps that
/// token, and waits for force before it is ready.
struct StopTokenRetrier {
  struct Shared {
    long fail_at = 0;
    std::stop_token kept;
    int failures = 0;
    test::Event asked;  // the token is kept
  };
  std::shared_ptr<Shared> shared = std::make_shared<Shared>();
  supervisor::Task<> run(supervisor::AsyncReady& ready) const {
    const auto s = shared;
    fault::arm(fault::Kind::alloc, s->fail_at);
    try {
      (void)ready.stop_token();
    } catch (const std::bad_alloc&) {
      ++s->failures;
    }
    fault::disarm();
    s->kept = ready.stop_token();
    s->asked.notify();
    co_await supervisor::until_stopped(ready.force_token(), ready.executor());
  }
};
}  // namespace

TEST_CASE("a stop token asked for again after a failed allocation still hears force",
          "[fault][coroutine_allocation]") {
  // The first call makes the force source (two allocations) and the stop token's own (two
  // more); whichever fails, the second call's token is linked to force.
  for (long n = 1; n <= 4; ++n) {
    INFO("allocation " << n);
    const fault::Quiet quiet;
    StopTokenRetrier runnable;
    runnable.shared->fail_at = n;
    supervisor::ThreadPool pool(1);
    auto table = std::make_shared<supervisor::MapTable<std::string, StopTokenRetrier>>();
    table->insert_or_assign("k", runnable);
    supervisor::Options<std::string> options;
    options.executor = pool;
    options.clock = std::make_shared<supervisor::ManualClock>();
    options.restart_interval = std::chrono::hours(1);
    options.initial_wait = {};  // the callback at once: "k" never becomes ready
    options.on_error = [](const supervisor::ErrorReport<std::string>& /*report*/) {};
    supervisor::Supervisor<std::string, StopTokenRetrier> sup(table, options);
    std::stop_source cancel_run;
    sup.run(supervisor::Cancel(cancel_run.get_token()), [&] {
      CHECK(runnable.shared->asked.wait());
      CHECK_FALSE(runnable.shared->kept.stop_requested());
      cancel_run.request_stop();  // forces "k", which is still starting: no graceful stop
    });
#if defined(FAULT_NO_NEW_REPLACEMENT)
    WARN("allocation faults are compiled out of this build: " << runnable.shared->failures);
#else
    CHECK(runnable.shared->failures == 1);
#endif
    CHECK(runnable.shared->kept.stop_requested());  // force reached it
  }
}
