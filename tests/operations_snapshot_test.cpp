// Operations: Supervisor::snapshot(). The state of each key (starting, running, stopping,
// backing_off, waiting, given_up) with its times, counts per state, restarts, consecutive
// failures and last error, and its agreement with keys().

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include "catch_shim.hpp"
#include "supervisor_class_harness.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ErrorSource;
using supervisor::KeyState;
using test::Harness;
using test::Probe;
using test::Shutdown;
using test::Startup;
using Status = supervisor::KeyStatus<std::string>;
using Snap = supervisor::Snapshot<std::string>;

namespace {

/// The entry of `key` in `snapshot`, if any (and at most one).
std::optional<Status> find(const Snap& snapshot, const std::string& key) {
  std::optional<Status> found;
  for (const auto& status : snapshot.keys) {
    if (status.key == key) {
      if (found) {
        return std::nullopt;  // Twice: a test failure either way.
      }
      found = status;
    }
  }
  return found;
}

/// The keys of `snapshot` with a process (starting, running or stopping), sorted.
std::vector<std::string> with_process(const Snap& snapshot) {
  std::vector<std::string> result;
  for (const auto& status : snapshot.keys) {
    if (status.state == KeyState::starting || status.state == KeyState::running ||
        status.state == KeyState::stopping) {
      result.push_back(status.key);
    }
  }
  std::sort(result.begin(), result.end());
  return result;
}

std::vector<std::string> sorted_keys(const test::ProbeSupervisor& sup) {
  auto keys = sup.keys();
  std::sort(keys.begin(), keys.end());
  return keys;
}

/// What `start` threw, as text ("" if it did not throw).
std::string start_failure(Harness& h, const std::string& key) {
  try {
    (void)h.sup->start(key);
  } catch (...) {
    return test::what(std::current_exception());
  }
  return "";
}

using test::code_in;

void use_policy(Harness& h, const supervisor::RestartPolicy& policy) {
  auto options = h.options();
  options.restart = policy;
  h.sup = std::make_unique<test::ProbeSupervisor>(h.table, options);
}

}  // namespace

TEST_CASE("snapshot: starting, running and stopping processes, in agreement with keys()",
          "[operations][snapshot]") {
  Harness h;
  h.start_run();
  test::ThreeStates scene(h);
  const auto t0 = scene.t0;

  const Snap snap = h.sup->snapshot();
  const auto keys = sorted_keys(*h.sup);
  CHECK(snap.taken_at == t0 + 4s);
  CHECK(snap.keys.size() == 3);
  CHECK(snap.count(KeyState::starting) == 1);
  CHECK(snap.count(KeyState::running) == 1);
  CHECK(snap.count(KeyState::stopping) == 1);
  CHECK(snap.count(KeyState::backing_off) == 0);
  CHECK(snap.count(KeyState::waiting) == 0);
  CHECK(snap.count(KeyState::given_up) == 0);
  CHECK(with_process(snap) == keys);

  const auto running = find(snap, "runs");
  REQUIRE(running);
  CHECK(running->state == KeyState::running);
  CHECK(running->since == t0 + 1s);  // When it became ready.
  CHECK(running->restarts == 0);
  CHECK(running->consecutive_failures == 0);
  CHECK(running->last_error == nullptr);
  CHECK_FALSE(running->next_start);
  const auto starting = find(snap, "starts");
  REQUIRE(starting);
  CHECK(starting->state == KeyState::starting);
  CHECK(starting->since == t0 + 2s);  // When it was launched.
  const auto stopping = find(snap, "stops");
  REQUIRE(stopping);
  CHECK(stopping->state == KeyState::stopping);
  CHECK(stopping->since == t0 + 3s);  // When its stop was requested.

  scene.release();
  CHECK(scene.start_ec == std::error_code{});
  CHECK(scene.stop_ec == errc::canceled);

  const Snap after = h.sup->snapshot();
  CHECK(with_process(after) == std::vector<std::string>{"runs", "starts"});
  CHECK(with_process(after) == sorted_keys(*h.sup));
  CHECK(after.count(KeyState::running) == 2);
  CHECK(after.keys.size() == 2);  // "stops" never failed: no history, no entry.
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("snapshot: a failed key backs off, counts restarts and failures, then waits",
          "[operations][snapshot]") {
  Harness h;
  supervisor::RestartPolicy policy;
  policy.initial_backoff = 10s;
  policy.multiplier = 2.0;
  policy.jitter = 0.0;
  use_policy(h, policy);
  h.start_run();
  const auto t0 = h.clock->now();
  h.table->insert_or_assign("flaky", Probe::with(Startup::throw_error));

  REQUIRE(start_failure(h, "flaky") == "init failed");
  const Snap first = h.sup->snapshot();
  const auto s1 = find(first, "flaky");
  REQUIRE(s1);
  CHECK(s1->state == KeyState::backing_off);
  CHECK(s1->since == t0);
  CHECK(s1->next_start == t0 + 10s);
  CHECK(s1->consecutive_failures == 1);
  CHECK(s1->restarts == 0);
  CHECK(test::what(s1->last_error) == "init failed");
  CHECK(first.count(KeyState::backing_off) == 1);
  CHECK(first.keys.size() == 1);
  CHECK(with_process(first).empty());

  h.clock->advance(2s);
  REQUIRE(start_failure(h, "flaky") == "init failed");  // An explicit start ignores backoff.
  const auto s2 = find(h.sup->snapshot(), "flaky");
  REQUIRE(s2);
  CHECK(s2->state == KeyState::backing_off);
  CHECK(s2->since == t0 + 2s);
  CHECK(s2->next_start == t0 + 22s);  // 10 s * 2
  CHECK(s2->consecutive_failures == 2);
  CHECK(s2->restarts == 1);

  h.clock->advance(25s);  // Past its backoff, before the next pass.
  const Snap third = h.sup->snapshot();
  const auto s3 = find(third, "flaky");
  REQUIRE(s3);
  CHECK(s3->state == KeyState::waiting);
  CHECK_FALSE(s3->next_start);
  CHECK(s3->consecutive_failures == 2);
  CHECK(third.count(KeyState::waiting) == 1);
  CHECK(third.count(KeyState::backing_off) == 0);
  CHECK(third.taken_at == t0 + 27s);

  h.restart_pass();  // The pass starts it again (t0 + 87s), in the background; it fails.
  REQUIRE(h.reports.wait(1));
  const auto s4 = find(h.sup->snapshot(), "flaky");
  REQUIRE(s4);
  CHECK(s4->state == KeyState::backing_off);
  CHECK(s4->restarts == 2);
  CHECK(s4->consecutive_failures == 3);
  CHECK(s4->next_start == t0 + 87s + 40s);
  CHECK(h.reports.count(ErrorSource::start) == 1);
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("snapshot: a running key keeps its failures until it has run healthy",
          "[operations][snapshot]") {
  Harness h;
  supervisor::RestartPolicy policy;
  policy.reset_after = 10s;
  use_policy(h, policy);
  h.start_run();
  const auto t0 = h.clock->now();
  auto probe = Probe::with(Startup::ready);
  auto entries = std::make_shared<std::atomic<int>>(0);
  probe.state->on_enter = [entries] {
    if (entries->fetch_add(1) == 0) {
      throw std::runtime_error("first try");
    }
  };
  h.table->insert_or_assign("a", probe);

  REQUIRE(start_failure(h, "a") == "first try");
  h.clock->advance(1s);
  REQUIRE(h.start_code("a") == std::error_code{});
  const auto running = find(h.sup->snapshot(), "a");
  REQUIRE(running);
  CHECK(running->state == KeyState::running);
  CHECK(running->since == t0 + 1s);
  CHECK(running->restarts == 1);
  CHECK(running->consecutive_failures == 1);
  CHECK(test::what(running->last_error) == "first try");

  h.clock->advance(10s);  // Ready for reset_after: healthy.
  const auto healthy = find(h.sup->snapshot(), "a");
  REQUIRE(healthy);
  CHECK(healthy->state == KeyState::running);
  CHECK(healthy->consecutive_failures == 0);
  CHECK(healthy->restarts == 1);
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("snapshot: given-up keys, by the runnable's word and by the policy's limit",
          "[operations][snapshot]") {
  Harness h;
  supervisor::RestartPolicy policy;
  policy.give_up_after = 1;
  policy.give_up_window = 1min;
  use_policy(h, policy);
  h.start_run();
  const auto t0 = h.clock->now();
  auto quitter = Probe::with(Startup::ready);
  quitter.state->on_enter = [] {
    throw std::system_error(make_error_code(errc::do_not_restart), "bad config");
  };
  h.table->insert_or_assign("quitter", quitter);
  h.table->insert_or_assign("flaky", Probe::with(Startup::throw_error));

  REQUIRE_FALSE(start_failure(h, "quitter").empty());
  REQUIRE(start_failure(h, "flaky") == "init failed");
  h.clock->advance(1s);
  const Snap once = h.sup->snapshot();
  CHECK(once.count(KeyState::given_up) == 1);
  CHECK(once.count(KeyState::waiting) == 1);  // "flaky", without backoff: one failure so far.
  REQUIRE(start_failure(h, "flaky") == "init failed");  // The second within the window.

  const Snap snap = h.sup->snapshot();
  CHECK(snap.count(KeyState::given_up) == 2);
  CHECK(snap.keys.size() == 2);
  const auto q = find(snap, "quitter");
  REQUIRE(q);
  CHECK(q->state == KeyState::given_up);
  CHECK(q->since == t0);
  CHECK_FALSE(q->next_start);
  CHECK(code_in(q->last_error) == errc::do_not_restart);
  CHECK(q->consecutive_failures == 1);
  const auto f = find(snap, "flaky");
  REQUIRE(f);
  CHECK(f->state == KeyState::given_up);
  CHECK(f->since == t0 + 1s);
  CHECK(f->consecutive_failures == 2);
  CHECK(f->restarts == 1);
  CHECK(h.reports.count(ErrorSource::given_up) == 2);

  h.restart_pass();  // Given-up keys are not started by a pass.
  CHECK(h.sup->snapshot().count(KeyState::given_up) == 2);
  CHECK(h.sup->keys().empty());

  CHECK(h.sup->reset("quitter"));  // Forgotten: no entry.
  const Snap after_reset = h.sup->snapshot();
  CHECK_FALSE(find(after_reset, "quitter"));
  CHECK(after_reset.count(KeyState::given_up) == 1);
  REQUIRE(h.finish() == nullptr);
}
