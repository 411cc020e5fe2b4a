#include "catch_shim.hpp"  // first: it picks the Catch2 v2 or v3 header
#include "support.hpp"

// Standard headers after the test support.
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <system_error>

// Cancel: a stop token and a deadline, either or both, as start, stop and run take them.

using namespace std::chrono_literals;
using supervisor::Cancel;

TEST_CASE("Cancel: construction and check()", "[clock]") {
  using clock = std::chrono::steady_clock;
  std::stop_source requested;
  requested.request_stop();
  std::stop_source live;

  SECTION("default: no limit") {
    Cancel cancel;
    CHECK_FALSE(cancel.has_deadline());
    CHECK(cancel.deadline() == clock::time_point::max());
    CHECK_FALSE(cancel.token().stop_possible());
    CHECK(cancel.check() == std::error_code{});
  }
  SECTION("from a token") {
    Cancel open = live.get_token();
    CHECK_FALSE(open.has_deadline());
    CHECK(open.check() == std::error_code{});
    live.request_stop();
    CHECK(open.check() == supervisor::errc::canceled);

    Cancel done = requested.get_token();
    CHECK(done.check() == supervisor::errc::canceled);
  }
  SECTION("from a duration, measured from now") {
    const auto before = clock::now();
    Cancel cancel = 1h;
    const auto after = clock::now();
    CHECK(cancel.has_deadline());
    CHECK(cancel.deadline() >= before + 1h);
    CHECK(cancel.deadline() <= after + 1h);
    CHECK(cancel.check() == std::error_code{});

    CHECK(Cancel(0s).check() == supervisor::errc::deadline_exceeded);
    CHECK(Cancel(-1s).check() == supervisor::errc::deadline_exceeded);
  }
  SECTION("a duration too long to represent means no deadline") {
    CHECK_FALSE(Cancel(std::chrono::nanoseconds::max()).has_deadline());
    CHECK_FALSE(Cancel(std::chrono::duration<double>(1e300)).has_deadline());
    CHECK(Cancel(std::chrono::duration<double>(1e300)).check() == std::error_code{});
  }
  SECTION("from a time point") {
    CHECK(Cancel(clock::now() - 1s).check() == supervisor::errc::deadline_exceeded);
    CHECK(Cancel(clock::time_point{}).check() == supervisor::errc::deadline_exceeded);
    Cancel future = clock::now() + 1h;
    CHECK(future.has_deadline());
    CHECK(future.check() == std::error_code{});
    CHECK_FALSE(Cancel(clock::time_point::max()).has_deadline());
  }
  SECTION("from both: the token wins") {
    CHECK(Cancel(requested.get_token(), clock::now() - 1s).check() == supervisor::errc::canceled);
    CHECK(Cancel(requested.get_token(), 1h).check() == supervisor::errc::canceled);
    CHECK(Cancel(live.get_token(), clock::now() - 1s).check() ==
          supervisor::errc::deadline_exceeded);
    CHECK(Cancel(live.get_token(), -1s).check() == supervisor::errc::deadline_exceeded);

    Cancel both(live.get_token(), 1h);
    CHECK(both.has_deadline());
    CHECK(both.token().stop_possible());
    CHECK(both.check() == std::error_code{});
    live.request_stop();
    CHECK(both.check() == supervisor::errc::canceled);
  }
}

// A timeout longer than what is left before time_point::max() means "no deadline". Compared in
// the common type of the two durations (nanoseconds), a long timeout in a coarser unit would
// overflow and land the deadline in the near future or the past. The unsigned case wraps in a
// well-defined way: 18'446'744'074 s (about 584 years) is 2^64 ns + 290'448'384 ns, i.e. 0.29 s.
TEST_CASE("Cancel: a timeout of centuries is not a deadline in the near future", "[clock]") {
  const std::chrono::duration<std::uint64_t> centuries{18'446'744'074ULL};
  Cancel cancel = centuries;
  CHECK(cancel.deadline() > std::chrono::steady_clock::now() + 24h);
  CHECK_FALSE(cancel.has_deadline());

  CHECK_FALSE(Cancel(std::chrono::hours::max()).has_deadline());
  CHECK_FALSE(Cancel(std::chrono::seconds::max()).has_deadline());
  CHECK_FALSE(Cancel(std::chrono::milliseconds::max()).has_deadline());
  CHECK(Cancel(std::chrono::hours::max()).check() == std::error_code{});
  std::stop_source live;
  const Cancel both(live.get_token(), std::chrono::hours::max());
  CHECK_FALSE(both.has_deadline());
  CHECK(both.check() == std::error_code{});
}
