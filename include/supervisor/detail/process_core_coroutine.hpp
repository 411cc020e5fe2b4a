#pragma once

/// \file
/// The coroutine kind of `ProcessCore` (see process_core.hpp): its launch, and the task's hooks
/// that stand for a thread's body.

#include <memory>
#include <system_error>

#include "supervisor/detail/process_core.hpp"

namespace supervisor::detail {

#define SUPERVISOR_PROCESS_CORE_ \
  template <class R>             \
  requires AnyKindRunnable<R>

SUPERVISOR_PROCESS_CORE_
std::error_code ProcessCore<R>::begin_start(ExecutorRef executor) requires CoroutineRunnable<R> {
  if (!enter_starting()) {
    return errc::invalid_state;
  }
  try {
    ready_waiter_.set_executor(executor);
    task_ = call_async_run(*runnable_, force_.get_token(), async_ready_).release();
    task_.promise().set_hooks(TaskHooks{&task_begins, &task_ends, this});
    self_ = this->shared_from_this();  // the task keeps its record, as a thread does
    executor.schedule_or_throw(task_);
  } catch (...) {
    if (task_) {
      task_.destroy();
      task_ = {};
    }
    self_.reset();  // not the last owner: the caller holds one
    fail_launch();
    throw;
  }
  // Visible to lookups, stops and the shutdown from here, as a thread kind once its thread is
  // created: its first resumption may wait in the executor's queue. (The task's `starting` may
  // come later; events from other threads wait for it, and are never sent from the executor's
  // threads, where every call that would send one is refused.)
  launched_.store(true, std::memory_order_release);
  return {};
}

// First thing on the executor, before the body: as a thread's first steps.
SUPERVISOR_PROCESS_CORE_
void ProcessCore<R>::task_begins(void* context) noexcept {
  auto* self = static_cast<ProcessCore*>(context);
  self->on_start();
  self->launched_.store(true, std::memory_order_release);
}

SUPERVISOR_PROCESS_CORE_
void ProcessCore<R>::task_ends(void* context) noexcept {
  static_cast<ProcessCore*>(context)->finish_task();
}

// The task has finished: its result, its frame freed, the exit path, then the settle hook after
// the last touch of `*this` (the task's reference may be the last one, and `run` may return as
// soon as the hook has been called).
SUPERVISOR_PROCESS_CORE_
void ProcessCore<R>::finish_task() noexcept {
  const std::exception_ptr failure = task_failure(task_);
  task_.destroy();
  task_ = {};
  finish_run(failure);
  wake_on_force_.reset();  // no wake-up from here on: none may reach a record being destroyed
  const SettleHook settle = settle_hook();
  { const std::shared_ptr<ProcessCore> last = std::move(self_); }
  if (settle.call != nullptr) {
    settle.call(settle.context);
  }
}

#undef SUPERVISOR_PROCESS_CORE_

}  // namespace supervisor::detail
