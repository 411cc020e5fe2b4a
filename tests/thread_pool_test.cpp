// ThreadPool's shared queue: the lock-free ring (`detail::MpmcRing`) and the overflow list past
// it. Every wait here is on the values or coroutines themselves, never on time.

#include "supervisor/thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "catch_shim.hpp"
#include "counted_coroutine.hpp"
#include "kernel_threads.hpp"
#include "supervisor/detail/mpmc_ring.hpp"
#include "support.hpp"

namespace {

using supervisor::detail::MpmcRing;

void* as_value(std::uintptr_t n) {
  return reinterpret_cast<void*>(n);  // NOLINT(performance-no-int-to-ptr): a token, never read
}

using test::Counted;  // counts itself done when resumed, then frees itself

Counted record(std::vector<std::size_t>& order, std::size_t index, std::atomic<std::size_t>& done) {
  order.push_back(index);
  done.fetch_add(1);
  done.notify_all();
  co_return;
}

/// Counts itself done, then (from the worker) schedules `more` links after it.
Counted chain(supervisor::ThreadPool& pool, int more, std::atomic<std::size_t>& done) {
  if (more > 0) {
    pool.schedule(chain(pool, more - 1, done).handle);
  }
  done.fetch_add(1);
  done.notify_all();
  co_return;
}

void wait_for(std::atomic<std::size_t>& done, std::size_t target) {
  for (std::size_t seen = done.load(); seen < target; seen = done.load()) {
    done.wait(seen);
  }
}

void mark(std::atomic<bool>& flag) {
  flag.store(true);
  flag.notify_all();
}

Counted run_and_mark(std::atomic<bool>& ran) {
  mark(ran);
  co_return;
}

/// Schedules a coroutine from its worker (into that worker's slot), counts it in `filled` if
/// given, then blocks the worker until the coroutine has run: only another worker, stealing from
/// the slot, can run it.
Counted schedule_then_block(supervisor::ThreadPool& pool, std::atomic<bool>& ran,
                            std::atomic<bool>& finished, std::atomic<int>* filled = nullptr) {
  pool.schedule(run_and_mark(ran).handle);
  if (filled != nullptr) {  // counts the full slot
    filled->fetch_add(1);
    filled->notify_all();
  }
  ran.wait(false);
  mark(finished);
  co_return;
}

/// Waits for `go`, then schedules `run_and_mark(ran)` (into this worker's slot) and a coroutine
/// that blocks until `ran` (to the shared queue: the slot is full), then blocks until `ran`.
Counted fill_slot_then_queue(supervisor::ThreadPool& pool, std::atomic<bool>& go,
                             std::atomic<bool>& ran) {
  go.wait(false);
  pool.schedule(run_and_mark(ran).handle);
  pool.schedule([](std::atomic<bool>& flag) -> Counted {
    flag.wait(false);
    co_return;
  }(ran)
                                                   .handle);
  ran.wait(false);
  co_return;
}

/// Waits (bounded) until `finished`; if it never comes, sets `ran` so that the blocked workers go
/// on and the pool can be destroyed: the test then fails instead of hanging.
bool finishes(std::atomic<bool>& finished, std::atomic<bool>& ran) {
  const bool in_time = test::eventually([&] { return finished.load(); });
  if (!in_time) {
    mark(ran);
  }
  return in_time;
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

/// Counts itself in `started`, waits until `all` have, then counts itself in `finished`: each
/// keeps a worker until all have one.
Counted meet_all(std::atomic<std::size_t>& started, std::size_t all,
                 std::atomic<std::size_t>& finished) {
  started.fetch_add(1);
  started.notify_all();
  wait_for(started, all);
  finished.fetch_add(1);
  finished.notify_all();
  co_return;
}

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
        const auto index = reinterpret_cast<std::uintptr_t>(value);
        if (index == 0 || index >= seen.size() || seen[index].fetch_add(1) != 0) {
          duplicate.store(true);  // a value never pushed, or one taken twice
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
    wait_for(done, burst + 1);
  }
  REQUIRE(order.size() == burst + 1);
  std::size_t out_of_order = 0;
  for (std::size_t i = 0; i <= burst; ++i) {
    out_of_order += order[i] == i ? 0 : 1;
  }
  CHECK(out_of_order == 0);
}

TEST_CASE("thread pool: what is still queued at destruction runs, and what that schedules",
          "[thread_pool]") {
  // The held worker lets the ring fill and the overflow list grow; the destructor begins while
  // all of it waits, and each coroutine schedules one more from the worker as it runs.
  const std::size_t burst = supervisor::ThreadPool::ring_capacity + 100;
  std::atomic<std::size_t> done{0};
  Hold hold;
  {
    supervisor::ThreadPool pool(2);
    pool.schedule(hold_worker(hold).handle);
    pool.schedule(hold_worker(hold).handle);
    hold.wait_held(2);
    for (std::size_t i = 0; i < burst; ++i) {
      pool.schedule(chain(pool, 1, done).handle);
    }
    hold.release();
  }  // no wait: the destructor drains the ring, the list, and the links scheduled meanwhile
  CHECK(done.load() == 2 * burst);
}

TEST_CASE("thread pool: outside threads and workers scheduling at once lose nothing",
          "[thread_pool]") {
  // Three outside threads schedule chains while the workers run, sleep and wake: a lost wake-up
  // or a lost handle leaves `done` short, and the wait below does not return.
  constexpr std::size_t per_thread = 5'000;
  constexpr int links = 3;  // each chain: itself and three more, scheduled from the workers
  std::atomic<std::size_t> done{0};
  supervisor::ThreadPool pool(2);
  {
    auto schedule_many = [&] {
      for (std::size_t i = 0; i < per_thread; ++i) {
        pool.schedule(chain(pool, links, done).handle);
      }
    };
    std::jthread a(schedule_many);
    std::jthread b(schedule_many);
    std::jthread c(schedule_many);
  }
  wait_for(done, 3 * per_thread * (links + 1));
  CHECK(done.load() == 3 * per_thread * (links + 1));
  pool.schedule(std::coroutine_handle<>{});  // a null handle: ignored, nothing hangs
}

TEST_CASE("thread pool: a handle in a blocked worker's slot is taken by the watcher",
          "[thread_pool]") {
  // The slot's owner is blocked until its handle has run. The other worker never spins: it
  // sleeps, is woken to watch the slots, and takes the handle once the owner has stayed inside
  // one coroutine for a whole watch period (the default, a millisecond). Both workers are
  // asleep first, so the one that is not woken by the schedule below is woken by nothing but
  // the slot's call for a watcher.
  std::atomic<bool> ran{false};
  std::atomic<bool> finished{false};
  supervisor::ThreadPool pool(2, std::chrono::nanoseconds(0));
  REQUIRE(test::eventually([] { return test::other_threads_asleep_in_kernel(); }));
  pool.schedule(schedule_then_block(pool, ran, finished).handle);
  CHECK(finishes(finished, ran));
  CHECK(ran.load());
}

TEST_CASE("thread pool: handles in blocked workers' slots are stolen by a worker looking for work",
          "[thread_pool]") {
  // Two workers each fill their own slot and block until its handle has run; the third is held
  // until both slots are full, then looks for work. It spins for as long as the test lasts and
  // the watcher's period is an hour: only its steal of aged slots can run the handles, and it
  // must time each slot on its own. (The spin ends when the pool stops, so the destructor does
  // not wait for it.)
  std::atomic<bool> ran[2] = {false, false};
  std::atomic<bool> finished[2] = {false, false};
  Hold hold;
  supervisor::ThreadPool pool(3, std::chrono::hours(1), std::chrono::hours(1));
  pool.schedule(hold_worker(hold).handle);
  for (int i = 0; i < 2; ++i) {
    pool.schedule(schedule_then_block(pool, ran[i], finished[i], &hold.held).handle);
  }
  hold.wait_held(3);  // the holder, and both slots full
  hold.release();
  for (int i = 0; i < 2; ++i) {
    CHECK(finishes(finished[i], ran[i]));
  }
}

TEST_CASE("thread pool: a spinner that turns to queued work wakes a watcher for a full slot",
          "[thread_pool]") {
  // Worker A fills its slot while worker B spins (so nobody is woken), then queues a coroutine
  // that blocks B until the slot's handle has run, and blocks itself. Worker C sleeps: only
  // B, as it stops spinning to take the queued work, can wake it to watch A's slot.
  std::atomic<bool> go{false};
  std::atomic<bool> warm{false};
  std::atomic<bool> ran{false};
  supervisor::ThreadPool pool(3, std::chrono::seconds(2));
  REQUIRE(test::eventually([] { return test::other_threads_asleep_in_kernel(); }));
  pool.schedule(fill_slot_then_queue(pool, go, ran).handle);  // wakes A; it waits for `go`
  pool.schedule(run_and_mark(warm).handle);                   // wakes B; it then spins 2 s
  warm.wait(false);
  mark(go);
  CHECK(finishes(ran, ran));
}

TEST_CASE("thread pool: at most half of the idle workers spin and a spinner wakes a sleeper",
          "[thread_pool]") {
  // Idle workers that may spin for an hour: without the limit all of them would spin for as
  // long as the test lasts. With it, half sleep (one of two, two of four). Then work that needs
  // every worker at once (each coroutine blocks until all have started) must still run: the
  // spinner that takes the first wakes a sleeper while more is queued, and so on.
  if (test::other_threads_asleep_count() < 0) {
    return;  // no kernel to ask (not Linux): nothing to check
  }
  const unsigned threads = GENERATE(2U, 4U);
  CAPTURE(threads);
  // A first thread makes the runtime start what it starts lazily (ThreadSanitizer's background
  // thread, asleep most of the time): counted in the baseline, once asleep, not as a sleeper of
  // the pool, which would hide a pool whose workers all spin.
  std::thread([] {}).join();
  REQUIRE(test::eventually([] { return test::other_threads_asleep_in_kernel(); }));
  const int asleep_before = test::other_threads_asleep_count();  // threads of other tests
  supervisor::ThreadPool pool(threads, std::chrono::hours(1), std::chrono::hours(1));
  const int sleepers = static_cast<int>(threads - std::max(1U, threads / 2));
  REQUIRE(test::eventually(
      [&] { return test::other_threads_asleep_count() == asleep_before + sleepers; }));
  std::atomic<std::size_t> started{0};
  std::atomic<std::size_t> done{0};
  for (unsigned i = 0; i < threads; ++i) {
    pool.schedule(meet_all(started, threads, done).handle);
  }
  const bool all_ran = test::eventually([&] { return done.load() == threads; });
  if (!all_ran) {
    started.store(threads);  // let the blocked ones go, so that the pool can be destroyed
    started.notify_all();
  }
  CHECK(all_ran);
}
