// A coroutine on the pool that awaits `async_start` or `async_stop` is resumed by the process
// itself when the process becomes ready or ends on a thread of the supervisor's executor (in the
// process's stead, not through the executor's queue), and through the executor when the process
// does so on a thread of its own choosing: either way the caller goes on on its executor. In
// turn such a caller resumes the process it launches or stops itself, on its own thread; a caller
// on another executor leaves that to the supervisor's.

#include <atomic>
#include <coroutine>
#include <exception>
#include <memory>
#include <stop_token>
#include <string>
#include <system_error>

#include "catch_shim.hpp"
#include "fifo_loop.hpp"
#include "supervisor/supervisor.hpp"
#include "support.hpp"

namespace {

using supervisor::Task;
using test::FifoLoop;

/// Moves the awaiting coroutine onto `loop`'s thread.
struct HopTo {
  FifoLoop* loop;
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) const { loop->schedule(h); }
  void await_resume() const noexcept {}
};

/// Gives the awaiting coroutine its own handle, without suspending it.
struct OwnHandle {
  std::coroutine_handle<> handle;
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    handle = h;
    return false;
  }
  [[nodiscard]] std::coroutine_handle<> await_resume() const noexcept { return handle; }
};

/// A one-thread pool that counts what is scheduled on it, and apart, the wake-ups of one
/// coroutine (the process's `run`).
class CountingPool {
 public:
  void schedule(std::coroutine_handle<> h) {
    scheduled_.fetch_add(1);
    if (h.address() == watched_.load()) {
      watched_scheduled_.fetch_add(1);
    }
    pool_.schedule(h);
  }
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return pool_.running_in_this_thread();
  }
  [[nodiscard]] int scheduled() const noexcept { return scheduled_.load(); }
  void watch(std::coroutine_handle<> h) noexcept { watched_.store(h.address()); }
  [[nodiscard]] int watched_scheduled() const noexcept { return watched_scheduled_.load(); }

 private:
  std::atomic<int> scheduled_{0};
  std::atomic<void*> watched_{nullptr};
  std::atomic<int> watched_scheduled_{0};
  supervisor::ThreadPool pool_{1};
};

/// Signals ready, and ends, on `elsewhere`'s thread when it is set (as a session whose socket
/// lives on an I/O context would); on the supervisor's executor otherwise. Tells `pool` its
/// handle, so that its wake-up by the stop is told apart from its caller's resumptions.
struct Hopper {
  CountingPool* pool = nullptr;
  FifoLoop* elsewhere = nullptr;
  Task<> run(std::stop_token /*force*/, supervisor::AsyncReady& ready) const {
    pool->watch(co_await OwnHandle{});
    if (elsewhere != nullptr) {
      co_await HopTo{elsewhere};
    }
    co_await ready;  // a stop resumes it on the supervisor's executor
    if (elsewhere != nullptr) {
      co_await HopTo{elsewhere};
    }
  }
};

using Table = supervisor::MapTable<std::string, Hopper>;
using Sup = supervisor::Supervisor<std::string, Hopper>;

struct Where {
  std::error_code started;
  bool on_pool_after_start = false;
  std::error_code stopped;
  bool on_pool_after_stop = false;
  int scheduled = 0;      // on the supervisor's executor, from the start to the stop's return
  int process_woken = 0;  // of those, the process's wake-ups by the stop
};

/// Starts and stops "a" from a coroutine on a one-thread pool, the supervisor's executor, and
/// says where the caller was after each.
Where start_and_stop(FifoLoop* elsewhere) {
  CountingPool pool;
  auto table = std::make_shared<Table>();
  supervisor::Options<std::string> options;
  options.executor = pool;
  Sup sup(table, options);
  Where where;
  sup.run([&](const std::stop_token& /*stopping*/) {
    table->insert_or_assign("a", Hopper{&pool, elsewhere});
    const auto finished = std::make_shared<test::Event>();
    std::exception_ptr failure;
    supervisor::spawn(
        supervisor::ExecutorRef(pool),
        [](Sup& s, CountingPool& on, Where& out) -> Task<> {
          const int before = on.scheduled();
          out.started = co_await s.async_start("a");
          out.on_pool_after_start = on.running_in_this_thread();
          out.stopped = co_await s.async_stop("a");
          out.on_pool_after_stop = on.running_in_this_thread();
          out.scheduled = on.scheduled() - before;
          out.process_woken = on.watched_scheduled();
        }(sup, pool, where),
        [&failure, finished](std::exception_ptr e) {
          failure = std::move(e);
          finished->notify();
        });
    REQUIRE(finished->wait());
    REQUIRE(failure == nullptr);
  });
  return where;
}

}  // namespace

TEST_CASE("hand-over: a caller resumed by its process goes on on the pool", "[coroutine][async]") {
  const Where where = start_and_stop(nullptr);
  CHECK(where.started == std::error_code{});
  CHECK(where.on_pool_after_start);
  CHECK(where.stopped == std::error_code{});
  CHECK(where.on_pool_after_stop);
  // Where callers are handed over (detail/hand_over.hpp), nothing goes through the executor: the
  // caller resumes the task's first step and its wake-up by the stop itself, and the task resumes
  // the caller once ready and once done. Elsewhere the task's first run and the caller's two
  // resumptions are scheduled, and the wake-up (counted apart) too, unless the caller, resumed
  // through the executor, stops the process before it parks: it then goes on at once.
  if constexpr (supervisor::detail::hand_over_callers) {
    CHECK(where.scheduled == 0);
  } else {
    CHECK(where.scheduled - where.process_woken == 3);
    CHECK(where.process_woken <= 1);
  }
}

TEST_CASE(
    "hand-over: a process that is ready and ends on another thread does not take its "
    "caller there",
    "[coroutine][async]") {
  FifoLoop elsewhere;
  const Where where = start_and_stop(&elsewhere);
  CHECK(where.started == std::error_code{});
  CHECK(where.on_pool_after_start);
  CHECK(where.stopped == std::error_code{});
  CHECK(where.on_pool_after_stop);
  // Both resumptions of the caller went through the executor, and where callers are not handed
  // over the task's first run too. Its wake-up by the stop did too only without hand-over, and
  // then not if the stop came between its ready and its parking (the caller, resumed from
  // elsewhere, may run that soon): it then goes on at once.
  if constexpr (supervisor::detail::hand_over_callers) {
    CHECK(where.scheduled == 2);
    CHECK(where.process_woken == 0);
  } else {
    CHECK(where.scheduled - where.process_woken == 3);
    CHECK(where.process_woken <= 1);
  }
}

namespace {

/// Counts its steps that run off `pool`: its first, and its return from `co_await ready`.
struct StepCounter {
  CountingPool* pool = nullptr;
  std::atomic<int>* steps = nullptr;
  std::atomic<int>* off_pool = nullptr;
  void count() const {
    steps->fetch_add(1);
    if (!pool->running_in_this_thread()) {
      off_pool->fetch_add(1);
    }
  }
  Task<> run(std::stop_token /*force*/, supervisor::AsyncReady& ready) const {
    count();
    co_await ready;
    count();
  }
};

}  // namespace

TEST_CASE("hand-over: a caller on another executor leaves the process to the supervisor's",
          "[coroutine][async]") {
  CountingPool pool;
  FifoLoop elsewhere;  // the caller's executor
  std::atomic<int> steps{0};
  std::atomic<int> off_pool{0};
  auto table = std::make_shared<supervisor::MapTable<std::string, StepCounter>>();
  supervisor::Options<std::string> options;
  options.executor = pool;
  supervisor::Supervisor<std::string, StepCounter> sup(table, options);
  std::error_code started;
  std::error_code stopped;
  sup.run([&](const std::stop_token& /*stopping*/) {
    table->insert_or_assign("a", StepCounter{&pool, &steps, &off_pool});  // after the first pass
    const auto finished = std::make_shared<test::Event>();
    std::exception_ptr failure;
    supervisor::spawn(
        supervisor::ExecutorRef(elsewhere),
        [](auto& s, FifoLoop& home, std::error_code& on_start, std::error_code& on_stop) -> Task<> {
          on_start = co_await s.async_start("a");
          co_await HopTo{&home};  // resumed on the supervisor's executor: back to its own
          on_stop = co_await s.async_stop("a");
        }(sup, elsewhere, started, stopped),
        [&failure, finished](std::exception_ptr e) {
          failure = std::move(e);
          finished->notify();
        });
    REQUIRE(finished->wait());
    REQUIRE(failure == nullptr);
  });
  CHECK(started == std::error_code{});
  CHECK(stopped == std::error_code{});
  CHECK(steps == 2);
  CHECK(off_pool == 0);  // neither its first step nor its wake-up ran on the caller's thread
}

namespace {

struct Parks {
  Task<> run(std::stop_token /*force*/, supervisor::AsyncReady& ready) const { co_await ready; }
};

}  // namespace

TEST_CASE("hand-over: many cycles in a row from a caller on the pool keep the stack bounded",
          "[coroutine][async]") {
  // The caller resumes each process it starts or stops, and each process resumes it in turn.
  // Unoptimized by GCC (the Debug build at -O0, tsan-gcc at -O1), each of those is a nested call:
  // were they not cut off now and then, this many cycles would overflow the pool thread's stack.
  constexpr int cycles = 150'000;
  supervisor::ThreadPool pool(1);
  auto table = std::make_shared<supervisor::MapTable<std::string, Parks>>();
  supervisor::Options<std::string> options;
  options.executor = pool;
  supervisor::Supervisor<std::string, Parks> sup(table, options);
  int done = 0;
  sup.run([&](const std::stop_token& /*stopping*/) {
    table->insert_or_assign("a", Parks{});  // after the first pass
    const auto finished = std::make_shared<test::Event>();
    std::exception_ptr failure;
    supervisor::spawn(
        supervisor::ExecutorRef(pool),
        [](auto& s, int& count) -> Task<> {
          for (int i = 0; i < cycles; ++i) {
            if (co_await s.async_start("a") || co_await s.async_stop("a")) {
              co_return;
            }
            ++count;
          }
        }(sup, done),
        [&failure, finished](std::exception_ptr e) {
          failure = std::move(e);
          finished->notify();
        });
    REQUIRE(finished->wait());
    REQUIRE(failure == nullptr);
  });
  CHECK(done == cycles);
}
