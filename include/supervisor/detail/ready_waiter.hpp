#pragma once

/// \file
/// `ReadyWaiter`: where a coroutine process parks on `co_await ready`, and the one wake-up that
/// schedules it again.

#include <atomic>
#include <coroutine>
#include <cstdint>

#include "supervisor/executor.hpp"

namespace supervisor::detail {

/// One word: 0 (armed: a wake-up may come), 1 (woken since it was armed), or the address of
/// the parked coroutine. Every wake-up exchanges in "woken": whoever takes out an address, and
/// only they, schedules that coroutine, so it is resumed once; a wake-up that comes before the
/// coroutine parks makes `park` refuse, so none is lost. Wake-ups come from any thread (a stop,
/// force, the early token); `arm` and `park` only from the parking coroutine.
class ReadyWaiter {
 public:
  void set_executor(ExecutorRef executor) noexcept { executor_ = executor; }

  /// Forgets the wake-ups before this suspension. Before its wake-up callbacks are registered.
  void arm() noexcept { word_.store(armed); }

  /// Parks `awaiting`; false if a wake-up came since `arm` (then it goes on, unscheduled).
  bool park(std::coroutine_handle<> awaiting) noexcept {
    std::uintptr_t expected = armed;
    return word_.compare_exchange_strong(expected,
                                         reinterpret_cast<std::uintptr_t>(awaiting.address()));
  }

  /// Schedules the parked coroutine on the executor, if one is parked; else makes the next
  /// `park` refuse.
  void wake() noexcept {
    const std::uintptr_t parked = word_.exchange(woken);
    if (parked > woken) {
      executor_.schedule(std::coroutine_handle<>::from_address(reinterpret_cast<void*>(parked)));
    }
  }

 private:
  static constexpr std::uintptr_t armed = 0;
  static constexpr std::uintptr_t woken = 1;
  ExecutorRef executor_;
  std::atomic<std::uintptr_t> word_{armed};
};

}  // namespace supervisor::detail
