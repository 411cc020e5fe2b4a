// Options: an aggregate that users fill with designated initializers. Our test targets build
// with -Wextra -Werror, so this file stops compiling if a member without a default initializer
// makes -Wmissing-field-initializers warn in users' builds.

#include <chrono>
#include <string>

#include "catch_shim.hpp"
#include "coroutine_rig.hpp"
#include "supervisor_class_harness.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

TEST_CASE("Options take designated initializers and keep the other defaults", "[options]") {
  const supervisor::Options<std::string> options{.restart_interval = 5s, .reuse_threads = true};
  CHECK(options.restart_interval == 5s);
  CHECK(options.reuse_threads);
  CHECK(options.initial_wait == 1s);
  CHECK_FALSE(options.handoff_spin.has_value());  // the default of the kind of runnable
  CHECK(static_cast<bool>(options.on_error));

  const supervisor::Options<int> quiet{.on_error = {}};
  CHECK_FALSE(static_cast<bool>(quiet.on_error));
}

TEST_CASE("An empty handoff_spin takes the default of the kind of runnable", "[options]") {
  // Coroutine processes run on threads already running, so an outside caller spins by default;
  // a thread runnable's other side may be a thread still being created, so it does not.
  const auto sessions = std::make_shared<coroutine_test::Table>();
  CHECK(coroutine_test::Sup(sessions).handoff_spin() == 20us);
  CHECK(coroutine_test::Sup(sessions, {.handoff_spin = 0ns}).handoff_spin() == 0ns);
  const auto probes = std::make_shared<test::ProbeTable>();
  CHECK(test::ProbeSupervisor(probes).handoff_spin() == 0ns);
  CHECK(test::ProbeSupervisor(probes, {.handoff_spin = 5us}).handoff_spin() == 5us);
}
