#include <atomic>
#include <string>

#include "catch_shim.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

TEST_CASE("leaf(body): a fresh stop token per run, requested on a graceful stop", "[adapters]") {
  std::atomic<int> runs{0};
  auto runnable = supervisor::leaf([&](std::stop_token stop) {
    ++runs;
    test::Probe::wait_for(stop);
  });
  for (int i = 0; i < 2; ++i) {  // A second run of the same copy starts afresh.
    supervisor::Process process(runnable);
    process.start();
    CHECK(process.state() == supervisor::ProcessState::running);
    process.stop();  // Would hang if the stop token were not requested.
    CHECK(process.error() == nullptr);
  }
  CHECK(runs == 2);
}

TEST_CASE("leaf(body): force requests the body's stop token too", "[adapters]") {
  std::stop_source parent;
  supervisor::Process process(
      supervisor::leaf([](std::stop_token stop) { test::Probe::wait_for(stop); }),
      parent.get_token());
  process.start();
  parent.request_stop();
  REQUIRE(process.wait(test::patience));
  CHECK(process.state() == supervisor::ProcessState::stopped);
}

TEST_CASE("AnyRunnable: different kinds in one table", "[adapters]") {
  static_assert(supervisor::Runnable<supervisor::AnyRunnable>);
  using Sup = supervisor::Supervisor<std::string, supervisor::AnyRunnable>;
  auto table = std::make_shared<supervisor::MapTable<std::string, supervisor::AnyRunnable>>();
  auto probe = test::Probe::with(test::Startup::ready);
  std::atomic<bool> started{false}, stopped{false};
  table->insert_or_assign("probe", probe);
  table->insert_or_assign(
      "loop", supervisor::leaf([](std::stop_token stop) { test::Probe::wait_for(stop); }));
  table->insert_or_assign("component",
                          supervisor::start_stop([&] { started = true; }, [&] { stopped = true; }));
  Sup sup(table);
  std::error_code probe_code, loop_code, component_code;
  sup.run([&] {
    (void)sup.get("probe", probe_code);
    (void)sup.get("loop", loop_code);
    (void)sup.get("component", component_code);
  });
  CHECK(probe_code == std::error_code{});
  CHECK(loop_code == std::error_code{});
  CHECK(component_code == std::error_code{});
  CHECK(started);
  CHECK(stopped);
  CHECK(probe.state->returned.count() == 1);
}
