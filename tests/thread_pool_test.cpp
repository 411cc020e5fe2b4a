// ThreadPool's shared queue: the lock-free ring (`detail::MpmcRing`) and the overflow list past
// it. Every wait here is on the values or coroutines themselves, never on time.

#include "supervisor/thread_pool.hpp"

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "catch_shim.hpp"
#include "supervisor/detail/mpmc_ring.hpp"

namespace {

using supervisor::detail::MpmcRing;

void* as_value(std::uintptr_t n) {
  return reinterpret_cast<void*>(n);
}  // NOLINT(performance-no-int-to-ptr)

/// A coroutine that counts itself done when resumed, and frees itself.
struct Counted {
  struct promise_type {
    Counted get_return_object() noexcept {
      return Counted{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept {}
  };
  std::coroutine_handle<promise_type> handle;
};

Counted record(std::vector<std::size_t>& order, std::size_t index, std::atomic<std::size_t>& done) {
  order.push_back(index);
  done.fetch_add(1);
  done.notify_all();
  co_return;
}

/// Holds the workers that resume `hold_worker` until `release`.
struct Hold {
  std::atomic<int> held{0};
  std::atomic<bool> released{false};
  void wait_held(int n) {
    for (int seen = held.load(); seen < n; seen = held.load()) {
      held.wait(seen);
    }
  }
  void release() {
    released.store(true);
    released.notify_all();
  }
};

Counted hold_worker(Hold& hold) {
  hold.held.fetch_add(1);
  hold.held.notify_all();
  hold.released.wait(false);
  co_return;
}

}  // namespace

TEST_CASE("mpmc ring: first in, first out, refuses when full, and goes on lap after lap",
          "[thread_pool]") {
  MpmcRing ring(5);
  REQUIRE(ring.capacity() == 8);  // rounded up to a power of two
  CHECK(ring.try_pop() == nullptr);
  std::uintptr_t next_in = 1;
  std::uintptr_t next_out = 1;
  for (int lap = 0; lap < 5; ++lap) {
    for (std::size_t i = 0; i < ring.capacity(); ++i) {
      REQUIRE(ring.try_push(as_value(next_in++)));
    }
    CHECK_FALSE(ring.try_push(as_value(999)));  // full: nothing changed
    for (std::size_t i = 0; i < 3; ++i) {
      REQUIRE(ring.try_pop() == as_value(next_out++));
    }
    for (std::size_t i = 0; i < 3; ++i) {  // the freed cells take the next lap's values
      REQUIRE(ring.try_push(as_value(next_in++)));
    }
    CHECK_FALSE(ring.try_push(as_value(999)));
    while (next_out < next_in) {
      REQUIRE(ring.try_pop() == as_value(next_out++));
    }
    CHECK(ring.try_pop() == nullptr);
  }
}

TEST_CASE("mpmc ring: two pushers and two poppers hand over every value exactly once",
          "[thread_pool]") {
  constexpr std::size_t per_pusher = 20'000;
  MpmcRing ring(64);  // small: both ends wrap around and meet "full" and "empty" often
  std::vector<std::atomic<int>> seen(2 * per_pusher + 1);
  std::atomic<std::size_t> popped{0};
  std::atomic<bool> duplicate{false};
  auto push_all = [&](std::uintptr_t first) {
    for (std::uintptr_t v = first; v < first + per_pusher; ++v) {
      while (!ring.try_push(as_value(v))) {
        std::this_thread::yield();
      }
    }
  };
  auto pop_until_all = [&] {
    while (popped.load() < 2 * per_pusher) {
      if (void* value = ring.try_pop()) {
        if (seen[reinterpret_cast<std::uintptr_t>(value)].fetch_add(1) != 0) {
          duplicate.store(true);
        }
        popped.fetch_add(1);
      } else {
        std::this_thread::yield();
      }
    }
  };
  {
    std::jthread a(push_all, 1);
    std::jthread b(push_all, 1 + per_pusher);
    std::jthread c(pop_until_all);
    std::jthread d(pop_until_all);
  }
  CHECK_FALSE(duplicate.load());
  CHECK(popped.load() == 2 * per_pusher);
  std::size_t missing = 0;
  for (std::size_t v = 1; v <= 2 * per_pusher; ++v) {
    missing += seen[v].load() == 1 ? 0 : 1;
  }
  CHECK(missing == 0);
  CHECK(ring.try_pop() == nullptr);
}

TEST_CASE("thread pool: a burst past the ring's capacity runs every coroutine once, in order",
          "[thread_pool]") {
  // The one worker is held, so the ring fills and the rest go to the overflow list. Released, it
  // takes the ring's first handle, which holds it again with one cell of the ring free: a handle
  // scheduled now still goes behind the overflow list. Then it drains the ring, then the list:
  // the order of scheduling.
  const std::size_t capacity = supervisor::ThreadPool::ring_capacity;
  const std::size_t burst = 3 * capacity + 7;
  std::vector<std::size_t> order;  // written by the one worker only
  std::atomic<std::size_t> done{0};
  Hold first;
  Hold second;
  {
    supervisor::ThreadPool pool(1);
    pool.schedule(hold_worker(first).handle);
    first.wait_held(1);
    pool.schedule(hold_worker(second).handle);  // the ring's first cell
    for (std::size_t i = 0; i < burst; ++i) {
      pool.schedule(record(order, i, done).handle);
    }
    first.release();
    second.wait_held(1);  // one cell of the ring is free again
    pool.schedule(record(order, burst, done).handle);
    second.release();
    for (std::size_t seen = done.load(); seen < burst + 1; seen = done.load()) {
      done.wait(seen);
    }
  }
  REQUIRE(order.size() == burst + 1);
  std::size_t out_of_order = 0;
  for (std::size_t i = 0; i <= burst; ++i) {
    out_of_order += order[i] == i ? 0 : 1;
  }
  CHECK(out_of_order == 0);
}

TEST_CASE("thread pool: what is still queued at destruction runs before the workers are joined",
          "[thread_pool]") {
  const std::size_t burst = supervisor::ThreadPool::ring_capacity + 100;
  std::vector<std::size_t> order;
  std::atomic<std::size_t> done{0};
  Hold hold;
  {
    supervisor::ThreadPool pool(1);
    pool.schedule(hold_worker(hold).handle);
    hold.wait_held(1);
    for (std::size_t i = 0; i < burst; ++i) {
      pool.schedule(record(order, i, done).handle);
    }
    hold.release();
  }  // no wait: the destructor drains the ring and the overflow list
  CHECK(done.load() == burst);
  CHECK(order.size() == burst);
}
