#pragma once

/// \file
/// `AsyncCalls`: the awaitable forms of `Supervisor`'s `start`, `stop` and `run_until`, for
/// callers that are coroutines. `Supervisor` derives from it; use them through a supervisor.

#include <chrono>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>

#include "supervisor/async_ready.hpp"
#include "supervisor/executor.hpp"
#include "supervisor/task.hpp"

namespace supervisor {

/// The members of `Supervisor<Key, R>` (its `Derived`) that a coroutine awaits. Each returns a
/// lazy awaitable (a `Call`, or a `Task`): awaiting it does what the blocking form does, but
/// suspends the caller instead of blocking its thread, and resumes it on an executor (or goes on at
/// once if there is nothing to wait for). They work on the executor's own threads too, where the
/// blocking forms are refused. The outcomes are the blocking forms' as a returned code; exceptions
/// (the runnable's, the table's) are rethrown by the `co_await`. The supervisor must outlive every
/// such call and task. A process is recognized as the caller through `Task` awaits only (not
/// through other coroutine types in between).
template <class Derived, class Key, class R>
class AsyncCalls {
 public:
  /// What `async_start` and `async_stop` return: a lazy awaitable of a `std::error_code`, used
  /// as a `Task<std::error_code>` is (and converted to one where a `Task` is wanted). Making it
  /// runs nothing; `co_await std::move(call)` (or on the temporary) runs the call on the
  /// awaiting thread, once: awaiting it again, or a moved-from one, throws `std::logic_error`.
  /// It is not a coroutine: without a `cancel` token that can be requested (and, for
  /// `async_stop`, without an event hook) the wait lives in the awaiting coroutine's frame, so
  /// the call allocates nothing of its own; else it runs a coroutine of its own, one frame more
  /// (always, built with a compiler that gets no hand-over: detail/hand_over.hpp). The outcomes
  /// are the same either way. Its type is not a `Task`: code that deduces `Task<T>` from it (a
  /// template parameter, `decltype`) sees a `Call`; convert it where a `Task` is needed. Move-only;
  /// destroying it unawaited does nothing. Not thread-safe: one thread moves or awaits a given call
  /// at a time.
  class Call;

  /// `start`, awaited; for coroutine processes only. Runs `Table::get` on the awaiting thread
  /// (a table whose `get` blocks blocks that executor thread). `cancel` is a stop token (no
  /// deadline: request the token from your timer): once it is requested, the process is forced,
  /// and the call still finishes only after the process's `run` has returned, with
  /// `errc::canceled`. The caller is resumed on the supervisor's executor, not its own: with
  /// `Options::executor` empty that is the supervisor's private pool, so give callers an
  /// executor of your own to come back to. When the process becomes ready (or ends) on a thread
  /// of that executor, the caller runs next on that same thread, in the process's stead, once
  /// the process has suspended (not queued; built with GCC or clang 19 and later, see
  /// detail/hand_over.hpp); else it is scheduled there. In turn a caller on a thread of that
  /// executor, without a `cancel` that can be requested and built so, runs the process's first
  /// step itself, inside the `co_await`, once it has suspended: not queued, so ahead of what an
  /// executor that runs in order has queued, at most 16 processes in a row (then one is queued
  /// and the caller suspends to the executor). The key is copied into the call: it may go
  /// before the call is awaited.
  Call async_start(Key key, std::stop_token cancel = {}) requires CoroutineRunnable<R>;

  /// `stop`, awaited; for coroutine processes only; resumed as `async_start` is, and it runs the
  /// process's return from `co_await ready` itself as `async_start` runs the first step (with no
  /// event hook either). From a task of the very process it would stop:
  /// `std::errc::resource_deadlock_would_occur`, with no effect. A process awaiting another's stop
  /// should pass its own `force` as `cancel`, so that two processes stopping each other cannot wait
  /// forever.
  Call async_stop(Key key, std::stop_token cancel = {}) requires CoroutineRunnable<R>;

  /// `run_until(stop, grace)`, awaited, for a service whose main is a coroutine (the processes
  /// may be of either kind): restores the table, runs until `stop` is requested, then shuts
  /// down gracefully and forces what still runs `grace` later. The blocking `run_until` runs on
  /// a thread that this call starts (one per call, like the restart loop's), and the caller is
  /// resumed on `resume_on`, or on `Options::executor` if that is empty, once everything the
  /// supervisor started has stopped: all the waits of the shutdown are that thread's, none is
  /// an executor thread's. The thread is joined as the awaited task finishes, on the resumed
  /// caller's thread (it only has to leave by then). If the executor's `schedule` throws, the
  /// caller goes on, inline, on that thread instead, and the thread is detached, to end with the
  /// caller's code. The run works for the caller: a process of it that calls back into what the
  /// caller is part of (the caller's own process, or the supervisor running that) is refused, as
  /// in a blocking `run_until` nested there. Happens-before: as when `run_until` returns.
  ///
  /// Outcomes: `run_until`'s, as a code (`errc::escalated`; a second concurrent `run` waits for
  /// the first); `std::errc::resource_deadlock_would_occur`, at once and with no effect,
  /// from a process of this supervisor (it would wait for itself); `std::invalid_argument`,
  /// thrown, if there is no executor to resume on; `std::system_error`, thrown, if no thread can
  /// be made (for this call, or by `run_until` for its own).
  template <class Rep, class Period>
  Task<std::error_code> async_run(std::stop_token stop, std::chrono::duration<Rep, Period> grace,
                                  ExecutorRef resume_on = {});

 private:
  friend Derived;
  AsyncCalls() = default;
  Derived& self() noexcept { return static_cast<Derived&>(*this); }

  // The calls as coroutines of their own: what a `Call` awaits when it has a `cancel` token to
  // watch (or, stopping, an event hook to wait for).
  Task<std::error_code> start_task(Key key, std::stop_token cancel);
  Task<std::error_code> stop_task(Key key, std::stop_token cancel);
};

template <class Derived, class Key, class R>
class [[nodiscard]] AsyncCalls<Derived, Key, R>::Call {
 public:
  // NOLINTNEXTLINE(performance-noexcept-move-constructor): as noexcept as the key's move.
  Call(Call&& other) noexcept(std::is_nothrow_move_constructible_v<Key>)
      : sup_(other.sup_),
        stopping_(other.stopping_),
        key_(std::move(other.key_)),
        cancel_(std::move(other.cancel_)) {
    other.sup_ = nullptr;  // only once the key has moved: a move that throws leaves it whole
  }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;
  Call& operator=(Call&&) = delete;
  ~Call() = default;

  class Awaiter;
  /// Empties the call: its outcome is the awaiter's.
  Awaiter operator co_await() && noexcept(std::is_nothrow_move_constructible_v<Key>);
  /// The call as a task of its own (the call's coroutine, one frame more), for code that wants
  /// a `Task`; an empty call gives an empty task, whose `co_await` throws `std::logic_error`.
  /// Throws what copying the key throws, or `std::bad_alloc` if the frame cannot be made; the
  /// call is then left as it was.
  // NOLINTNEXTLINE(google-explicit-constructor): a `Call` stands where a `Task` stood before.
  operator Task<std::error_code>() && {
    if (sup_ == nullptr) {
      return {};
    }
    Task<std::error_code> task =
        stopping_ ? sup_->stop_task(key_, cancel_) : sup_->start_task(key_, cancel_);
    sup_ = nullptr;
    return task;
  }

 private:
  friend AsyncCalls;
  Call(Derived& sup, bool stopping, Key key, std::stop_token cancel)
      : sup_(&sup), stopping_(stopping), key_(std::move(key)), cancel_(std::move(cancel)) {}

  Derived* sup_;  // null once awaited or moved from
  bool stopping_;
  Key key_;
  std::stop_token cancel_;
};

}  // namespace supervisor
