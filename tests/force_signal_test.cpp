// A coroutine runnable whose `run` takes `AsyncReady&` alone: its process makes the force token
// only when `ready.force_token()` asks for it (`LazyForce`), and force reaches it either way.

#include "supervisor/detail/force_signal.hpp"

#include <atomic>
#include <memory>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "catch_shim.hpp"
#include "coroutine_rig.hpp"
#include "supervisor/supervisor.hpp"
#include "support.hpp"

namespace {

using supervisor::AsyncReady;
using supervisor::Task;
using supervisor::detail::LazyForce;

TEST_CASE("LazyForce: a token made after the request is requested already", "[force_signal]") {
  LazyForce force;
  CHECK_FALSE(force.stop_requested());
  CHECK(force.request_stop());
  CHECK_FALSE(force.request_stop());  // the first request only
  CHECK(force.stop_requested());
  const std::stop_token token = force.get_token();
  CHECK(token.stop_requested());
  CHECK(token == force.get_token());  // one source, made once
  CHECK(force.stop_requested());      // still: making the source kept the request
}

TEST_CASE("LazyForce: a request reaches the callbacks of a token made before it",
          "[force_signal]") {
  LazyForce force;
  const std::stop_token token = force.get_token();
  CHECK(token.stop_possible());
  CHECK_FALSE(token.stop_requested());
  int called = 0;
  const std::stop_callback callback(token, [&] { ++called; });
  CHECK(called == 0);
  CHECK(force.request_stop());
  CHECK(called == 1);
  CHECK(token.stop_requested());
}

TEST_CASE("LazyForce: a request racing the first tokens reaches them all", "[force_signal]") {
  // Two threads make the first token of each signal at once (both spin until the round begins,
  // so that they often meet in the window between a load and the publication); on every other
  // round one of them then requests, while the other may still be making its token. Whatever
  // the order, both tokens are of one source, requested where a request was made.
  constexpr int rounds = 4000;
  std::vector<LazyForce> forces(rounds);
  std::vector<std::stop_token> mine(rounds);
  std::vector<std::stop_token> theirs(rounds);
  std::atomic<int> begun{-1};
  std::atomic<int> finished{-1};
  const auto spin_until = [](const std::atomic<int>& word, int round) {
    for (unsigned spins = 1; word.load() < round; ++spins) {
      if (spins % 1024 == 0) {
        std::this_thread::yield();  // a machine with fewer cores than threads moves on
      }
    }
  };
  std::thread other([&] {
    for (int round = 0; round < rounds; ++round) {
      spin_until(begun, round);
      theirs[round] = forces[round].get_token();
      finished.store(round);
    }
  });
  for (int round = 0; round < rounds; ++round) {
    begun.store(round);
    mine[round] = forces[round].get_token();
    if (round % 2 == 1) {
      (void)forces[round].request_stop();
    }
    spin_until(finished, round);
  }
  other.join();
  for (int round = 0; round < rounds; ++round) {
    INFO("round " << round);
    REQUIRE(mine[round] == theirs[round]);
    REQUIRE(mine[round].stop_requested() == (round % 2 == 1));
  }
}

/// A coroutine runnable without a force token that waits for force once a graceful stop has
/// woken it, through the token it asks for then (once force may have come).
struct Stubborn {
  struct State {
    test::Event parked;
    std::atomic<int> forced{0};
    std::atomic<int> made_requested{0};  // tokens that were requested when made
  };
  std::shared_ptr<State> state = std::make_shared<State>();

  Task<> run(AsyncReady& ready) const {
    const auto s = state;
    co_await ready;
    const std::stop_token force = ready.force_token();
    if (force.stop_requested()) {
      ++s->made_requested;
      ++s->forced;
      co_return;
    }
    auto waiting = supervisor::until_stopped(force, ready.executor());
    co_await coroutine_test::NoteParked{waiting, s->parked};
    ++s->forced;
  }
};

static_assert(supervisor::CoroutineRunnable<Stubborn>);
static_assert(supervisor::detail::ReadyOnlyRun<Stubborn>);
static_assert(supervisor::SupervisedRunnable<std::shared_ptr<Stubborn>>);

using StubbornSup = supervisor::Supervisor<std::string, Stubborn>;

struct StubbornRig {
  supervisor::ThreadPool pool{2};
  std::shared_ptr<supervisor::MapTable<std::string, Stubborn>> table =
      std::make_shared<supervisor::MapTable<std::string, Stubborn>>();
  supervisor::Options<std::string> options;
  test::Reports<std::string> reports;
  StubbornRig() {
    options.executor = supervisor::ExecutorRef(pool);
    options.on_error = reports.hook();
    options.clock = std::make_shared<supervisor::ManualClock>();
    options.restart_interval = std::chrono::hours(1);
  }
};

}  // namespace

TEST_CASE("a coroutine without a force token is forced through the token it asks for",
          "[coroutine][force_signal]") {
  StubbornRig rig;
  Stubborn runnable;
  rig.table->insert_or_assign("k", runnable);
  StubbornSup sup(rig.table, rig.options);
  sup.run([&] {  // the initial pass has started "k" (a manual clock: its wait never times out)
    std::stop_source cancel;
    std::error_code stopped;
    test::Background stopper(
        [&] { sup.stop("k", supervisor::Cancel(cancel.get_token()), stopped); });
    // Woken by the graceful stop, it made the token (not requested then) and waits on it.
    REQUIRE(runnable.state->parked.wait());
    CHECK(runnable.state->forced == 0);
    cancel.request_stop();  // the stop gives up waiting: force
    REQUIRE(stopper.join() == nullptr);
    CHECK(stopped == supervisor::errc::canceled);
    CHECK(runnable.state->forced == 1);
    CHECK(runnable.state->made_requested == 0);
  });
  CHECK(rig.reports.entries().empty());
}

TEST_CASE("a coroutine without a force token, forced while parked, finds its token requested",
          "[coroutine][force_signal]") {
  StubbornRig rig;
  Stubborn runnable;
  rig.table->insert_or_assign("k", runnable);
  StubbornSup sup(rig.table, rig.options);
  std::stop_source cancel_run;
  sup.run(supervisor::Cancel(cancel_run.get_token()), [&] {
    // Canceling `run` forces every process: parked on `ready`, this one wakes, and only then
    // makes its token, which is requested already.
    cancel_run.request_stop();
  });
  CHECK(runnable.state->forced == 1);
  CHECK(runnable.state->made_requested == 1);
}

namespace {
/// A thread runnable with an unrelated generic `run`: checking it for the coroutine forms must
/// not instantiate that overload's body with an `AsyncReady`.
struct ThreadWithGenericRun {
  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) const { ready(); }
  auto run(auto& sized) const { return sized.size(); }
};
static_assert(supervisor::Runnable<ThreadWithGenericRun>);
static_assert(!supervisor::CoroutineRunnable<ThreadWithGenericRun>);

/// Both forms of `run`: the one with the token is called.
struct BothForms {
  std::shared_ptr<std::atomic<int>> with_token = std::make_shared<std::atomic<int>>(0);
  Task<> run(std::stop_token /*force*/, AsyncReady& ready) const {
    ++*with_token;
    co_await ready;
  }
  Task<> run(AsyncReady& ready) const { co_await ready; }
};
static_assert(!supervisor::detail::ReadyOnlyRun<BothForms>);
}  // namespace

TEST_CASE("a coroutine runnable with both forms of run is handed the force token",
          "[coroutine][force_signal]") {
  supervisor::ThreadPool pool(1);
  auto table = std::make_shared<supervisor::MapTable<std::string, BothForms>>();
  BothForms runnable;
  table->insert_or_assign("k", runnable);
  supervisor::Options<std::string> options;
  options.executor = supervisor::ExecutorRef(pool);
  options.clock = std::make_shared<supervisor::ManualClock>();  // waits for the initial start
  supervisor::Supervisor<std::string, BothForms> sup(table, options);
  sup.run([&] { CHECK(*runnable.with_token == 1); });
}
