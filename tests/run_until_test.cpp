// Supervisor::run_until: run until a stop token is requested, shut down gracefully, and force
// what still runs once the grace period is over.

#include <atomic>
#include <memory>
#include <stop_token>
#include <string>

#include "catch_shim.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::Probe;
using test::Shutdown;
using test::Startup;

namespace {

using Table = supervisor::MapTable<std::string, Probe>;
using Sup = supervisor::Supervisor<std::string, Probe>;

supervisor::Options<std::string> manual_options() {
  supervisor::Options<std::string> options;
  options.clock = std::make_shared<supervisor::ManualClock>();
  return options;
}

}  // namespace

TEST_CASE("run_until: a stop request shuts down gracefully within the grace period",
          "[supervisor][run_until]") {
  auto table = std::make_shared<Table>();
  auto probe = Probe::with(Startup::ready);
  table->insert_or_assign("a", probe);
  Sup sup(table, manual_options());
  std::stop_source stop;
  test::Background runner([&] { sup.run_until(stop.get_token(), 1h); });
  REQUIRE(probe.state->readied.wait());
  stop.request_stop();
  REQUIRE(runner.wait());
  CHECK(runner.join() == nullptr);
  CHECK(probe.state->returned.count() == 1);
  CHECK_FALSE(probe.state->force_seen);
}

TEST_CASE("run_until: what ignores the graceful stop is forced after the grace period",
          "[supervisor][run_until]") {
  auto table = std::make_shared<Table>();
  auto probe = Probe::with(Startup::ready, Shutdown::ignore_stop);
  table->insert_or_assign("a", probe);
  Sup sup(table, manual_options());
  std::stop_source stop;
  stop.request_stop();  // Already requested: run_until restores, then shuts down at once.
  sup.run_until(stop.get_token(), 0s);
  CHECK(probe.state->returned.count() == 1);
  CHECK(probe.state->force_seen);
}

TEST_CASE("run_until: the callback's token follows the stop token, and its return shuts down",
          "[supervisor][run_until]") {
  auto table = std::make_shared<Table>();
  auto probe = Probe::with(Startup::ready);
  table->insert_or_assign("a", probe);
  Sup sup(table, manual_options());
  std::stop_source stop;
  bool saw_stop = false;
  std::string state_inside;
  sup.run_until(stop.get_token(), 1h, [&](const std::stop_token& stopping) {
    state_inside = sup.get("a").state == probe.state ? "running" : "?";
    CHECK_FALSE(stopping.stop_requested());
    stop.request_stop();
    saw_stop = stopping.stop_requested();
  });
  CHECK(state_inside == "running");
  CHECK(saw_stop);
  CHECK(probe.state->returned.count() == 1);
  CHECK_FALSE(probe.state->force_seen);

  // A callback that returns without a stop request shuts down all the same.
  auto again = Probe::with(Startup::ready);
  table->insert_or_assign("a", again);
  sup.run_until(std::stop_token{}, 1h, [] {});
  CHECK(again.state->returned.count() == 1);
}
