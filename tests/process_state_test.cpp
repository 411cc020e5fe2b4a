// process_state.hpp: the states of a Process, and their names.

#include "catch_shim.hpp"  // first: it picks the Catch2 v2 or v3 header
#include "support.hpp"

using supervisor::ProcessState;

TEST_CASE("Process: to_string names every state", "[process]") {
  CHECK(supervisor::to_string(ProcessState::initial) == "initial");
  CHECK(supervisor::to_string(ProcessState::starting) == "starting");
  CHECK(supervisor::to_string(ProcessState::running) == "running");
  CHECK(supervisor::to_string(ProcessState::stopped) == "stopped");
}
