// `detail::WordLock`, the coroutine records' 4-byte lock. Every wait here is on the lock's own
// word or on a thread's join, never on time.

#include "supervisor/detail/word_lock.hpp"

#include <atomic>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "catch_shim.hpp"
#include "kernel_threads.hpp"

using supervisor::detail::WordLock;

using test::asleep_in_kernel;
using test::this_thread_id;

TEST_CASE("WordLock: one holder at a time, and try_lock fails while held", "[word_lock]") {
  WordLock lock;
  REQUIRE(lock.try_lock());
  CHECK_FALSE(lock.try_lock());
  lock.unlock();
  CHECK(lock.try_lock());
  lock.unlock();

  // Threads that add to a plain counter under the lock lose no addition (and ThreadSanitizer
  // sees the lock's acquire and release order them).
  constexpr std::size_t threads = 4;
  constexpr std::size_t rounds = 20'000;
  std::size_t counter = 0;
  std::vector<std::thread> adders;
  for (std::size_t t = 0; t < threads; ++t) {
    adders.emplace_back([&] {
      for (std::size_t i = 0; i < rounds; ++i) {
        const std::lock_guard guard(lock);
        counter = counter + 1;
      }
    });
  }
  for (std::thread& adder : adders) {
    adder.join();
  }
  CHECK(counter == threads * rounds);
}

TEST_CASE("WordLock: a thread asleep on the lock is woken by the unlock", "[word_lock]") {
  WordLock lock;
  lock.lock();
  std::atomic<bool> entered{false};
  std::atomic<long> sleeper_id{0};
  std::thread sleeper([&] {
    sleeper_id = this_thread_id();
    const std::lock_guard guard(lock);
    entered = true;
  });
  // Past its spin, the sleeper marks the word contended, then sleeps on it in the kernel (where
  // only the unlock's wake-up gets it out: a sleeper still spinning would see the word change).
  while (sleeper_id.load() == 0 || !lock.has_sleeper() || !asleep_in_kernel(sleeper_id.load())) {
    std::this_thread::yield();
  }
  CHECK_FALSE(entered.load());
  lock.unlock();  // must wake it: without the wake-up this test hangs
  sleeper.join();
  CHECK(entered.load());
  CHECK_FALSE(lock.has_sleeper());
  CHECK(lock.try_lock());
  lock.unlock();
}
