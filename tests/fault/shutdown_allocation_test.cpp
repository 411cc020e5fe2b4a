// Defect 3 of the failure-path review: `run`'s shutdown must not fail half-way, so it must not
// allocate at all. Counted directly: every allocation on any thread from the moment the callback
// returns until `run` returns.

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

#include "../catch_shim.hpp"
#include "../support.hpp"
#include "inject.hpp"

namespace {

/// A runnable that allocates nothing itself, so that every allocation counted is the library's.
/// With `stubborn`, it ignores the graceful stop and returns only when forced.
struct Frugal {
  bool stubborn = false;
  std::shared_ptr<std::atomic<int>> live = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<test::Event> readied = std::make_shared<test::Event>();

  void run(const std::stop_token& force, supervisor::Ready& ready) const {
    ++*live;
    readied->notify();
    ready();
    if (stubborn) {
      std::mutex mutex;
      std::condition_variable forced;
      std::stop_callback wake(force, [&]() noexcept {
        std::lock_guard lock(mutex);
        forced.notify_all();
      });
      std::unique_lock lock(mutex);
      forced.wait(lock, [&] { return force.stop_requested(); });
    }
    --*live;
  }
};

}  // namespace

TEST_CASE("run's shutdown allocates nothing", "[shutdown_allocation]") {
  auto table = std::make_shared<supervisor::MapTable<std::string, Frugal>>();
  std::vector<Frugal> runnables;
  for (int i = 0; i < 20; ++i) {
    // Some stop at once, some only when forced: both paths of the shutdown.
    runnables.push_back(Frugal{i % 4 == 0});
    table->insert_or_assign("k" + std::to_string(i), runnables.back());
  }
  supervisor::Options<std::string> options;
  options.clock = std::make_shared<supervisor::ManualClock>();
  options.on_error = {};
  supervisor::Supervisor<std::string, Frugal> sup(table, options);
  std::stop_source force;  // Requested at the end: forces the ones that ignore the graceful stop.
  sup.run(force.get_token(), [&] {
    for (const auto& runnable : runnables) {
      REQUIRE(runnable.readied->wait());
    }
    fault::arm(fault::Kind::alloc, 0);  // Count only, from here on.
    force.request_stop();
  });
  const long allocations = fault::count();
  fault::disarm();
  CHECK(allocations == 0);
  for (const auto& runnable : runnables) {
    CHECK(*runnable.live == 0);
  }
}
