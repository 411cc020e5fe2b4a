#pragma once

/// \file
/// Coroutine runnables: `CoroutineRunnable`, and `AsyncReady`, the signal such a runnable gives
/// once it is up.
///
/// A coroutine runnable has one operation, `run(force, ready)`, a coroutine returning
/// `supervisor::Task<>` or `supervisor::Task<std::error_code>`, resumed on the supervisor's
/// executor (`Options::executor`), never on a thread of its own. It mirrors a thread runnable
/// (`runnable.hpp`) step by step:
/// 1. It initialises. Failing here means throwing (or returning a non-zero error code): the
///    process never became ready.
/// 2. It does `co_await ready` (or `co_await ready(token)`) once it is up. That marks the process
///    `running` (a blocked `start` returns), then suspends the coroutine, without holding any
///    thread, until a graceful stop is requested, until `force` is requested, or until the
///    token it was given is requested. The coroutine is resumed on the executor.
/// 3. After that it shuts down gracefully and returns.
/// 4. `force` is a cancellation signal. A coroutine is never preempted: one that ignores `force`
///    and never suspends on `ready` or on something tied to `force` runs on, and its stop waits,
///    exactly as for a thread runnable that ignores it.
/// `run(ready)` alone is the same without the `force` parameter: the process makes its force
/// token only if `ready.force_token()` asks for it (see `CoroutineRunnable`).
///
/// Blocking inside a coroutine runnable blocks a thread of the executor: use awaitable I/O, and
/// never call a blocking member of a supervisor whose processes run on the same executor (that
/// call fails with `std::errc::resource_deadlock_would_occur` where the executor can tell).
///
/// Where things run: `run` is called (the frame made) on the thread that starts the process;
/// the body, the `starting` and `ready` events, and the completion (the watchdog: the exit's
/// events and error reports, the key freed) on the executor's threads. `run` of the supervisor
/// returns only after every task has finished with it. Happens-before edges are those of
/// thread processes: before `co_await ready` → the `start` that returns; before returning → the
/// `stop` that returns and `run`'s return.

#include <atomic>
#include <concepts>
#include <coroutine>
#include <exception>
#include <optional>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>

#include "supervisor/detail/hand_over.hpp"
#include "supervisor/executor.hpp"
#include "supervisor/runnable.hpp"
#include "supervisor/task.hpp"

namespace supervisor {

namespace detail {

/// What an `AsyncReady` handle signals to: the process that runs the coroutine. It extends the
/// blocking form's target, which a process implements too: one table pointer in each record, not
/// two (8 bytes, a million times over).
class AsyncReadyTarget : public ReadyTarget {
 public:
  AsyncReadyTarget(const AsyncReadyTarget&) = delete;
  AsyncReadyTarget& operator=(const AsyncReadyTarget&) = delete;

  /// Marks the process ready (the first time). Returns whether it is already released (a stop,
  /// force, or `early`): then the awaiting coroutine goes on without suspending. With
  /// `hand_over`, and on a thread of the process's executor, one caller that waited for the
  /// start is put there rather than scheduled: the awaiting coroutine resumes it in its stead
  /// once parked, or schedules it if it goes on.
  virtual bool signal_ready(const std::stop_token& early, std::coroutine_handle<>* hand_over) = 0;
  /// Prepares a suspension: forgets any earlier wake-up. Before the callbacks are registered.
  virtual void arm_ready_wait() noexcept = 0;
  /// Parks `awaiting` until a wake-up; false if one came already (then it goes on at once).
  virtual bool park_ready(std::coroutine_handle<> awaiting, const std::stop_token& early) = 0;
  /// Wakes the parked coroutine, if any, once: it is scheduled on the executor.
  virtual void wake_ready() noexcept = 0;
  /// The executor the process runs on.
  [[nodiscard]] virtual ExecutorRef executor() const noexcept = 0;
  /// The force token (`AsyncReady::force_token`).
  virtual std::stop_token forcing() = 0;

 protected:
  AsyncReadyTarget() = default;
  ~AsyncReadyTarget() = default;
};

/// What `co_await ready` (`Early` false) and `co_await ready(early)` (`Early` true) await. It
/// lives in the runnable's frame, a million times over at scale: the plain form holds no token
/// and no stop callback, 16 bytes instead of 88.
template <bool Early>
class ReadyAwaiter {
 public:
  explicit ReadyAwaiter(AsyncReadyTarget* target) noexcept requires(!Early) : target_(target) {}
  ReadyAwaiter(AsyncReadyTarget* target, std::stop_token early) noexcept requires Early
      : target_(target),
        early_(std::move(early)) {}
  ReadyAwaiter(ReadyAwaiter&& other) noexcept
      : target_(other.target_),
        hand_over_(std::exchange(other.hand_over_, {})),
        early_(std::move(other.early_)) {}
  ReadyAwaiter(const ReadyAwaiter&) = delete;
  ReadyAwaiter& operator=(const ReadyAwaiter&) = delete;
  ReadyAwaiter& operator=(ReadyAwaiter&&) = delete;
  ~ReadyAwaiter() = default;

  bool await_ready() {
    const bool go_on = target_->signal_ready(early(), hand_over_callers ? &hand_over_ : nullptr);
    if (go_on && hand_over_) {
      target_->executor().schedule(std::exchange(hand_over_, {}));
    }
    return go_on;
  }
  /// A handle where the compiler keeps it off the frame (`hand_over_callers`), else whether to
  /// stay suspended.
  template <class Promise>
  auto await_suspend(std::coroutine_handle<Promise> awaiting)
      -> std::conditional_t<hand_over_callers_for<Promise>, std::coroutine_handle<>, bool> {
    target_->arm_ready_wait();
    if constexpr (Early) {
      if (early_.stop_possible()) {
        // Runs at once if `early` is already requested: that wake-up then makes `park_ready`
        // refuse, and the coroutine goes on; nothing is scheduled twice.
        on_early_.emplace(early_, Wake{target_});
      }
    }
    if constexpr (hand_over_callers_for<Promise>) {
      // Read before parking: once parked, a stop may resume the coroutine on another thread,
      // and it may end, freeing this awaiter (in its frame) and the record.
      const std::coroutine_handle<> next = std::exchange(hand_over_, {});
      if (target_->park_ready(awaiting, early())) {
        // The caller that waited for the start runs here, now, without a round through the
        // executor's queue (two locked instructions fewer, and its cache lines still warm).
        return next ? next : std::noop_coroutine();
      }
      if (next) {
        target_->executor().schedule(next);  // not parked: the record is still alive
      }
      return awaiting;
    } else {
      return target_->park_ready(awaiting, early());
    }
  }
  void await_resume() const noexcept {}

 private:
  struct Wake {
    AsyncReadyTarget* target;
    void operator()() const noexcept { target->wake_ready(); }
  };
  template <int>
  struct None {};  // two types: two empty members of one type could not share an address
  // The token itself (no count taken), or an empty one.
  [[nodiscard]] decltype(auto) early() const noexcept {
    if constexpr (Early) {
      return (early_);
    } else {
      return std::stop_token{};
    }
  }

  AsyncReadyTarget* target_;
  std::coroutine_handle<> hand_over_;  // a caller to resume in this coroutine's stead, or null
  [[no_unique_address]] std::conditional_t<Early, std::stop_token, None<0>> early_;
  [[no_unique_address]] std::conditional_t<Early, std::optional<std::stop_callback<Wake>>, None<1>>
      on_early_;
};

}  // namespace detail

/// The readiness signal handed to a coroutine runnable's `run`. A small handle; copies signal
/// the same process. Await it on the coroutine of `run` (or one it awaits), never after `run`
/// has returned.
class AsyncReady {
 public:
  explicit AsyncReady(detail::AsyncReadyTarget& target) noexcept : target_(&target) {}

  using Awaiter = detail::ReadyAwaiter<false>;
  using EarlyAwaiter = detail::ReadyAwaiter<true>;

  /// `co_await ready`: marks the process running, then suspends until a stop or force.
  Awaiter operator co_await() const noexcept { return Awaiter(target_); }
  /// `co_await ready(early)`: likewise, and also resumes once `early` is requested. Its awaiter
  /// holds the token and a stop callback, 72 bytes more in the frame than `co_await ready`.
  EarlyAwaiter operator()(std::stop_token early) const noexcept {
    return EarlyAwaiter(target_, std::move(early));
  }

  /// Marks the process running (a blocked `start` returns) without suspending: for a coroutine
  /// that goes on working once it is up (a session's loop), watching `stop_token()` for a
  /// graceful stop and `force` (or `force_token()`) for force, instead of parking on
  /// `co_await ready`. Calling it
  /// again, or awaiting `ready` afterwards, does not signal twice. Throws only
  /// `std::system_error` if a lock fails.
  void signal() const { (void)target_->signal_ready({}, nullptr); }

  /// As `Ready::stop_token`: requested once a graceful stop or force is requested. Thread-safe.
  /// The first call allocates, and with `run(ready)` makes the force token too (as
  /// `force_token()`): it may throw `std::bad_alloc`.
  [[nodiscard]] std::stop_token stop_token() const { return target_->stopping(); }

  /// The force token, the one a two-argument `run` is handed: requested once force is. For a
  /// `run(ready)` without one, the first call makes it (the process makes none until then) and
  /// may throw `std::bad_alloc`; a token made after force was requested is requested already.
  /// Thread-safe while `run`'s task has not finished. Its callbacks run on the thread that
  /// requests force, at once on a token already requested, or (`run(ready)`) on a thread that
  /// asks for the token while a request is under way.
  [[nodiscard]] std::stop_token force_token() const { return target_->forcing(); }

  /// The executor this process runs on, where its coroutine is resumed: `Options::executor`, or
  /// the supervisor's own pool when none was given. For wake-ups of the process's own, such as
  /// `co_await until_stopped(force, ready.executor())` (until_stopped.hpp). Thread-safe. The
  /// supervisor's own pool is joined once every process has finished, as `run` ends: what else
  /// is scheduled there (a task `spawn`ed on it) must have finished by then.
  [[nodiscard]] ExecutorRef executor() const noexcept { return target_->executor(); }

 private:
  detail::AsyncReadyTarget* target_;
};

namespace detail {

template <class R>
concept HasAsyncRunMember = requires(R& r, AsyncReady& ready) {
  r.run(std::stop_token{}, ready);
};
template <class R>
concept HasAsyncRunThroughPointer = !HasAsyncRunMember<R> && requires(R & r, AsyncReady& ready) {
  (*r).run(std::stop_token{}, ready);
};
// `run(ready)` alone: the force token only on request (`AsyncReady::force_token`).
template <class R>
concept HasReadyOnlyRunMember =
    !HasAsyncRunMember<R> && !HasAsyncRunThroughPointer<R> && requires(R & r, AsyncReady& ready) {
  r.run(ready);
};
template <class R>
concept HasReadyOnlyRunThroughPointer =
    !HasAsyncRunMember<R> && !HasAsyncRunThroughPointer<R> && !HasReadyOnlyRunMember<R> &&
    requires(R & r, AsyncReady& ready) {
  (*r).run(ready);
};
/// Whether a coroutine runnable's `run` takes `AsyncReady&` alone: its process makes no force
/// source unless asked for the token.
template <class R>
concept ReadyOnlyRun = HasReadyOnlyRunMember<R> || HasReadyOnlyRunThroughPointer<R>;

/// Calls a coroutine runnable's `run`: the task, not started. `force` makes the token, called
/// only for a `run` that takes one.
template <class R, class Force>
auto call_async_run(R& runnable, Force&& force, AsyncReady& ready) {
  if constexpr (HasAsyncRunMember<R>) {
    return runnable.run(force(), ready);
  } else if constexpr (HasAsyncRunThroughPointer<R>) {
    return (*runnable).run(force(), ready);
  } else if constexpr (HasReadyOnlyRunMember<R>) {
    return runnable.run(ready);
  } else {
    return (*runnable).run(ready);
  }
}

/// A token maker for `AsyncRunResult` (a lambda here trips g++ 12).
struct UnusedForce {
  std::stop_token operator()() const noexcept { return {}; }
};
template <class R>
using AsyncRunResult =
    decltype(call_async_run(std::declval<R&>(), UnusedForce{}, std::declval<AsyncReady&>()));

template <class T>
struct TaskResult {};
template <class T>
struct TaskResult<Task<T>> {
  using type = T;
};

}  // namespace detail

/// A type whose objects run as coroutine processes: `run(std::stop_token force,
/// supervisor::AsyncReady& ready)` on the object (or through a pointer-like handle) returns
/// `Task<>` or `Task<E>` with `E` convertible to `std::error_code` (non-zero: a failure). `run`
/// may take `AsyncReady& ready` alone instead (used only if the two-argument form is absent): its
/// process then makes the force token only if `ready.force_token()` is called, which saves each
/// process an `std::stop_source`'s heap block (32 bytes, an allocation and a free). It must
/// not also be a thread `Runnable` (a `run` taking `Ready&`). The library keeps its own copy, as
/// for `Runnable`, with one exception: a `run` that first makes another task with a frame of the
/// same size and keeps it past its return (where the record holds room for the returned task's
/// frame) leaves that process's record, and its copy, never destroyed: at most once per type,
/// which gets no such room afterwards (see task.hpp).
template <class R>
concept CoroutineRunnable =
    !HasRun<R> &&  // first: a thread runnable's other `run` overloads are never instantiated
    (detail::HasAsyncRunMember<R> || detail::HasAsyncRunThroughPointer<R> ||
     detail::ReadyOnlyRun<R>)&&detail::is_task<detail::AsyncRunResult<R>> &&
    (std::is_void_v<typename detail::TaskResult<detail::AsyncRunResult<R>>::type> ||
     std::convertible_to<typename detail::TaskResult<detail::AsyncRunResult<R>>::type,
                         std::error_code>)&&StorableRunnable<R>;

/// Either kind of runnable.
template <class R>
concept AnyKindRunnable = Runnable<R> || CoroutineRunnable<R>;

/// What `Supervisor` accepts: either kind, copyable (`start` and `get` hand out copies).
template <class R>
concept SupervisedRunnable = AnyKindRunnable<R> && std::copy_constructible<R>;

namespace detail {
/// What a finished task of a coroutine runnable failed with: its exception, or a non-zero error
/// code as `std::system_error`; null if it succeeded.
template <class Promise>
std::exception_ptr task_failure(std::coroutine_handle<Promise> task) noexcept {
  try {
    if constexpr (std::is_void_v<decltype(task.promise().take())>) {
      task.promise().take();
    } else {
      if (const std::error_code ec = task.promise().take()) {
        throw std::system_error(ec, "runnable failed");
      }
    }
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

/// The coroutine handle of a coroutine runnable's task; a plain handle for a thread runnable.
template <class R>
struct TaskHandleOf {
  using type = std::coroutine_handle<>;
};
template <CoroutineRunnable R>
struct TaskHandleOf<R> {
  using type = typename AsyncRunResult<R>::handle_type;
};
}  // namespace detail

}  // namespace supervisor
