// Operations: which moments of a process take the clock's coarse reading (`Clock::coarse_now`,
// `Supervisor::stamp`) and which its precise one, on a manual clock whose coarse reading lags
// its `now()` by a fixed hour, so that each time tells which reading it came from.

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "catch_shim.hpp"
#include "supervisor_class_harness.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::EventKind;
using supervisor::KeyState;
using test::Harness;
using test::Probe;
using test::Shutdown;
using test::Startup;
using time_point = std::chrono::steady_clock::time_point;

namespace {

constexpr auto lag = std::chrono::hours(1);

/// A manual clock whose coarse reading lags by `lag`: far more than a real tick, which no
/// rounding could hide.
struct LaggingClock {
  std::shared_ptr<supervisor::ManualClock> manual;
  [[nodiscard]] time_point now() const noexcept { return manual->now(); }
  [[nodiscard]] time_point coarse_now() const noexcept { return manual->now() - lag; }
  bool wait_until(time_point t, const std::stop_token& token) const {
    return manual->wait_until(t, token);
  }
};
static_assert(supervisor::HasCoarseNow<LaggingClock>);
static_assert(!supervisor::HasCoarseNow<supervisor::ManualClock>);

/// The times of the events of one kind.
struct EventTimes {
  std::mutex mutex;
  std::vector<std::pair<EventKind, time_point>> seen;
  std::optional<time_point> first(EventKind kind) {
    std::lock_guard lock(mutex);
    for (const auto& [k, at] : seen) {
      if (k == kind) {
        return at;
      }
    }
    return std::nullopt;
  }
};

/// `h`'s supervisor again, on the lagging clock, with the event hook `events` if given.
void use_lagging_clock(Harness& h, EventTimes* events = nullptr,
                       std::optional<supervisor::RestartPolicy> policy = std::nullopt) {
  auto options = h.options();
  options.clock = LaggingClock{h.clock};
  if (events != nullptr) {
    options.on_event = [events](const supervisor::Event<std::string>& e) {
      std::lock_guard lock(events->mutex);
      events->seen.emplace_back(e.kind, e.at);
    };
  }
  if (policy) {
    options.restart = *policy;
  }
  h.sup = std::make_unique<test::ProbeSupervisor>(h.table, options);
}

std::optional<supervisor::KeyStatus<std::string>> status_of(const test::ProbeSupervisor& sup,
                                                            const std::string& key) {
  for (auto& status : sup.snapshot().keys) {
    if (status.key == key) {
      return status;
    }
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("AnyClock: coarse_now is the clock's own if it has one, else its now()", "[clock]") {
  auto manual = std::make_shared<supervisor::ManualClock>(time_point{} + 2h);
  const supervisor::AnyClock lagging{LaggingClock{manual}};
  const supervisor::AnyClock plain{manual};
  CHECK(lagging.now() == time_point{} + 2h);
  CHECK(lagging.coarse_now() == time_point{} + 1h);
  CHECK(plain.coarse_now() == time_point{} + 2h);
}

TEST_CASE("SteadyClock: coarse_now reads the steady clock's time, never ahead of it", "[clock]") {
  static_assert(supervisor::HasCoarseNow<supervisor::SteadyClock>);
  const supervisor::SteadyClock clock;
  const supervisor::AnyClock any;  // the default: the same clock behind the handle
  for (int i = 0; i < 1000; ++i) {
    const auto before = std::chrono::steady_clock::now();
    const auto coarse = clock.coarse_now();
    const auto any_coarse = any.coarse_now();
    const auto after = std::chrono::steady_clock::now();
    CHECK(coarse <= after);
    CHECK(any_coarse <= after);
    // The same time base, a few ticks behind at most (another clock's epoch would be far off).
    CHECK(coarse > before - 100ms);
    CHECK(any_coarse > before - 100ms);
  }
}

#if defined(__linux__)
TEST_CASE("SteadyClock: coarse_now is coarse on Linux (it repeats itself within a tick)",
          "[clock]") {
  const supervisor::SteadyClock clock;
  bool repeated = false;
  auto last = clock.coarse_now();
  for (int i = 0; i < 1000 && !repeated; ++i) {
    const auto next = clock.coarse_now();
    repeated = next == last;
    last = next;
  }
  CHECK(repeated);  // `now()` has nanoseconds, and a reading takes tens of them
}
#endif

namespace {

/// A clock whose coarse reading throws (a user's clock may).
struct ThrowingCoarseClock {
  std::shared_ptr<supervisor::ManualClock> manual;
  [[nodiscard]] time_point now() const noexcept { return manual->now(); }
  [[nodiscard]] time_point coarse_now() const { throw std::runtime_error("no coarse time"); }
  bool wait_until(time_point t, const std::stop_token& token) const {
    return manual->wait_until(t, token);
  }
};

}  // namespace

TEST_CASE("a clock whose coarse reading throws stamps with the steady clock instead",
          "[operations][snapshot]") {
  Harness h;
  auto options = h.options();
  options.clock = ThrowingCoarseClock{h.clock};
  h.sup = std::make_unique<test::ProbeSupervisor>(h.table, options);
  h.start_run();
  h.table->insert_or_assign("a", Probe::with(Startup::ready));
  const auto before = std::chrono::steady_clock::now();
  REQUIRE(h.start_code("a") == std::error_code{});
  const auto after = std::chrono::steady_clock::now();
  const auto running = status_of(*h.sup, "a");
  REQUIRE(running);
  CHECK(running->since >= before);
  CHECK(running->since <= after);
  REQUIRE(h.stop_code("a") == std::error_code{});
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("without an event hook a process's start, readiness and stop are stamped coarsely",
          "[operations][snapshot]") {
  Harness h;
  use_lagging_clock(h);
  h.start_run();
  test::ThreeStates scene(h);
  const auto t0 = scene.t0;

  const auto snap = h.sup->snapshot();
  CHECK(snap.taken_at == t0 + 4s);  // the snapshot's own time is precise
  const auto running = status_of(*h.sup, "runs");
  REQUIRE(running);
  CHECK(running->state == KeyState::running);
  CHECK(running->since == t0 + 1s - lag);
  const auto starting = status_of(*h.sup, "starts");
  REQUIRE(starting);
  CHECK(starting->state == KeyState::starting);
  CHECK(starting->since == t0 + 2s - lag);
  const auto stopping = status_of(*h.sup, "stops");
  REQUIRE(stopping);
  CHECK(stopping->state == KeyState::stopping);
  CHECK(stopping->since == t0 + 3s - lag);

  scene.release();
  CHECK(scene.start_ec == std::error_code{});
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("with an event hook every moment of a process is read precisely",
          "[operations][events]") {
  Harness h;
  EventTimes events;
  use_lagging_clock(h, &events);
  h.start_run();
  const auto t0 = h.clock->now();
  auto runs = Probe::with(Startup::ready);
  h.table->insert_or_assign("runs", runs);

  h.clock->advance(1s);
  REQUIRE(h.start_code("runs") == std::error_code{});
  const auto running = status_of(*h.sup, "runs");
  REQUIRE(running);
  CHECK(running->since == t0 + 1s);
  h.clock->advance(1s);
  REQUIRE(h.stop_code("runs") == std::error_code{});
  CHECK(events.first(EventKind::starting) == t0 + 1s);
  CHECK(events.first(EventKind::ready) == t0 + 1s);
  CHECK(events.first(EventKind::stop_requested) == t0 + 2s);
  CHECK(events.first(EventKind::stopped) == t0 + 2s);
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("an exit on its own goes into the history at the clock's precise time",
          "[operations][snapshot]") {
  Harness h;
  supervisor::RestartPolicy policy;
  policy.initial_backoff = 10s;
  policy.jitter = 0.0;
  use_lagging_clock(h, nullptr, policy);
  h.start_run();
  const auto t0 = h.clock->now();
  h.table->insert_or_assign("flaky", Probe::with(Startup::throw_error));

  h.clock->advance(1s);
  bool threw = false;
  try {
    (void)h.sup->start("flaky");
  } catch (...) {  // its runnable's own error
    threw = true;
  }
  REQUIRE(threw);
  const auto backing_off = status_of(*h.sup, "flaky");
  REQUIRE(backing_off);
  CHECK(backing_off->state == KeyState::backing_off);
  CHECK(backing_off->since == t0 + 1s);
  CHECK(backing_off->next_start == t0 + 11s);
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("a straggler's took runs at least until its forcing, though its exit is stamped early",
          "[operations][shutdown]") {
  Harness h;
  auto options = h.options();
  options.clock = LaggingClock{h.clock};
  options.shutdown_timeout = 10s;
  std::mutex mutex;
  std::optional<supervisor::ShutdownReport<std::string>> report;
  options.on_shutdown = [&](const supervisor::ShutdownReport<std::string>& r) {
    std::lock_guard lock(mutex);
    report = r;
  };
  h.sup = std::make_unique<test::ProbeSupervisor>(h.table, options);
  auto stubborn = Probe::with(Startup::ready, Shutdown::ignore_stop);
  h.table->insert_or_assign("stubborn", stubborn);
  h.start_run();
  REQUIRE(stubborn.state->readied.wait());
  REQUIRE(h.clock->wait_for_sleepers(1));  // the restart loop, until its interval
  const auto arms = h.clock->arms();

  h.finish_source.request_stop();
  REQUIRE(h.clock->wait_for_arms(arms + 1));  // the shutdown waits on the clock
  REQUIRE(h.clock->wait_for_sleepers(1));
  h.clock->advance(10s);  // past the deadline: forced; its exit's stamp is an hour early
  REQUIRE(h.runner->wait());
  REQUIRE(h.runner->join() == nullptr);

  std::lock_guard lock(mutex);
  REQUIRE(report);
  REQUIRE(report->forced.size() == 1);
  CHECK(report->forced[0].key == "stubborn");
  CHECK(report->forced[0].took == 10s);
  CHECK(report->took == 10s);  // the shutdown's own times are precise
}

TEST_CASE("snapshot: reset_after measures a coarse readiness with a coarse reading",
          "[operations][snapshot]") {
  Harness h;
  supervisor::RestartPolicy policy;
  policy.reset_after = 10s;
  use_lagging_clock(h, nullptr, policy);
  h.start_run();
  auto probe = Probe::with(Startup::ready);
  auto entries = std::make_shared<std::atomic<int>>(0);
  probe.state->on_enter = [entries] {
    if (entries->fetch_add(1) == 0) {
      throw std::runtime_error("first try");
    }
  };
  h.table->insert_or_assign("a", probe);
  CHECK_THROWS(h.sup->start("a"));
  h.clock->advance(1s);
  REQUIRE(h.start_code("a") == std::error_code{});  // ready, stamped an hour early
  h.clock->advance(1s);
  const auto young = status_of(*h.sup, "a");
  REQUIRE(young);
  CHECK(young->state == KeyState::running);
  CHECK(young->consecutive_failures == 1);  // ready for 1 s, not an hour and 1 s
  h.clock->advance(9s);
  const auto healthy = status_of(*h.sup, "a");
  REQUIRE(healthy);
  CHECK(healthy->consecutive_failures == 0);  // ready for reset_after
  REQUIRE(h.finish() == nullptr);
}

namespace {

/// Ready in each life until the test lets that life fail on its own.
struct Flaky {
  struct Lives {
    std::atomic<int> count{0};
    std::stop_source fail[4];
  };
  std::shared_ptr<Lives> lives = std::make_shared<Lives>();
  bool operator==(const Flaky& other) const { return lives == other.lives; }
  std::error_code run(const std::stop_token& /*force*/, supervisor::Ready& ready) const {
    const int life = lives->count.fetch_add(1);
    ready(lives->fail[life].get_token());
    return make_error_code(std::errc::io_error);
  }
};

}  // namespace

TEST_CASE("history: reset_after measures a coarse readiness with a coarse reading",
          "[operations][policy][reset_after]") {
  auto manual = std::make_shared<supervisor::ManualClock>();
  auto table = std::make_shared<supervisor::MapTable<std::string, Flaky>>();
  supervisor::Options<std::string> options;
  options.clock = LaggingClock{manual};
  options.on_error = {};
  options.restart.reset_after = 10s;
  Flaky flaky;
  table->insert_or_assign("a", flaky);
  supervisor::Supervisor<std::string, Flaky> sup(table, options);
  int failures_after_two = -1;
  sup.run([&] {
    for (int life = 0; life < 2; ++life) {
      if (life == 0) {
        // The initial pass started life 0.
        if (!test::eventually([&] { return flaky.lives->count.load() == 1; })) {
          return;
        }
      } else {
        std::error_code ec;
        (void)sup.start("a", {}, ec);
        if (ec) {
          return;
        }
      }
      manual->advance(1s);  // ready for a second, stamped an hour early
      flaky.lives->fail[life].request_stop();
      if (!test::eventually([&] { return sup.keys().empty(); })) {
        return;  // its exit is in the history once its key is free
      }
    }
    for (const auto& status : sup.snapshot().keys) {
      if (status.key == "a") {
        failures_after_two = static_cast<int>(status.consecutive_failures);
      }
    }
  });
  CHECK(failures_after_two == 2);  // neither life counted as healthy
}
