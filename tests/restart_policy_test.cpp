// Restart policy, unit by unit: `backoff_delay` (off, growth, cap, jitter, and what it makes of
// NaN, negative and huge inputs) and `detail::KeyHistory` (consecutive failures, reset after a
// healthy run, the backoff gate, give-up within a window, what revives a given-up key, and a
// backoff that would pass the end of the clock's range). No threads, no clock: times are given.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <stdexcept>
#include <supervisor/detail/key_history.hpp>
#include <supervisor/restart_policy.hpp>

#include "catch_shim.hpp"

using namespace std::chrono_literals;
using supervisor::backoff_delay;
using supervisor::RestartPolicy;
using Duration = RestartPolicy::duration;
using TimePoint = std::chrono::steady_clock::time_point;

namespace {

constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();
constexpr double infinity = std::numeric_limits<double>::infinity();

/// A policy without jitter: `initial` doubling, capped at `cap`.
RestartPolicy doubling(Duration initial, Duration cap = 5min) {
  RestartPolicy policy;
  policy.initial_backoff = initial;
  policy.max_backoff = cap;
  policy.multiplier = 2.0;
  policy.jitter = 0.0;
  return policy;
}

/// The largest delay `backoff_delay` may give: a quarter of the duration's range, so that
/// `now + delay` cannot overflow either (computed in double seconds: give or take a microsecond).
const Duration ceiling = Duration::max() / 4;
bool at_ceiling(Duration delay) { return delay > ceiling - 1us && delay < ceiling + 1us; }

}  // namespace

// ---- backoff_delay -----------------------------------------------------------------------------

TEST_CASE("backoff_delay: off when initial_backoff is zero or negative, or before any failure",
          "[restart_policy][backoff]") {
  RestartPolicy policy;  // The default: no backoff.
  CHECK(backoff_delay(policy, 1, 0.0) == 0s);
  CHECK(backoff_delay(policy, 1000, 1.0) == 0s);
  policy.initial_backoff = -5s;
  CHECK(backoff_delay(policy, 3, 1.0) == 0s);
  policy = doubling(1s);
  CHECK(backoff_delay(policy, 0, 0.0) == 0s);
  CHECK(backoff_delay(policy, 0, 1.0) == 0s);
}

TEST_CASE("backoff_delay: initial_backoff times multiplier^(n-1), capped at max_backoff",
          "[restart_policy][backoff]") {
  const RestartPolicy policy = doubling(1s, 10s);
  CHECK(backoff_delay(policy, 1, 0.0) == 1s);
  CHECK(backoff_delay(policy, 2, 0.0) == 2s);
  CHECK(backoff_delay(policy, 3, 0.0) == 4s);
  CHECK(backoff_delay(policy, 4, 0.0) == 8s);
  CHECK(backoff_delay(policy, 5, 0.0) == 10s);  // 16 s, capped
  CHECK(backoff_delay(policy, 64, 0.0) == 10s);

  RestartPolicy triple = doubling(100ms, 1h);
  triple.multiplier = 3.0;
  CHECK(backoff_delay(triple, 3, 0.0) == 900ms);
}

TEST_CASE("backoff_delay: a multiplier below one (or NaN) never shrinks the delay",
          "[restart_policy][backoff]") {
  RestartPolicy policy = doubling(4s, 1min);
  for (const double multiplier : {1.0, 0.5, 0.0, -3.0}) {
    INFO("multiplier " << multiplier);
    policy.multiplier = multiplier;
    for (const std::uint32_t n : {1U, 2U, 10U, 1000U}) {
      INFO("failure " << n);
      CHECK(backoff_delay(policy, n, 0.0) == 4s);  // Treated as 1: constant.
    }
  }
  policy.multiplier = not_a_number;
  for (const std::uint32_t n : {1U, 2U, 10U}) {
    INFO("failure " << n);
    const auto delay = backoff_delay(policy, n, 0.0);
    CHECK(delay >= 4s);
    CHECK(delay <= 1min);
  }
}

TEST_CASE("backoff_delay: jitter spreads the delay over [1 - jitter, 1 + jitter]",
          "[restart_policy][backoff][jitter]") {
  RestartPolicy policy = doubling(10s, 1min);
  policy.jitter = 0.5;
  CHECK(backoff_delay(policy, 1, -1.0) == 5s);
  CHECK(backoff_delay(policy, 1, 0.0) == 10s);
  CHECK(backoff_delay(policy, 1, 1.0) == 15s);
  CHECK(backoff_delay(policy, 1, 0.5) == 12500ms);
  // The jitter applies after the cap: at most max_backoff * (1 + jitter).
  CHECK(backoff_delay(policy, 10, 1.0) == 90s);
  CHECK(backoff_delay(policy, 10, -1.0) == 30s);

  SECTION("a spread outside [-1, 1] counts as its end") {
    CHECK(backoff_delay(policy, 1, 7.0) == 15s);
    CHECK(backoff_delay(policy, 1, -7.0) == 5s);
    CHECK(backoff_delay(policy, 1, infinity) == 15s);
    CHECK(backoff_delay(policy, 1, -infinity) == 5s);
  }
  SECTION("a jitter outside [0, 1] counts as its end; NaN as none") {
    policy.jitter = 3.0;
    CHECK(backoff_delay(policy, 1, 1.0) == 20s);
    CHECK(backoff_delay(policy, 1, -1.0) == 0s);  // Never negative.
    policy.jitter = -0.5;
    CHECK(backoff_delay(policy, 1, 1.0) == 10s);
    policy.jitter = not_a_number;
    CHECK(backoff_delay(policy, 1, 1.0) == 10s);
    CHECK(backoff_delay(policy, 1, -1.0) == 10s);
  }
  SECTION("a NaN spread is no spread (not the longest delay there is)") {
    CHECK(backoff_delay(policy, 1, not_a_number) == 10s);
    CHECK(backoff_delay(policy, 10, not_a_number) == 1min);
  }
}

TEST_CASE("backoff_delay: within its bounds for every spread",
          "[restart_policy][backoff][jitter]") {
  RestartPolicy policy = doubling(3s, 40s);
  policy.jitter = 0.2;
  for (std::uint32_t n = 1; n <= 8; ++n) {
    const double base = std::min(3.0 * std::pow(2.0, n - 1.0), 40.0);
    for (int i = -10; i <= 10; ++i) {
      const double spread = i / 10.0;
      INFO("failure " << n << ", spread " << spread);
      const double seconds =
          std::chrono::duration<double>(backoff_delay(policy, n, spread)).count();
      CHECK(seconds >= base * 0.8 - 1e-6);
      CHECK(seconds <= base * 1.2 + 1e-6);
    }
  }
}

TEST_CASE("backoff_delay: huge inputs saturate, never overflow into a negative delay",
          "[restart_policy][backoff]") {
  SECTION("the count overflows the power: the cap") {
    RestartPolicy policy = doubling(1s, 1h);
    CHECK(backoff_delay(policy, std::numeric_limits<std::uint32_t>::max(), 0.0) == 1h);
    policy.multiplier = 1e300;
    CHECK(backoff_delay(policy, 3, 0.0) == 1h);
    policy.multiplier = infinity;
    CHECK(backoff_delay(policy, 2, 0.0) == 1h);
  }
  SECTION("an unbounded cap: a quarter of the range at most") {
    RestartPolicy policy = doubling(1s, Duration::max());
    policy.jitter = 1.0;
    for (const std::uint32_t n : {40U, 64U, 80U, 1100U, 0xFFFFFFFFU}) {
      for (const double spread : {-1.0, 0.0, 1.0}) {
        INFO("failure " << n << ", spread " << spread);
        const auto delay = backoff_delay(policy, n, spread);
        CHECK(delay >= 0s);
        CHECK(delay < ceiling + 1us);
      }
    }
    CHECK(at_ceiling(backoff_delay(policy, 0xFFFFFFFFU, 0.0)));
  }
  SECTION("the longest initial backoff there is") {
    RestartPolicy policy = doubling(Duration::max(), Duration::max());
    CHECK(at_ceiling(backoff_delay(policy, 1, 0.0)));
    CHECK(at_ceiling(backoff_delay(policy, 2, 0.0)));
    policy.max_backoff = 1min;
    CHECK(backoff_delay(policy, 1, 0.0) == 1min);
  }
  SECTION("a zero or negative cap: no wait") {
    RestartPolicy policy = doubling(1s, 0s);
    CHECK(backoff_delay(policy, 3, 1.0) == 0s);
    policy.max_backoff = -1h;
    CHECK(backoff_delay(policy, 3, 1.0) == 0s);
  }
}

// ---- KeyHistory --------------------------------------------------------------------------------

namespace {

/// A row that can be compared: a changed row revives a given-up key.
struct Row {
  int version = 0;
  bool operator==(const Row&) const = default;
};

/// A row that cannot: only `lift_give_up` (an explicit start) or forgetting the history does.
struct OpaqueRow {
  int version = 0;
};

using History = supervisor::detail::KeyHistory<Row>;
using Gate = History::Gate;

const TimePoint t0 = TimePoint{} + 1h;
const std::exception_ptr boom = std::make_exception_ptr(std::runtime_error("boom"));
const Row row1{1};

/// A failure before `ready`, at `at`.
History::Verdict fail(History& history, const RestartPolicy& policy, TimePoint at,
                      std::optional<TimePoint> ready_at = std::nullopt, bool give_up = false) {
  return history.record_exit(policy, at, ready_at, true, boom, give_up, 0.0, &row1);
}

}  // namespace

TEST_CASE("KeyHistory: consecutive failures grow the backoff; the gate holds until it ends",
          "[restart_policy][history]") {
  const RestartPolicy policy = doubling(10s);
  History history(7, t0);
  CHECK(history.hash() == 7);
  CHECK(history.may_start(t0, row1, 1) == Gate::go);  // No failure yet.

  const auto first = fail(history, policy, t0);
  CHECK(first.failed);
  CHECK(first.consecutive_failures == 1);
  CHECK(first.delay == 10s);
  CHECK_FALSE(first.given_up_now);
  CHECK(history.may_start(t0 + 9s, row1, 2) == Gate::backing_off);
  CHECK(history.backoff_end(t0 + 9s) == t0 + 10s);
  CHECK(history.may_start(t0 + 10s, row1, 3) == Gate::go);
  CHECK_FALSE(history.backoff_end(t0 + 10s));

  const auto second = fail(history, policy, t0 + 10s);
  CHECK(second.consecutive_failures == 2);
  CHECK(second.delay == 20s);
  const auto third = fail(history, policy, t0 + 30s);
  CHECK(third.consecutive_failures == 3);
  CHECK(third.delay == 40s);
  CHECK(history.may_start(t0 + 69s, row1, 4) == Gate::backing_off);
  CHECK(history.may_start(t0 + 70s, row1, 5) == Gate::go);

  history.count_restart();
  const auto view = history.view();
  CHECK(view.consecutive_failures == 3);
  CHECK(view.restarts == 1);
  CHECK(view.since == t0 + 30s);
  CHECK(view.next_start == t0 + 70s);
  CHECK(view.last_error == boom);
  CHECK_FALSE(view.given_up);
}

TEST_CASE("KeyHistory: a clean exit ends the backoff but keeps the count",
          "[restart_policy][history]") {
  const RestartPolicy policy = doubling(10s);
  History history(1, t0);
  (void)fail(history, policy, t0);
  const auto clean =
      history.record_exit(policy, t0 + 2s, t0 + 1s, false, nullptr, false, 0.0, &row1);
  CHECK_FALSE(clean.failed);
  CHECK(clean.delay == 0s);
  CHECK(history.may_start(t0 + 2s, row1, 1) == Gate::go);
  // Ready for 1 s only: not healthy, so the next failure is the second in a row.
  CHECK(fail(history, policy, t0 + 3s).consecutive_failures == 2);
}

TEST_CASE("KeyHistory: ready for reset_after before it fails starts the count again",
          "[restart_policy][history][reset_after]") {
  RestartPolicy policy = doubling(10s);
  policy.reset_after = 1min;
  policy.give_up_after = 2;
  policy.give_up_window = 1h;
  History history(1, t0);
  CHECK(fail(history, policy, t0).consecutive_failures == 1);
  CHECK(fail(history, policy, t0 + 10s).consecutive_failures == 2);

  SECTION("ready for exactly reset_after: healthy") {
    const auto verdict = fail(history, policy, t0 + 2min, t0 + 1min);
    CHECK(verdict.consecutive_failures == 1);
    CHECK(verdict.delay == 10s);
    CHECK_FALSE(verdict.given_up_now);  // The give-up window's count starts again too.
    CHECK(history.view().consecutive_failures == 1);
  }
  SECTION("ready a little less: the third failure in a row, and given up") {
    const auto verdict = fail(history, policy, t0 + 2min, t0 + 1min + 1ns);
    CHECK(verdict.consecutive_failures == 3);
    CHECK(verdict.delay == 40s);
    CHECK(verdict.given_up_now);
  }
  SECTION("a clean exit after a healthy run clears the count and the error") {
    (void)history.record_exit(policy, t0 + 2min, t0 + 1min, false, nullptr, false, 0.0, &row1);
    CHECK(history.view().consecutive_failures == 0);
    CHECK(history.view().last_error == nullptr);
    CHECK(fail(history, policy, t0 + 3min).consecutive_failures == 1);
  }
}

TEST_CASE("KeyHistory: more than give_up_after failures within the window give the key up",
          "[restart_policy][history][give_up]") {
  RestartPolicy policy = doubling(1s);
  policy.give_up_after = 3;
  policy.give_up_window = 1min;
  History history(1, t0);

  SECTION("the fourth failure inside the window") {
    for (int i = 0; i < 3; ++i) {
      INFO("failure " << i + 1);
      CHECK_FALSE(fail(history, policy, t0 + i * 10s).given_up_now);
    }
    const auto fourth = fail(history, policy, t0 + 1min);  // At the window's end: inside.
    CHECK(fourth.given_up_now);
    CHECK(fourth.consecutive_failures == 4);
    CHECK(history.view().given_up);
    // Given up: no automatic start, however long it waits, and no backoff to wake up for.
    CHECK(history.may_start(t0 + 1h, row1, 1) == Gate::given_up);
    CHECK_FALSE(history.backoff_end(t0 + 1min));
    CHECK_FALSE(fail(history, policy, t0 + 2h).given_up_now);  // Told once.
    CHECK(history.may_start(t0 + 3h, row1, 2) == Gate::given_up);
  }
  SECTION("failures farther apart than the window never give up") {
    for (int i = 0; i < 20; ++i) {
      INFO("failure " << i + 1);
      CHECK_FALSE(fail(history, policy, t0 + i * (1min + 1ns)).given_up_now);
    }
    CHECK(history.view().consecutive_failures == 20);  // Consecutive all the same.
    CHECK_FALSE(history.view().given_up);
  }
  SECTION("give_up_after = 0 never gives up") {
    policy.give_up_after = 0;
    for (int i = 0; i < 100; ++i) {
      CHECK_FALSE(fail(history, policy, t0 + i * 1ms).given_up_now);
    }
    CHECK(history.may_start(t0 + 1h, row1, 1) == Gate::go);
  }
  SECTION("the runnable's do_not_restart gives up at once, whatever the limit") {
    policy.give_up_after = 0;
    const auto verdict = fail(history, policy, t0, std::nullopt, /*give_up=*/true);
    CHECK(verdict.given_up_now);
    CHECK(verdict.consecutive_failures == 1);
    CHECK(history.may_start(t0 + 1h, row1, 1) == Gate::given_up);
  }
}

TEST_CASE("KeyHistory: a changed row or an explicit start revives a given-up key",
          "[restart_policy][history][give_up]") {
  RestartPolicy policy = doubling(1s);
  policy.give_up_after = 1;
  History history(1, t0);
  (void)fail(history, policy, t0);
  REQUIRE(fail(history, policy, t0 + 1s).given_up_now);

  SECTION("the same row stays given up; a changed one starts afresh") {
    CHECK(history.may_start(t0 + 1h, Row{1}, 1) == Gate::given_up);
    CHECK(history.may_start(t0 + 1h, Row{2}, 2) == Gate::go);
    const auto view = history.view();
    CHECK_FALSE(view.given_up);
    CHECK(view.consecutive_failures == 0);
    CHECK(view.last_error == nullptr);
    CHECK_FALSE(fail(history, policy, t0 + 2h).given_up_now);  // A new count.
  }
  SECTION("lift_give_up: automatic starts again, the count of failures kept") {
    history.lift_give_up();
    CHECK_FALSE(history.view().given_up);
    CHECK(history.view().consecutive_failures == 2);
    CHECK(history.may_start(t0 + 1h, Row{1}, 1) == Gate::go);
    const auto next = fail(history, policy, t0 + 2h);
    CHECK(next.consecutive_failures == 3);
    CHECK_FALSE(next.given_up_now);  // The window's count started again.
    CHECK(fail(history, policy, t0 + 2h + 1s).given_up_now);
  }
}

TEST_CASE("KeyHistory: a row that cannot be compared is never taken for changed",
          "[restart_policy][history][give_up]") {
  RestartPolicy policy;
  policy.give_up_after = 1;
  supervisor::detail::KeyHistory<OpaqueRow> history(1, t0);
  const OpaqueRow row{1};
  (void)history.record_exit(policy, t0, std::nullopt, true, boom, false, 0.0, &row);
  REQUIRE(history.record_exit(policy, t0, std::nullopt, true, boom, false, 0.0, &row).given_up_now);
  CHECK(history.may_start(t0 + 1h, OpaqueRow{2}, 1) == decltype(history)::Gate::given_up);
  history.lift_give_up();
  CHECK(history.may_start(t0 + 1h, OpaqueRow{2}, 2) == decltype(history)::Gate::go);
}

TEST_CASE("KeyHistory: a backoff past the end of the clock's range waits to its end",
          "[restart_policy][history]") {
  const TimePoint late = TimePoint::max() - 1s;
  RestartPolicy policy = doubling(Duration::max(), Duration::max());
  History history(1, t0);
  SECTION("the longest delay") {
    const auto verdict = fail(history, policy, late);
    CHECK(at_ceiling(verdict.delay));
  }
  SECTION("a short delay that still passes the end") {
    policy = doubling(10s);
    const auto verdict = fail(history, policy, late);
    CHECK(verdict.delay == 10s);
  }
  // Not wrapped into the past: still backing off, until the end of time.
  CHECK(history.view().next_start == TimePoint::max());
  CHECK(history.may_start(late, row1, 1) == Gate::backing_off);
  CHECK(history.may_start(late + 999ms, row1, 2) == Gate::backing_off);
  CHECK(history.backoff_end(late) == TimePoint::max());
}

TEST_CASE("KeyHistory: before the clock's epoch a backoff ends when it should",
          "[restart_policy][history]") {
  // A custom clock may read before its epoch; `max() - now` must not overflow there.
  const TimePoint early = TimePoint{} - 1h;
  History history(1, early);
  const auto verdict = fail(history, doubling(10s), early);
  CHECK(verdict.delay == 10s);
  CHECK(history.view().next_start == early + 10s);
  CHECK(history.may_start(early + 9s, row1, 1) == Gate::backing_off);
  CHECK(history.may_start(early + 10s, row1, 2) == Gate::go);
}
