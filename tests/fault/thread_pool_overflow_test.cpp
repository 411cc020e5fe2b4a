// ThreadPool's overflow list, past its lock-free ring, is the one place where `schedule` may
// allocate. Each allocation a burst of overflowing schedules makes fails in turn: the failing
// `schedule` throws, schedules nothing and leaves no count behind (a stale count would keep the
// workers looking for work forever, and the destructor would never return), and every other
// handle runs once.

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <new>

#include "../catch_shim.hpp"
#include "../counted_coroutine.hpp"
#include "inject.hpp"
#include "supervisor/thread_pool.hpp"

namespace {

using test::Counted;  // counts itself done when resumed, then frees itself

Counted count_once(std::atomic<std::size_t>& done) {
  done.fetch_add(1);
  done.notify_all();
  co_return;
}

Counted hold_worker(std::atomic<bool>& held, std::atomic<bool>& released) {
  held.store(true);
  held.notify_all();
  released.wait(false);
  co_return;
}

constexpr std::size_t overflowing = 300;  // several of the overflow list's blocks

/// Holds the one worker, fills the ring, then schedules `overflowing` more with allocation fault
/// `n` armed (0: only counts). Returns how many schedules threw; checks that all the others ran.
std::size_t burst_with_fault(long n) {
  const fault::Quiet quiet;  // the test's own allocations (frames, Catch2) meet no fault
  std::atomic<std::size_t> done{0};
  std::atomic<bool> held{false};
  std::atomic<bool> released{false};
  std::size_t failed = 0;
  {
    supervisor::ThreadPool pool(1);
    pool.schedule(hold_worker(held, released).handle);
    held.wait(false);
    for (std::size_t i = 0; i < supervisor::ThreadPool::ring_capacity; ++i) {
      pool.schedule(count_once(done).handle);
    }
    fault::arm(fault::Kind::alloc, n);
    for (std::size_t i = 0; i < overflowing; ++i) {
      const Counted next = count_once(done);
      try {
        const fault::Loud loud;
        pool.schedule(next.handle);
      } catch (const std::bad_alloc&) {
        ++failed;
        next.handle.destroy();  // never scheduled: ours to free
      }
    }
    fault::disarm();
    released.store(true);
    released.notify_all();
    const std::size_t expected = supervisor::ThreadPool::ring_capacity + overflowing - failed;
    for (std::size_t seen = done.load(); seen < expected; seen = done.load()) {
      done.wait(seen);
    }
  }  // the destructor returns only if no count was left behind
  CHECK(done.load() == supervisor::ThreadPool::ring_capacity + overflowing - failed);
  return failed;
}

}  // namespace

TEST_CASE("ThreadPool: an overflowing schedule that cannot allocate schedules nothing",
          "[thread_pool_overflow]") {
  REQUIRE(burst_with_fault(0) == 0);
  const long opportunities = fault::count();
  // Clang's sanitizer builds compile the allocation kind out: no opportunity there.
  for (long n = 1; n <= opportunities; ++n) {
    INFO("allocation " << n << " of " << opportunities << " fails");
    CHECK(burst_with_fault(n) == 1);
    CHECK(fault::fired() == n);
  }
}
