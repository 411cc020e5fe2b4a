// Supervisor::run_until: run until a stop token is requested, shut down gracefully, and force
// what still runs once the grace period is over.

#include <memory>
#include <stop_token>
#include <string>
#include <utility>

#include "catch_shim.hpp"
#include "supervisor_class_harness.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::Probe;
using test::Shutdown;
using test::Startup;

namespace {

using Table = test::ProbeTable;

std::shared_ptr<Table> table_of(const Probe& probe) {
  auto table = std::make_shared<Table>();
  table->insert_or_assign("a", probe);
  return table;
}

/// A supervisor on a manual clock whose table holds one process, "a", and the stop token that
/// ends its `run_until`.
struct OneProcess {
  explicit OneProcess(Probe p) : probe(std::move(p)) {}

  Probe probe;
  std::shared_ptr<Table> table = table_of(probe);
  test::ProbeSupervisor sup{table, manual_options()};
  std::stop_source stop;

 private:
  static supervisor::Options<std::string> manual_options() {
    supervisor::Options<std::string> options;
    options.clock = std::make_shared<supervisor::ManualClock>();
    return options;
  }
};

}  // namespace

TEST_CASE("run_until: a stop request shuts down gracefully within the grace period",
          "[supervisor][run_until]") {
  OneProcess one(Probe::with(Startup::ready));
  test::Background runner([&] { one.sup.run_until(one.stop.get_token(), 1h); });
  REQUIRE(one.probe.state->readied.wait());
  one.stop.request_stop();
  REQUIRE(runner.wait());
  CHECK(runner.join() == nullptr);
  CHECK(one.probe.state->returned.count() == 1);
  CHECK_FALSE(one.probe.state->force_seen);
}

TEST_CASE("run_until: what ignores the graceful stop is forced after the grace period",
          "[supervisor][run_until]") {
  OneProcess one(Probe::with(Startup::ready, Shutdown::ignore_stop));
  one.stop.request_stop();  // Already requested: run_until restores, then shuts down at once.
  one.sup.run_until(one.stop.get_token(), 0s);
  CHECK(one.probe.state->returned.count() == 1);
  CHECK(one.probe.state->force_seen);
}

TEST_CASE("run_until: the callback's token follows the stop token, and its return shuts down",
          "[supervisor][run_until]") {
  OneProcess one(Probe::with(Startup::ready));
  bool saw_stop = false;
  std::string state_inside;
  one.sup.run_until(one.stop.get_token(), 1h, [&](const std::stop_token& stopping) {
    state_inside = one.sup.get("a").state == one.probe.state ? "running" : "?";
    CHECK_FALSE(stopping.stop_requested());
    one.stop.request_stop();
    saw_stop = stopping.stop_requested();
  });
  CHECK(state_inside == "running");
  CHECK(saw_stop);
  CHECK(one.probe.state->returned.count() == 1);
  CHECK_FALSE(one.probe.state->force_seen);

  // A callback that returns without a stop request shuts down all the same.
  auto again = Probe::with(Startup::ready);
  one.table->insert_or_assign("a", again);
  one.sup.run_until(std::stop_token{}, 1h, [] {});
  CHECK(again.state->returned.count() == 1);
}
