// Options: an aggregate that users fill with designated initializers. Our test targets build
// with -Wextra -Werror, so this file stops compiling if a member without a default initializer
// makes -Wmissing-field-initializers warn in users' builds.

#include <chrono>
#include <string>

#include "catch_shim.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

TEST_CASE("Options take designated initializers and keep the other defaults", "[options]") {
  const supervisor::Options<std::string> options{.restart_interval = 5s, .reuse_threads = true};
  CHECK(options.restart_interval == 5s);
  CHECK(options.reuse_threads);
  CHECK(options.initial_wait == 1s);
  CHECK(options.handoff_spin == std::chrono::nanoseconds::zero());
  CHECK(static_cast<bool>(options.on_error));

  const supervisor::Options<int> quiet{.on_error = {}};
  CHECK_FALSE(static_cast<bool>(quiet.on_error));
}
