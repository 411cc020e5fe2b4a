// Operations: times at the clock's epoch. A ManualClock starts at time_point{}, so a process
// may start, become ready or be stopped at tick 0: that is a time, not "not yet".

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include "catch_shim.hpp"
#include "supervisor_class_harness.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::EventKind;
using supervisor::KeyState;
using test::Harness;
using test::Probe;
using test::Startup;

TEST_CASE("a process that starts at the clock's epoch has its times", "[operations][events]") {
  std::mutex mutex;
  std::vector<std::chrono::steady_clock::duration> ready_elapsed;
  Harness h;
  REQUIRE(h.clock->now() == std::chrono::steady_clock::time_point{});
  auto options = h.options();
  options.on_event = [&](const supervisor::Event<std::string>& e) {
    if (e.kind == EventKind::ready) {
      std::lock_guard lock(mutex);
      ready_elapsed.push_back(e.elapsed);
    }
  };
  h.sup = std::make_unique<test::ProbeSupervisor>(h.table, options);
  h.start_run();
  auto probe = Probe::with(Startup::hang_then_ready);
  h.table->insert_or_assign("a", probe);

  std::error_code started;
  test::Background starter([&] { started = h.start_code("a"); });  // Launched at tick 0.
  REQUIRE(probe.state->entered.wait());
  h.clock->advance(3s);
  const auto snapshot = h.sup->snapshot();
  probe.state->release.notify();
  REQUIRE(starter.join() == nullptr);
  REQUIRE(started == std::error_code{});
  REQUIRE(h.finish() == nullptr);

  REQUIRE(snapshot.keys.size() == 1);
  CHECK(snapshot.keys[0].state == KeyState::starting);
  CHECK(snapshot.keys[0].since == std::chrono::steady_clock::time_point{});  // Not taken_at.
  std::lock_guard lock(mutex);
  CHECK(ready_elapsed == std::vector<std::chrono::steady_clock::duration>{3s});
}
