// Defect 3 of the failure-path review: `run`'s shutdown must not fail half-way, so it must not
// allocate at all. Counted directly: every allocation on any thread from the moment the callback
// returns until `run` returns.

#include <memory>
#include <string>

#include "../catch_shim.hpp"
#include "../support.hpp"
#include "inject.hpp"

using test::Probe;
using test::Shutdown;
using test::Startup;

TEST_CASE("run's shutdown allocates nothing", "[shutdown_allocation]") {
  using Table = supervisor::MapTable<std::string, Probe>;
  auto table = std::make_shared<Table>();
  std::vector<Probe> probes;
  for (int i = 0; i < 20; ++i) {
    // Some stop at once, some only when forced: both paths of the shutdown.
    probes.push_back(Probe::with(Startup::ready, i % 4 == 0 ? Shutdown::ignore_stop
                                                             : Shutdown::clean));
    table->insert_or_assign("k" + std::to_string(i), probes.back());
  }
  supervisor::Options<std::string> options;
  options.clock = std::make_shared<supervisor::ManualClock>();
  options.on_error = {};
  supervisor::Supervisor<std::string, Probe> sup(table, options);
  std::stop_source force;  // Requested at the end: forces the ones that ignore the graceful stop.
  long allocations = -1;
  sup.run(force.get_token(), [&] {
    for (const auto& probe : probes) {
      REQUIRE(probe.state->readied.wait());
    }
    fault::arm(fault::Kind::alloc, 0);  // Count only, from here on.
    force.request_stop();
  });
  allocations = fault::count();
  fault::disarm();
  CHECK(allocations == 0);
  for (const auto& probe : probes) {
    CHECK(probe.state->live == 0);
  }
}
