#pragma once

/// \file
/// `spin_until`: the bounded busy-wait before a blocking hand-off (`Options::handoff_spin`).

#include <chrono>
#include <optional>
#include <thread>

namespace supervisor::detail {

/// The default bound on a busy-wait before a blocking hand-off: none. Spinning pays off only
/// when the other side is already running on another core (a reused, parked thread); on a busy
/// machine it steals the very core the other side needs. See `Options::handoff_spin`.
inline constexpr std::chrono::nanoseconds default_handoff_spin{0};

/// The default for coroutine processes, whose other side is a running executor thread: long
/// enough for a pool thread to take the hand-off and reach `ready` or its end, short enough that
/// a process that takes long costs little burn before the caller sleeps.
inline constexpr std::chrono::nanoseconds coroutine_handoff_spin{20'000};

/// `Options::handoff_spin` as set, or the default of the kind of runnable when it is empty.
inline std::chrono::nanoseconds resolve_handoff_spin(
    const std::optional<std::chrono::nanoseconds>& set, bool coroutine) noexcept {
  return set.value_or(coroutine ? coroutine_handoff_spin : default_handoff_spin);
}

/// Tells the CPU we are busy-waiting (lets the sibling hyper-thread run, saves power).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield");
#else
  std::this_thread::yield();
#endif
}

/// Busy-waits until `ready()` holds, for at most `budget`. Returns whether it held.
///
/// Used right before a blocking wait on a hand-off that usually completes within microseconds
/// (a process becoming ready, a stop being acknowledged): a sleeping thread costs a futex wake-up
/// of tens of microseconds on a virtual machine, a spinning one sees the flag at once. The budget
/// bounds the burn, so an idle process never spins for long.
template <class Ready>
bool spin_until(Ready ready, std::chrono::nanoseconds budget) {
  if (ready()) {
    return true;
  }
  if (budget <= std::chrono::nanoseconds::zero()) {
    return false;
  }
  const auto give_up = std::chrono::steady_clock::now() + budget;
  for (unsigned i = 1;; ++i) {
    cpu_relax();
    if (ready()) {
      return true;
    }
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= give_up) {
      return false;
    }
  }
}

}  // namespace supervisor::detail
