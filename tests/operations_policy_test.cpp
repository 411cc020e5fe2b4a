// Operations: the restart policy and escalation as a running supervisor applies them, on a
// manual clock. Backoff between passes, its growth, its independence per key; reset_after;
// give-up and what revives a given-up key; escalation by count, by period and by the runnable's
// word; and retry_when_due's early wake-up of the restart loop.
//
// Whether a pass started a key is read from its snapshot's `restarts`, which the pass bumps on
// its own thread before the loop arms its next wait (so `restart_pass` returning settles it).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "catch_shim.hpp"
#include "operations_event_log.hpp"
#include "operations_policy_rig.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ErrorSource;
using supervisor::EventKind;
using supervisor::KeyState;

using test::policy::failing;
using test::policy::Log;
using test::policy::Rig;
using test::policy::steady;
using test::policy::Worker;

namespace {

supervisor::RestartPolicy backoff(std::chrono::seconds initial) {
  supervisor::RestartPolicy policy;
  policy.initial_backoff = initial;
  policy.multiplier = 2.0;
  policy.jitter = 0.0;
  return policy;
}

}  // namespace

// ---- backoff -----------------------------------------------------------------------------------

TEST_CASE("policy: a failed key is not started before its backoff ends, and is by the next pass",
          "[operations][policy][backoff]") {
  Rig rig(backoff(90s));
  rig.table->insert_or_assign("a", failing());
  rig.start_run();  // The initial pass starts it at t0; it fails.
  const auto t0 = rig.clock->now();
  REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, 1));
  CHECK(rig.status("a")->next_start == t0 + 90s);

  rig.restart_pass();  // t0 + 60 s: backing off.
  CHECK(rig.restarts("a") == 0);
  CHECK(rig.status("a")->state == KeyState::backing_off);
  rig.restart_pass();  // t0 + 120 s: due.
  CHECK(rig.restarts("a") == 1);
  REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, 2));
  const auto e = rig.log.of("a");
  REQUIRE(e.size() == 6);
  CHECK(e[3].kind == EventKind::starting);
  CHECK(e[3].at == t0 + 120s);
  REQUIRE(rig.finish() == nullptr);
  CHECK(rig.table->get("a")->script->lives == 2);
}

TEST_CASE("policy: a backoff that ends as a pass begins lets that pass start the key",
          "[operations][policy][backoff]") {
  Rig rig(backoff(60s));
  rig.table->insert_or_assign("a", failing());
  rig.start_run();
  REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, 1));
  rig.restart_pass();  // t0 + 60 s: exactly its end.
  CHECK(rig.restarts("a") == 1);
  REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, 2));
  REQUIRE(rig.finish() == nullptr);
}

TEST_CASE("policy: restart_scheduled doubles its delay with each failure in a row, to the cap",
          "[operations][policy][backoff][events]") {
  auto policy = backoff(10s);
  policy.max_backoff = 50s;
  Rig rig(policy);
  rig.table->insert_or_assign("a", failing());
  rig.start_run();
  const auto t0 = rig.clock->now();
  REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, 1));
  for (int pass = 1; pass <= 4; ++pass) {
    rig.restart_pass();  // Each a minute later: every delay so far has passed.
    REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, pass + 1));
  }
  REQUIRE(rig.finish() == nullptr);

  std::vector<Log::Entry> scheduled;
  for (const auto& e : rig.log.of("a")) {
    if (e.kind == EventKind::restart_scheduled) {
      scheduled.push_back(e);
    }
  }
  REQUIRE(scheduled.size() == 5);
  const std::chrono::seconds delays[] = {10s, 20s, 40s, 50s, 50s};
  for (std::size_t i = 0; i < scheduled.size(); ++i) {
    INFO("failure " << i + 1);
    CHECK(scheduled[i].delay == delays[i]);
    CHECK(scheduled[i].consecutive_failures == i + 1);
    CHECK(scheduled[i].at == t0 + std::chrono::minutes(i));
  }
  CHECK(rig.reports.count(ErrorSource::start) == 5);
}

TEST_CASE("policy: one key's failures never delay another key", "[operations][policy][backoff]") {
  Rig rig(backoff(30s));
  rig.start_run();
  rig.table->insert_or_assign("bad", failing());
  auto once = steady();
  once.script->body = [](int life, supervisor::Ready& ready) {
    if (life == 1) {
      return make_error_code(std::errc::io_error);
    }
    ready();
    return std::error_code{};
  };
  rig.table->insert_or_assign("once", once);
  const auto t0 = rig.clock->now();
  for (int i = 0; i < 3; ++i) {
    CHECK(rig.start("bad") == std::errc::io_error);  // Explicit starts ignore the backoff.
  }
  CHECK(rig.start("once") == std::errc::io_error);
  CHECK(rig.status("bad")->next_start == t0 + 120s);
  CHECK(rig.status("once")->next_start == t0 + 30s);
  const auto first = rig.log.of("once");
  REQUIRE(first.size() == 3);
  CHECK(first[2].kind == EventKind::restart_scheduled);
  CHECK(first[2].delay == 30s);
  CHECK(first[2].consecutive_failures == 1);
  // A key that never failed starts at once, while every other key backs off.
  rig.table->insert_or_assign("fresh", steady());
  REQUIRE(rig.sup->reconcile("fresh") == std::error_code{});
  REQUIRE(rig.wait_for("fresh", EventKind::ready, 1));

  rig.restart_pass();  // t0 + 60 s
  REQUIRE(once.script->entered.wait(2));
  REQUIRE(rig.wait_for("once", EventKind::ready, 1));
  CHECK(rig.status("once")->state == KeyState::running);
  CHECK(rig.status("bad")->state == KeyState::backing_off);
  CHECK(rig.restarts("bad") == 2);  // The explicit starts only.
  REQUIRE(rig.finish() == nullptr);
}

TEST_CASE("policy: a process ready for reset_after before it fails starts the count again",
          "[operations][policy][reset_after]") {
  auto policy = backoff(10s);
  policy.reset_after = 1min;
  Rig rig(policy);
  auto worker = steady();
  std::stop_source fail_now[4];
  worker.script->body = [&fail_now](int life, supervisor::Ready& ready) {
    if (life == 1) {
      return make_error_code(std::errc::io_error);
    }
    ready(fail_now[life].get_token());  // Ready until the test lets it fail.
    return make_error_code(std::errc::io_error);
  };
  rig.table->insert_or_assign("a", worker);
  rig.start_run();
  REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, 1));  // Life 1 failed at t0.

  auto fail_after = [&](int life, std::chrono::nanoseconds ready_for) {
    REQUIRE(rig.start("a") == std::error_code{});
    rig.clock->advance(ready_for);
    fail_now[life].request_stop();
    REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, life));
    return rig.log.of("a").back();
  };
  const auto second = fail_after(2, 1min - 1ns);  // Not quite healthy: two in a row.
  CHECK(second.consecutive_failures == 2);
  CHECK(second.delay == 20s);
  const auto third = fail_after(3, 1min);  // Healthy: a new count.
  CHECK(third.consecutive_failures == 1);
  CHECK(third.delay == 10s);
  CHECK(rig.status("a")->consecutive_failures == 1);
  REQUIRE(rig.finish() == nullptr);
}

// ---- give-up -----------------------------------------------------------------------------------

TEST_CASE("policy: the (N+1)th failure within the window gives the key up, until revived",
          "[operations][policy][give_up]") {
  supervisor::RestartPolicy policy;  // No backoff: every pass would start it.
  policy.give_up_after = 2;
  policy.give_up_window = 10min;
  Rig rig(policy);
  auto worker = failing();
  rig.table->insert_or_assign("a", worker);
  rig.start_run();  // Failure 1, at t0.
  REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, 1));
  rig.restart_pass();  // 2, at t0 + 1 min.
  REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, 2));
  CHECK(rig.status("a")->state == KeyState::waiting);
  rig.restart_pass();  // 3, at t0 + 2 min: given up.
  REQUIRE(rig.wait_for("a", EventKind::given_up, 1));
  REQUIRE(rig.reports.wait(4));  // Three failed background starts, and the give-up.
  CHECK(rig.count("a", EventKind::restart_scheduled) == 2);  // None for the last failure.
  CHECK(rig.log.of("a").back().consecutive_failures == 3);
  CHECK(rig.reports.count(ErrorSource::given_up) == 1);
  CHECK(rig.status("a")->state == KeyState::given_up);
  CHECK(rig.restarts("a") == 2);
  rig.restart_pass();
  rig.restart_pass();
  CHECK(rig.restarts("a") == 2);  // No more automatic starts.
  CHECK(worker.script->lives == 3);

  SECTION("an explicit start revives it") {
    CHECK(rig.start("a") == std::errc::io_error);
    CHECK(rig.count("a", EventKind::given_up) == 1);  // A fresh window: no second give-up.
    CHECK(rig.status("a")->state == KeyState::waiting);
    rig.restart_pass();  // Automatic starts again.
    CHECK(rig.restarts("a") == 4);
  }
  SECTION("reset(key) forgets it") {
    CHECK(rig.sup->reset("a"));
    CHECK_FALSE(rig.status("a"));
    CHECK_FALSE(rig.sup->reset("a"));
    rig.restart_pass();
    REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, 3));
    CHECK(rig.log.of("a").back().consecutive_failures == 1);
  }
  SECTION("a changed row revives it; the same row again does not") {
    rig.table->insert_or_assign("a", worker);
    rig.restart_pass();
    CHECK(rig.restarts("a") == 2);
    Worker changed = worker;
    changed.version = 2;
    rig.table->insert_or_assign("a", changed);
    rig.restart_pass();
    REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, 3));
    CHECK(rig.log.of("a").back().consecutive_failures == 1);
    CHECK(rig.status("a")->restarts == 3);
  }
  REQUIRE(rig.finish() == nullptr);
}

TEST_CASE("policy: errc::do_not_restart gives the key up at its first failure",
          "[operations][policy][give_up]") {
  Rig rig(supervisor::RestartPolicy{});  // give_up_after = 0: never by count.
  Worker worker;
  worker.script->body = [](int, supervisor::Ready&) {
    return make_error_code(errc::do_not_restart);
  };
  rig.table->insert_or_assign("a", worker);
  rig.start_run();
  REQUIRE(rig.wait_for("a", EventKind::given_up, 1));
  CHECK(rig.log.kinds("a") == "starting failed given_up");
  CHECK(rig.status("a")->state == KeyState::given_up);
  rig.restart_pass();
  CHECK(rig.restarts("a") == 0);
  REQUIRE(rig.finish() == nullptr);
  CHECK(worker.script->lives == 1);
}

TEST_CASE("policy: a snapshot taken as the give-up or the backoff is told already shows it",
          "[operations][policy][snapshot]") {
  // The hook runs while the exited process's record is still in the map: the snapshot must
  // describe the key by the exit it has just recorded, not as "stopping".
  supervisor::RestartPolicy policy;
  policy.initial_backoff = 10s;
  Rig rig(policy);
  std::vector<KeyState> seen;  // written by the hook on the exiting thread, read after `finish`
  auto record = rig.log.hook();
  rig.options.on_event = [&](const supervisor::Event<std::string>& event) {
    if (event.kind == EventKind::given_up || event.kind == EventKind::restart_scheduled) {
      for (const auto& entry : rig.sup->snapshot().keys) {
        if (entry.key == event.key) {
          seen.push_back(entry.state);
        }
      }
    }
    record(event);
  };
  Worker worker;
  worker.script->body = [](int life, supervisor::Ready&) -> std::error_code {
    if (life == 1) {
      return make_error_code(std::errc::io_error);
    }
    return make_error_code(errc::do_not_restart);
  };
  rig.table->insert_or_assign("a", worker);
  rig.start_run();  // life 1 fails: a backoff is scheduled.
  REQUIRE(rig.wait_for("a", EventKind::restart_scheduled, 1));
  rig.wait_for_exits_to_leave();
  rig.clock->advance(1h);  // past any backoff; life 2 gives up.
  REQUIRE(rig.wait_for("a", EventKind::given_up, 1));
  REQUIRE(rig.finish() == nullptr);
  CHECK(seen == std::vector<KeyState>{KeyState::backing_off, KeyState::given_up});
}

// ---- escalation --------------------------------------------------------------------------------

TEST_CASE("policy: more than max_failures within the period escalates: run stops everything",
          "[operations][policy][escalation]") {
  Rig rig(supervisor::RestartPolicy{}, supervisor::Escalation{2, 1min});
  rig.table->insert_or_assign("bad", failing());
  rig.table->insert_or_assign("steady", steady());
  rig.start_run();  // "bad" fails once (initial pass).
  REQUIRE(rig.wait_for("bad", EventKind::failed, 1));
  REQUIRE(rig.wait_for("steady", EventKind::ready, 1));
  rig.clock->advance(30s);
  CHECK(rig.start("bad") == std::errc::io_error);  // 2: at the limit, not over it.
  CHECK(rig.log.of("bad").back().kind == EventKind::restart_scheduled);
  CHECK_FALSE(rig.runner->finished());
  rig.clock->advance(30s);  // t0 + 60 s: still within the period.
  (void)rig.start("bad");   // 3: over it.
  REQUIRE(rig.runner->wait());
  CHECK(test::code_of([&] { std::rethrow_exception(rig.runner->join()); }) == errc::escalated);
  CHECK(rig.count("bad", EventKind::escalated) == 1);
  CHECK(rig.log.kinds("steady") == "starting ready stop_requested stopped");
  CHECK(rig.sup->keys().empty());
}

TEST_CASE("policy: failures farther apart than the period never escalate",
          "[operations][policy][escalation]") {
  Rig rig(supervisor::RestartPolicy{}, supervisor::Escalation{1, 10s});
  rig.table->insert_or_assign("bad", failing());
  rig.start_run();
  REQUIRE(rig.wait_for("bad", EventKind::failed, 1));
  for (int i = 2; i <= 6; ++i) {
    rig.clock->advance(11s);
    INFO("failure " << i);
    CHECK(rig.start("bad") == std::errc::io_error);
    CHECK(rig.log.of("bad").back().kind == EventKind::restart_scheduled);
  }
  CHECK(rig.count("bad", EventKind::escalated) == 0);
  CHECK_FALSE(rig.runner->finished());
  rig.clock->advance(10s);  // Within the period of the last one.
  (void)rig.start("bad");
  REQUIRE(rig.runner->wait());
  CHECK(test::code_of([&] { std::rethrow_exception(rig.runner->join()); }) == errc::escalated);
}

TEST_CASE("policy: errc::escalate from a runnable escalates at once",
          "[operations][policy][escalation]") {
  Rig rig(supervisor::RestartPolicy{});  // max_failures = 0: never by count.
  rig.table->insert_or_assign("steady", steady());
  rig.start_run();
  // Its `ready` may come after the callback began: before the shutdown's `stop_requested`.
  REQUIRE(rig.wait_for("steady", EventKind::ready, 1));
  Worker worker;
  worker.script->body = [](int, supervisor::Ready&) { return make_error_code(errc::escalate); };
  rig.table->insert_or_assign("a", worker);
  CHECK(rig.start("a") == errc::escalate);
  REQUIRE(rig.runner->wait());
  CHECK(test::code_of([&] { std::rethrow_exception(rig.runner->join()); }) == errc::escalated);
  CHECK(rig.count("a", EventKind::escalated) == 1);
  CHECK(rig.log.kinds("steady") == "starting ready stop_requested stopped");
  CHECK(worker.script->lives == 1);
  CHECK(rig.sup->keys().empty());
}

// ---- retry_when_due ----------------------------------------------------------------------------

TEST_CASE("policy: retry_when_due wakes the loop when the backoff ends, not at the next pass",
          "[operations][policy][retry_when_due]") {
  const bool retry = GENERATE(true, false);
  INFO("retry_when_due " << retry);
  auto policy = backoff(10s);
  policy.retry_when_due = retry;
  Rig rig(policy);
  rig.start_run();  // The loop is asleep until t0 + 1 min.
  const auto t0 = rig.clock->now();
  const auto worker = failing();
  rig.table->insert_or_assign("a", worker);
  const auto arms = rig.clock->arms();
  REQUIRE(rig.start("a") == std::errc::io_error);  // Fails at t0; due at t0 + 10 s.
  if (retry) {
    // The loop woke and sleeps again, now until the backoff ends.
    REQUIRE(test::eventually([&] { return rig.clock->arms() > arms; }));
    REQUIRE(rig.loop_waits_on_clock());
  }
  rig.clock->advance(10s);
  if (retry) {
    REQUIRE(worker.script->entered.wait(2));
    REQUIRE(rig.wait_for("a", EventKind::failed, 2));
    const auto e = rig.log.of("a");
    REQUIRE(e.size() >= 4);
    CHECK(e[3].kind == EventKind::starting);
    CHECK(e[3].at == t0 + 10s);
  } else {
    CHECK(rig.clock->sleepers() == 1);  // Still asleep: nothing woke it.
    CHECK(rig.restarts("a") == 0);
    rig.clock->advance(50s);  // The periodic pass, at t0 + 1 min.
    REQUIRE(worker.script->entered.wait(2));
  }
  REQUIRE(rig.finish() == nullptr);
}
