// `detail::PassTracker`: the initial pass's count of the starts it began. It settles exactly once,
// when the iteration has ended and every start has finished, whichever comes last.

#include "supervisor/detail/pass_tracker.hpp"

#include <atomic>
#include <cstddef>
#include <stop_token>
#include <thread>
#include <vector>

#include "catch_shim.hpp"

using supervisor::detail::PassTracker;

TEST_CASE("PassTracker: settles when the iteration and every start are over, not before",
          "[pass_tracker]") {
  SECTION("no start at all: the end of the iteration settles it") {
    PassTracker tracker;
    CHECK_FALSE(tracker.settled().stop_requested());
    tracker.end_iteration();
    CHECK(tracker.settled().stop_requested());
  }
  SECTION("every start finishes while the pass still iterates") {
    PassTracker tracker;
    tracker.add();
    tracker.finish();  // back to none pending, but the pass goes on
    CHECK_FALSE(tracker.settled().stop_requested());
    tracker.add();
    tracker.end_iteration();
    CHECK_FALSE(tracker.settled().stop_requested());  // one start still pending
    tracker.finish();
    CHECK(tracker.settled().stop_requested());
  }
}

TEST_CASE("PassTracker: starts finishing on other threads settle it once, after the last",
          "[pass_tracker]") {
  constexpr std::size_t starts = 10'000;
  PassTracker tracker;
  std::atomic<int> settled_calls{0};
  const std::stop_callback count_settle(tracker.settled().get_token(),
                                        [&]() noexcept { ++settled_calls; });
  std::atomic<std::size_t> finished{0};
  for (std::size_t i = 0; i < starts; ++i) {
    tracker.add();
  }
  std::vector<std::thread> finishers;
  finishers.reserve(2);
  for (int t = 0; t < 2; ++t) {
    finishers.emplace_back([&] {
      for (std::size_t i = 0; i < starts / 2; ++i) {
        tracker.finish();
        ++finished;
      }
    });
  }
  tracker.end_iteration();
  for (std::thread& finisher : finishers) {
    finisher.join();
  }
  CHECK(finished.load() == starts);
  CHECK(tracker.settled().stop_requested());
  CHECK(settled_calls.load() == 1);
}
