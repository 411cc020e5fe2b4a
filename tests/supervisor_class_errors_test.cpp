// Supervisor: how a start, a stop or `run` ends when it cannot succeed: deadlines and tokens that
// cut it short, and the runnable's (or the callback's) exceptions, which reach the caller or the
// error hook intact.

#include <chrono>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>

#include "catch_shim.hpp"
#include "supervisor_class_harness.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ErrorSource;
using test::Harness;
using test::has_key;
using test::Probe;
using test::Shutdown;
using test::Startup;

// ---- Deadlines and tokens --------------------------------------------------------------------

TEST_CASE("the stop deadline forces a runnable that ignores the graceful stop", "[supervisor]") {
  Harness h;
  auto probe = Probe::with(Startup::ready, Shutdown::ignore_stop);
  h.table->insert_or_assign("a", probe);
  h.start_run();

  SECTION("a duration") { CHECK(h.stop_code("a", 1ms) == errc::deadline_exceeded); }
  SECTION("a time point already passed") {
    CHECK(h.stop_code("a", std::chrono::steady_clock::now()) == errc::deadline_exceeded);
  }
  SECTION("a token") {
    std::stop_source source;
    source.request_stop();
    CHECK(h.stop_code("a", source.get_token()) == errc::canceled);
  }
  // Forced, and stop waited until run had returned.
  CHECK(probe.state->force_seen);
  CHECK(probe.state->returned.count() == 1);
  CHECK_FALSE(has_key(*h.sup, "a"));
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("the start deadline and token cut a hanging startup short", "[supervisor]") {
  Harness h;
  h.start_run();
  auto probe = Probe::with(Startup::hang);
  h.table->insert_or_assign("a", probe);

  SECTION("deadline") { CHECK(h.start_code("a", 1ms) == errc::deadline_exceeded); }
  SECTION("token, requested while the start waits") {
    std::stop_source source;
    std::error_code code;
    test::Background starter([&] { code = h.start_code("a", source.get_token()); });
    REQUIRE(probe.state->entered.wait());
    source.request_stop();
    REQUIRE(starter.join() == nullptr);
    CHECK(code == errc::canceled);
  }
  CHECK(probe.state->force_seen);
  CHECK(probe.state->returned.count() == 1);  // start waited until run had returned.
  CHECK_FALSE(has_key(*h.sup, "a"));          // The key is free again...
  h.table->insert_or_assign("a", Probe::with(Startup::ready));
  CHECK(h.start_code("a") == std::error_code{});  // ...for the next start.
  REQUIRE(h.finish() == nullptr);
  CHECK(h.reports.entries().empty());  // The caller got the error: nothing to report.
}

// ---- Exceptions from the runnable ------------------------------------------------------------

TEST_CASE("exceptions from a runnable reach the caller or the hook intact", "[supervisor]") {
  Harness h;
  h.start_run();

  SECTION("during init: start rethrows, the key is free") {
    h.table->insert_or_assign("a", Probe::with(Startup::throw_error));
    CHECK_THROWS_AS(h.sup->start("a"), std::runtime_error);
    CHECK_FALSE(has_key(*h.sup, "a"));
    h.table->insert_or_assign("a", Probe::with(Startup::exit_early));
    CHECK(h.start_code("a") == errc::exited_before_ready);
    CHECK_FALSE(has_key(*h.sup, "a"));
  }
  SECTION("during graceful shutdown: stop rethrows") {
    h.table->insert_or_assign("a", Probe::with(Startup::ready, Shutdown::throw_error));
    REQUIRE(h.start_code("a") == std::error_code{});
    try {
      h.sup->stop("a");
      FAIL("stop did not rethrow");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()) == "shutdown failed");
    }
  }
  SECTION("during a background start: reported with its key") {
    h.table->insert_or_assign("a", Probe::with(Startup::throw_error));
    h.restart_pass();
    REQUIRE(h.reports.wait(1));
    auto entries = h.reports.entries();
    CHECK(entries[0].source == ErrorSource::start);
    CHECK(entries[0].key == "a");
    CHECK(entries[0].message == "init failed");
  }
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("an exception during run's shutdown reaches the hook", "[supervisor]") {
  Harness h;
  h.table->insert_or_assign("a", Probe::with(Startup::ready, Shutdown::throw_error));
  h.start_run();
  REQUIRE(h.finish() == nullptr);
  auto entries = h.reports.entries();
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].source == ErrorSource::shutdown);
  CHECK(entries[0].key == "a");
  CHECK(entries[0].message == "shutdown failed");
}

TEST_CASE("the callback's exception is rethrown by run after shutdown", "[supervisor]") {
  Harness h;
  auto probe = Probe::with(Startup::ready);
  h.table->insert_or_assign("a", probe);
  CHECK_THROWS_AS(h.sup->run([] { throw std::logic_error("callback"); }), std::logic_error);
  CHECK(probe.state->returned.count() == 1);
  // And a returned error code becomes run's outcome.
  std::error_code ec;
  h.sup->run(
      {}, [] { return make_error_code(errc::canceled); }, ec);
  CHECK(ec == errc::canceled);
}
