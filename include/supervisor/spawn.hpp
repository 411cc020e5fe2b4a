#pragma once

/// \file
/// `spawn`: runs a `Task<>` on an executor without anyone awaiting it, for the root of a
/// coroutine (a request handler, a driver that calls `async_start`/`async_stop`) that nothing
/// else resumes.

#include <concepts>
#include <coroutine>
#include <exception>
#include <stdexcept>
#include <utility>

#include "supervisor/executor.hpp"
#include "supervisor/task.hpp"

namespace supervisor {

namespace detail {

/// The coroutine that `spawn` schedules: it awaits the task, hands its outcome to `done`, and
/// frees its own frame at the end.
struct Spawned {
  struct promise_type {
    Spawned get_return_object() noexcept {
      return Spawned{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    // Only `done` throwing gets here (the task's exception goes to `done`): it has nowhere to go.
    void unhandled_exception() noexcept {}
  };
  std::coroutine_handle<promise_type> handle;
};

template <class Done>
Spawned run_spawned(Task<> task, Done done) {
  std::exception_ptr failure;
  try {
    // NOLINTNEXTLINE(bugprone-use-after-move): clang-tidy 14 sees the frame's parameter copy.
    co_await std::move(task);
  } catch (...) {
    failure = std::current_exception();
  }
  done(std::move(failure));
}

}  // namespace detail

/// Schedules `task` on `executor` and returns at once; the task runs on the executor's
/// threads. When it has finished, `done(std::exception_ptr)` is called on the thread that
/// finished it, with the task's exception or null; an exception thrown by `done` is dropped.
/// Throws `std::invalid_argument` for an empty `executor`, what its `schedule` throws (then
/// nothing runs, and `done` is not called), or `std::bad_alloc`. The caller keeps whatever the
/// task refers to alive until `done` is called: a task made by a lambda refers to the lambda's
/// captures, so name the lambda (`spawn(ex, [&]() -> Task<> {...}(), ...)` with a temporary
/// lambda leaves the frame pointing at a dead one).
template <class Done>
requires std::invocable<Done&, std::exception_ptr>
void spawn(ExecutorRef executor, Task<> task, Done done) {
  if (!executor) {
    throw std::invalid_argument("supervisor::spawn: no executor");
  }
  const detail::Spawned spawned = detail::run_spawned(std::move(task), std::move(done));
  try {
    executor.schedule_or_throw(spawned.handle);
  } catch (...) {
    spawned.handle.destroy();
    throw;
  }
}

}  // namespace supervisor
