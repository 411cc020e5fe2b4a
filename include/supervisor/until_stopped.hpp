#pragma once

/// \file
/// `until_stopped`: an awaitable that suspends a coroutine until a `std::stop_token` is
/// requested, for a coroutine runnable that waits for `force` alone (or for any token), where
/// `co_await ready` would also end on a graceful stop. A `run(ready)` without a force parameter
/// waits for `ready.force_token()`.

#include <atomic>
#include <coroutine>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <utility>

#include "supervisor/executor.hpp"

namespace supervisor {

/// What `until_stopped` returns. Awaited once, where it was made; neither copied nor moved.
class UntilStopped {
 public:
  /// Throws `std::invalid_argument` if `resume_on` is empty: there is nowhere to resume on, and
  /// the thread that requests the token (maybe the supervisor's) must not run the coroutine.
  UntilStopped(std::stop_token token, ExecutorRef resume_on)
      : token_(std::move(token)), executor_(resume_on) {
    if (!executor_) {
      throw std::invalid_argument(
          "supervisor::until_stopped: an empty ExecutorRef (use ready.executor() in a "
          "coroutine runnable)");
    }
  }
  UntilStopped(const UntilStopped&) = delete;
  UntilStopped& operator=(const UntilStopped&) = delete;
  UntilStopped(UntilStopped&&) = delete;
  UntilStopped& operator=(UntilStopped&&) = delete;
  ~UntilStopped() = default;

  [[nodiscard]] bool await_ready() const noexcept { return token_.stop_requested(); }
  bool await_suspend(std::coroutine_handle<> awaiting) noexcept {
    handle_ = awaiting;
    // Runs at once if the token is already requested: then it finds the coroutine not yet
    // suspended, and it goes on without being scheduled.
    on_stop_.emplace(token_, Resume{this});
    return state_.exchange(suspended) != requested;
  }
  void await_resume() const noexcept {}

 private:
  static constexpr int requested = 1;
  static constexpr int suspended = 2;
  struct Resume {
    UntilStopped* self;
    void operator()() const noexcept {
      // Whoever comes second, the callback or the suspension, decides: the coroutine is
      // resumed once, and never before it has suspended.
      if (self->state_.exchange(requested) == suspended) {
        self->executor_.schedule(self->handle_);
      }
    }
  };

  std::stop_token token_;
  ExecutorRef executor_;
  std::coroutine_handle<> handle_;
  std::atomic<int> state_{0};
  std::optional<std::stop_callback<Resume>> on_stop_;
};

/// `co_await until_stopped(token, executor)`: goes on at once if `token` is already requested;
/// else suspends until it is, and is then resumed on `executor` (from the thread that requested
/// it). A token that can never be requested (`stop_possible()` false) never resumes it. In a
/// coroutine runnable: `co_await until_stopped(force, ready.executor())` waits for force alone,
/// on the executor the process runs on (`AsyncReady::executor`).
/// Throws `std::invalid_argument` if `executor` is empty (a default-constructed `ExecutorRef`);
/// in a coroutine runnable that is the runnable's own failure, reported with its key.
[[nodiscard]] inline UntilStopped until_stopped(std::stop_token token, ExecutorRef executor) {
  return UntilStopped(std::move(token), executor);
}

}  // namespace supervisor
