#pragma once

/// \file
/// `Executor`: where coroutine processes run, and `ExecutorRef`, the library's handle on one.
///
/// An executor resumes coroutine handles on threads of its own. The library hands it a handle
/// when a coroutine process is launched and each time one is woken (a stop, force, or the early
/// token of `co_await ready(early)`); it never resumes a coroutine process on a thread of its own
/// choosing, except as the fallback described at `ExecutorRef::schedule`. One exception: a
/// caller that awaits `async_start` or `async_stop` on a thread of the executor (telling by
/// `running_in_this_thread()`) runs the process's first step, or its wake-up by that stop,
/// itself once it has suspended, instead of handing it over (see `AsyncCalls::async_start`).
///
/// Requirements, checked by the `Executor` concept where the compiler can:
/// - `e.schedule(h)` arranges for `h.resume()` to be called once, later, on one of the executor's
///   threads, and returns without resuming it. It is thread-safe. It may throw (an allocation
///   that fails); then it has no effect.
/// - Optionally `e.running_in_this_thread()`: whether the calling thread is one of those threads.
///   With it, a blocking call of the supervisor from such a thread (which would wait for work of
///   the same executor, and so possibly for itself) fails at once with
///   `std::errc::resource_deadlock_would_occur` instead of hanging. Without it that detection is
///   impossible: never make blocking calls from the executor's threads then.
/// - It outlives every supervisor `run` that uses it.

#include <concepts>
#include <coroutine>

#include "supervisor/detail/fault_injection.hpp"

namespace supervisor {

template <class E>
concept Executor = requires(E& e, std::coroutine_handle<> h) {
  e.schedule(h);
};

namespace detail {
template <class E>
concept KnowsItsThreads = requires(const E& e) {
  { e.running_in_this_thread() } -> std::convertible_to<bool>;
};
}  // namespace detail

/// A non-owning, copyable handle on any `Executor`: two pointers, no allocation. Empty by
/// default (`Options::executor` empty: the supervisor runs a `ThreadPool` of its own).
class ExecutorRef {
 public:
  ExecutorRef() = default;

  /// Refers to `executor`, which must outlive every use of the handle.
  template <Executor E>
  requires(!std::same_as<E, ExecutorRef>) ExecutorRef(E& executor)
  noexcept  // NOLINT(google-explicit-constructor): a handle on it.
      : self_(&executor), ops_(&ops_of<E>) {}

  explicit operator bool() const noexcept { return self_ != nullptr; }

  /// `h` is resumed later on the executor. If the executor throws, `h` is resumed right here, on
  /// the calling thread, instead: a wake-up is never lost (the docs of `AsyncReady` say so).
  void schedule(std::coroutine_handle<> h) const noexcept {
    try {
      ops_->schedule(self_, h);
      return;
    } catch (...) {
      detail::fault_point(detail::FaultPoint::schedule_recovered);  // the fault tests' count
    }
    h.resume();
  }

  /// Like `schedule`, but lets the executor's exception through (a launch that cannot be
  /// scheduled fails).
  void schedule_or_throw(std::coroutine_handle<> h) const { ops_->schedule(self_, h); }

  /// Whether the calling thread is one of the executor's; false if the executor cannot tell.
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return self_ != nullptr && ops_->running_in_this_thread(self_);
  }

 private:
  struct Ops {
    void (*schedule)(void* self, std::coroutine_handle<> h);
    bool (*running_in_this_thread)(const void* self) noexcept;
  };

  template <class E>
  static constexpr Ops ops_of{
      [](void* self, std::coroutine_handle<> h) { static_cast<E*>(self)->schedule(h); },
      [](const void* self) noexcept {
        if constexpr (detail::KnowsItsThreads<E>) {
          try {
            return static_cast<bool>(static_cast<const E*>(self)->running_in_this_thread());
          } catch (...) {
            return false;
          }
        } else {
          (void)self;
          return false;
        }
      }};

  void* self_ = nullptr;
  const Ops* ops_ = nullptr;
};

}  // namespace supervisor
