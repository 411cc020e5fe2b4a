#pragma once

/// \file
/// `ReadyWaiter`: where a coroutine process parks on `co_await ready`, and the one wake-up that
/// schedules it again (or resumes it: `take`).

#include <atomic>
#include <coroutine>

#include "supervisor/executor.hpp"

namespace supervisor::detail {

/// One word: null (armed: a wake-up may come), the "woken" mark (woken since it was armed), or
/// the address of the parked coroutine. Every wake-up exchanges in the mark: whoever takes out an
/// address, and only they, schedules (or resumes) that coroutine, so it is resumed once; a wake-up
/// that comes before the coroutine parks makes `park` refuse, so none is lost. Wake-ups come from
/// any thread (a stop, force, the early token); `arm` and `park` only from the parking coroutine.
class ReadyWaiter {
 public:
  /// Forgets the wake-ups before this suspension. Before its wake-up callbacks are registered.
  void arm() noexcept { word_.store(nullptr); }

  /// Parks `awaiting`; false if a wake-up came since `arm` (then it goes on, unscheduled).
  bool park(std::coroutine_handle<> awaiting) noexcept {
    void* expected = nullptr;
    return word_.compare_exchange_strong(expected, awaiting.address());
  }

  /// Schedules the parked coroutine on `executor_of()`'s executor, if one is parked; else makes
  /// the next `park` refuse. Asks for the executor only then (a supervisor's record reads its
  /// owner's, which is valid only while the process is unsettled).
  template <class ExecutorOf>
  void wake(const ExecutorOf& executor_of) noexcept {
    if (const std::coroutine_handle<> parked = take()) {
      executor_of().schedule(parked);
    }
  }

  /// As `wake`, but gives the parked coroutine (or null) to the caller to resume, unscheduled.
  [[nodiscard]] std::coroutine_handle<> take() noexcept {
    void* const parked = word_.exchange(woken());
    return parked != nullptr && parked != woken() ? std::coroutine_handle<>::from_address(parked)
                                                  : std::coroutine_handle<>();
  }

 private:
  /// An address no coroutine frame has.
  static void* woken() noexcept {
    static char mark;
    return &mark;
  }
  std::atomic<void*> word_{nullptr};
};

}  // namespace supervisor::detail
