#pragma once

/// \file
/// `WordLock`: a mutex in 4 bytes that spins before it sleeps, for records that are many and
/// whose lock is held for a few instructions (a coroutine process's state machine), and for
/// other short holds. `std::mutex` is 40 bytes and sleeps at once.

#include <atomic>
#include <cstdint>

#include "supervisor/detail/spin.hpp"

namespace supervisor::detail {

/// A lock word: 0 free, 1 held, 2 held with a thread asleep on it (a sleeper sets 2, so the
/// holder knows to wake one at unlock). Spins briefly before it sleeps on the word
/// (`std::atomic::wait`): for locks held mostly for a few instructions (a record's state
/// machine, a map shard's links, the pool's overflow list), where a waiter that slept at once
/// would cost a futex call on each side. A longer hold costs a waiter only that spin.
///
/// As with `std::mutex`, the thread it lets in may free the block holding the word while the
/// unlocking thread is still in `notify_one`: `unlock` reads nothing from the word after
/// releasing it, and `notify_one` (libstdc++ and libc++ on Linux) only hands its address to the
/// kernel, which wakes nobody or, if the address is reused, someone who re-checks. Formally the
/// word's lifetime has ended by then; glibc's own mutex unlock relies on the same.
///
/// Meets `Lockable` (usable with `std::lock_guard` and `std::unique_lock`), not
/// `std::condition_variable`: waits on it use `ParkedSignal`.
class WordLock {
 public:
  WordLock() = default;
  WordLock(const WordLock&) = delete;
  WordLock& operator=(const WordLock&) = delete;
  ~WordLock() = default;

  void lock() noexcept {
    if (try_lock()) {
      return;
    }
    for (int i = 0; i < spins_before_sleep; ++i) {
      cpu_relax();
      if (word_.load(std::memory_order_relaxed) == free && try_lock()) {
        return;
      }
    }
    // Mark it contended; whoever releases it then wakes one sleeper, who takes it as contended
    // again (it cannot know whether others still sleep).
    while (word_.exchange(contended, std::memory_order_acquire) != free) {
      word_.wait(contended, std::memory_order_relaxed);
    }
  }

  [[nodiscard]] bool try_lock() noexcept {
    std::uint32_t expected = free;
    return word_.compare_exchange_strong(expected, held, std::memory_order_acquire,
                                         std::memory_order_relaxed);
  }

  void unlock() noexcept {
    if (word_.exchange(free, std::memory_order_release) == contended) {
      word_.notify_one();
    }
  }

  /// Whether a thread sleeps (or is about to) waiting for it. For tests.
  [[nodiscard]] bool has_sleeper() const noexcept {
    return word_.load(std::memory_order_relaxed) == contended;
  }

 private:
  static constexpr std::uint32_t free = 0;
  static constexpr std::uint32_t held = 1;
  static constexpr std::uint32_t contended = 2;
  static constexpr int spins_before_sleep = 100;

  std::atomic<std::uint32_t> word_{free};
};

}  // namespace supervisor::detail
