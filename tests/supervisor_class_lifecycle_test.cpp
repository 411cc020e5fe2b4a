// Supervisor: the initial pass and the restart loop (the four scenarios of the Go tests), calls
// outside `run` and on unknown keys, and processes that end on their own.

#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

#include "catch_shim.hpp"
#include "supervisor_class_harness.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ErrorSource;
using test::eventually;
using test::Harness;
using test::has_key;
using test::Probe;
using test::Shutdown;
using test::Startup;

// ---- The four scenarios of the Go tests ------------------------------------------------------

TEST_CASE("initial pass: a startup that hangs is cut short by the initial wait", "[supervisor]") {
  Harness h;
  auto probe = Probe::with(Startup::hang);
  h.table->insert_or_assign("a", probe);
  h.start_run(/*wait_for_callback=*/false);

  REQUIRE(probe.state->entered.wait());
  REQUIRE(h.clock->wait_for_sleepers(1));  // The initial wait is armed...
  CHECK(h.in_callback.count() == 0);       // ...and holds the callback back.
  h.clock->advance(999ms);
  CHECK(h.in_callback.count() == 0);
  h.clock->advance(1ms);
  REQUIRE(h.in_callback.wait());

  CHECK(h.get_code("a") == errc::process_not_running);
  CHECK(h.start_code("a") == errc::process_exists);
  CHECK(test::code_of([&] { (void)h.sup->get("a"); }) == errc::process_not_running);

  REQUIRE(h.cancel() == nullptr);
  CHECK(probe.state->force_seen);
  CHECK(probe.state->returned.count() == 1);
  CHECK(h.sup->keys().empty());
}

TEST_CASE("initial pass: a startup that completes lets the callback run at once", "[supervisor]") {
  Harness h;
  auto probe = Probe::with(Startup::ready);
  h.table->insert_or_assign("a", probe);
  h.start_run();  // No clock advance: the wait ends when every start has finished.

  CHECK(h.clock->now() == supervisor::ManualClock::time_point{});
  CHECK(h.get_code("a") == std::error_code{});
  CHECK(h.sup->get("a").state == probe.state);

  REQUIRE(h.finish() == nullptr);
  CHECK_FALSE(probe.state->force_seen);  // A graceful stop, not a forced one.
  CHECK(probe.state->returned.count() == 1);
}

TEST_CASE("restart loop: a pass starts a process that hangs, and run still shuts down",
          "[supervisor]") {
  Harness h;
  h.start_run();
  auto probe = Probe::with(Startup::hang);
  h.table->insert_or_assign("a", probe);

  h.restart_pass();
  REQUIRE(probe.state->entered.wait());
  CHECK(h.get_code("a") == errc::process_not_running);

  REQUIRE(h.finish() == nullptr);  // Graceful: the hung startup is forced all the same.
  CHECK(probe.state->force_seen);
  CHECK(probe.state->returned.count() == 1);
}

TEST_CASE("two starts of one key: exactly one wins", "[supervisor]") {
  Harness h;
  h.start_run();

  SECTION("the second start arrives while the first is starting") {
    auto probe = Probe::with(Startup::hang_then_ready);
    h.table->insert_or_assign("a", probe);
    std::error_code first;
    test::Background starter([&] { first = h.start_code("a"); });
    REQUIRE(probe.state->entered.wait());
    CHECK(h.start_code("a") == errc::process_exists);
    probe.state->release.notify();
    REQUIRE(starter.join() == nullptr);
    CHECK(first == std::error_code{});
    CHECK(probe.state->entered.count() == 1);
  }

  SECTION("both race from a latch") {
    auto probe = Probe::with(Startup::ready);
    h.table->insert_or_assign("a", probe);
    std::latch go(2);
    std::error_code codes[2];
    {
      test::Background one([&] {
        go.arrive_and_wait();
        codes[0] = h.start_code("a");
      });
      test::Background two([&] {
        go.arrive_and_wait();
        codes[1] = h.start_code("a");
      });
    }
    const int wins =
        (codes[0] == std::error_code{} ? 1 : 0) + (codes[1] == std::error_code{} ? 1 : 0);
    CHECK(wins == 1);
    CHECK((codes[0] == errc::process_exists || codes[1] == errc::process_exists));
    CHECK(probe.state->entered.count() == 1);
  }

  REQUIRE(h.finish() == nullptr);
}

// ---- Calls outside run, unknown keys ---------------------------------------------------------

TEST_CASE("start before and after run reports not_running", "[supervisor]") {
  Harness h;
  h.table->insert_or_assign("a", Probe::with(Startup::ready));
  CHECK(h.start_code("a") == errc::not_running);
  CHECK(test::code_of([&] { (void)h.sup->start("a"); }) == errc::not_running);
  CHECK(h.stop_code("a") == errc::process_not_found);

  h.start_run();
  REQUIRE(h.finish() == nullptr);

  CHECK(h.start_code("a") == errc::not_running);
  CHECK(h.stop_code("a") == errc::process_not_found);
  CHECK(h.get_code("a") == errc::process_not_found);
  CHECK(h.sup->keys().empty());
}

TEST_CASE("stop, get and start of unknown keys", "[supervisor]") {
  Harness h;
  h.start_run();
  CHECK(h.stop_code("nope") == errc::process_not_found);
  CHECK(h.get_code("nope") == errc::process_not_found);
  CHECK(test::code_of([&] { h.sup->stop("nope"); }) == errc::process_not_found);
  CHECK(h.start_code("nope") == errc::not_in_table);
  // A failed start leaves the key free: the next start reaches the table again.
  h.table->insert_or_assign("nope", Probe::with(Startup::ready));
  CHECK(h.start_code("nope") == std::error_code{});
  REQUIRE(h.finish() == nullptr);
}

// ---- Processes that end on their own ---------------------------------------------------------

TEST_CASE("visit: calls back with a running process's runnable, and only then", "[supervisor]") {
  Harness h;
  auto a = Probe::with(Startup::ready);
  auto b = Probe::with(Startup::hang_then_ready);
  h.table->insert_or_assign("a", a);
  h.start_run();

  std::shared_ptr<test::ProbeState> seen;
  CHECK(h.sup->visit("a", [&](const Probe& p) { seen = p.state; }) == std::error_code{});
  CHECK(seen == a.state);

  int calls = 0;
  CHECK(h.sup->visit("nope", [&](const Probe&) { ++calls; }) == errc::process_not_found);
  h.table->insert_or_assign("b", b);
  std::error_code b_start;
  {
    test::Background starter([&] { b_start = h.start_code("b"); });
    REQUIRE(b.state->entered.wait());
    CHECK(h.sup->visit("b", [&](const Probe&) { ++calls; }) == errc::process_not_running);
    b.state->release.notify();
  }
  CHECK(b_start == std::error_code{});
  CHECK(calls == 0);

  SECTION("the callback may stop the process it visits; the runnable outlives the call") {
    std::error_code stopped;
    bool returned = false;
    CHECK(h.sup->visit("a", [&](const Probe& p) {
      h.table->erase("a");
      stopped = h.stop_code("a");
      returned = p.state->returned.count() == 1;  // still readable
    }) == std::error_code{});
    CHECK(stopped == std::error_code{});
    CHECK(returned);
    CHECK(h.get_code("a") == errc::process_not_found);
  }
  SECTION("what the callback throws reaches the caller") {
    CHECK_THROWS_AS(h.sup->visit("b", [](const Probe&) { throw std::out_of_range("visited"); }),
                    std::out_of_range);
    CHECK(h.get_code("b") == std::error_code{});
  }
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("a runnable still held by a lookup in flight is released by the next pass",
          "[supervisor]") {
  Harness h;
  auto a = Probe::with(Startup::ready);
  h.table->insert_or_assign("a", a);
  h.start_run();
  test::Event inside;
  test::Event release;
  std::error_code visited;
  test::Background reader([&] {
    visited = h.sup->visit("a", [&](const Probe&) {
      inside.notify();
      release.wait();
    });
  });
  REQUIRE(inside.wait());
  h.table->erase("a");
  CHECK(h.stop_code("a") == std::error_code{});  // A lookup in flight does not hold stop up.
  release.notify();
  REQUIRE(reader.join() == nullptr);
  CHECK(visited == std::error_code{});
  // The supervisor's copy outlived the stop (the lookup might have been using it); no write has
  // touched its shard since, so the pass's reclamation is what frees it.
  h.restart_pass();
  CHECK(eventually([&] { return a.state.use_count() == 1; }));
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("a process that erases its entry and returns is removed and not restarted",
          "[supervisor]") {
  Harness h;
  auto probe = Probe::with(Startup::ready);
  probe.state->use_early = true;
  auto table = h.table;
  probe.state->after_ready = [table] { table->erase("a"); };
  h.table->insert_or_assign("a", probe);
  h.start_run();

  probe.state->early.request_stop();  // The process decides to finish.
  REQUIRE(probe.state->returned.wait());
  REQUIRE(eventually([&] { return !has_key(*h.sup, "a"); }));

  h.restart_pass();
  CHECK(probe.state->entered.count() == 1);
  CHECK_FALSE(has_key(*h.sup, "a"));
  REQUIRE(h.finish() == nullptr);
  CHECK(h.reports.entries().empty());  // A clean exit is not an error.
}

TEST_CASE("a process that fails is removed, reported, and restarted by the next pass",
          "[supervisor]") {
  Harness h;
  auto failing = Probe::with(Startup::ready, Shutdown::throw_error);
  failing.state->use_early = true;
  h.table->insert_or_assign("a", failing);
  h.start_run();

  failing.state->early.request_stop();
  REQUIRE(h.reports.wait(1));
  auto entries = h.reports.entries();
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].source == ErrorSource::exit);
  CHECK(entries[0].has_key);
  CHECK(entries[0].key == "a");
  CHECK(entries[0].message == "shutdown failed");
  // The user's own exception, intact.
  CHECK_THROWS_AS(std::rethrow_exception(entries[0].error), std::runtime_error);
  CHECK_FALSE(has_key(*h.sup, "a"));  // Removed before it was reported.

  auto healthy = Probe::with(Startup::ready);
  h.table->insert_or_assign("a", healthy);
  h.restart_pass();
  REQUIRE(healthy.state->readied.wait());
  REQUIRE(eventually([&] { return h.get_code("a") == std::error_code{}; }));
  REQUIRE(h.finish() == nullptr);
}
