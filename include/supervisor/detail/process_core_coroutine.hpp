#pragma once

/// \file
/// The coroutine kind of `ProcessCore` (see process_core.hpp): its launch, and the task's hooks
/// that stand for a thread's body.

#include <coroutine>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <system_error>

#include "supervisor/detail/frame_room.hpp"
#include "supervisor/detail/hand_over.hpp"
#include "supervisor/detail/process_core.hpp"

namespace supervisor::detail {

#define SUPERVISOR_PROCESS_CORE_      \
  template <class R, ParentLink Link> \
  requires AnyKindRunnable<R>

SUPERVISOR_PROCESS_CORE_
std::error_code ProcessCore<R, Link>::begin_start(
    ExecutorRef executor, std::shared_ptr<ProcessCore> self,
    std::coroutine_handle<>* run_here) requires CoroutineRunnable<R> {
  if (!enter_starting()) {
    return errc::invalid_state;
  }
  // Declared before the `try`: a task made on the side may keep the room even if `run` throws.
  FrameOffer offer(frame_room());
  try {
    if constexpr (Link == ParentLink::per_process) {
      executor_ = executor;
    }
    self_ = std::move(self);  // the task keeps its record, as a thread does
    task_ = call_async_run(
                *runnable_, [this] { return force_.get_token(); }, async_ready_)
                .release();
    offer.disarm();  // before the task may run (an executor may resume it right here)
    FrameRoomHint<R>::learn(offer.root_frame_size(task_.address()));
    keep_if_room_kept(offer, task_.address());
    static constexpr TaskHooks hooks{&task_begins, &task_ends};
    task_.promise().set_hooks(hooks, this, &work_);
    if (run_here != nullptr && executor.running_in_this_thread()) {
      *run_here = task_;  // last: nothing below may fail once the caller has it
    } else {
      executor.schedule_or_throw(task_);
    }
  } catch (...) {
    offer.disarm();
    keep_if_room_kept(offer, task_ ? task_.address() : nullptr);
    if (task_) {
      task_.destroy();
      task_ = {};
    }
    if (!keep_forever_) {  // else kept: as below, never dropped
      self_.reset();       // not the last owner: the caller holds one
    }
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

// The room in this record's block, if it has one (as `give_frame_room` left it).
SUPERVISOR_PROCESS_CORE_
FrameRoom ProcessCore<R, Link>::frame_room() noexcept {
  if (frame_room_bytes_ == 0) {
    return {};
  }
  // Within the record's block, which `operator new` made as bytes.
  return FrameRoom{reinterpret_cast<std::byte*>(this) + frame_room_offset_, frame_room_bytes_};
}

// A frame other than the task's lives in the room and may outlive the process: the task's
// reference to the record is then never dropped, so the record is kept for good (leaked), and
// its type gets no more room (so that happens at most once per type).
SUPERVISOR_PROCESS_CORE_
void ProcessCore<R, Link>::keep_if_room_kept(const FrameOffer& offer, const void* task) noexcept {
  if (offer.room_taken_by_other(task)) {
    FrameRoomHint<R>::disable();
    keep_forever_ = true;
  }
}

// First thing on the executor, before the body: as a thread's first steps.
SUPERVISOR_PROCESS_CORE_
void ProcessCore<R, Link>::task_begins(void* context) noexcept {
  auto* self = static_cast<ProcessCore*>(context);
  self->on_start();
  self->launched_.store(true, std::memory_order_release);
  // Sequentially consistent, as a caller's `begun_waited_` then `begun_`: either it sees this,
  // or this sees its mark and takes the lock, which it holds until its node is linked. Without
  // a waiter (the usual case: only `async_stop` with an event hook waits for this) no lock.
  self->begun_.store(true);
  if (self->begun_waited_.load()) {
    CallerNode* woken = nullptr;
    {
      std::lock_guard lock(self->mutex_);
      woken = self->take_callers(Until::begun);
    }
    self->resume_callers(woken);
  }
}

SUPERVISOR_PROCESS_CORE_
std::coroutine_handle<> ProcessCore<R, Link>::task_ends(void* context) noexcept {
  return static_cast<ProcessCore*>(context)->finish_task();
}

// The task has finished: its result, its frame freed, the exit path, then the settle hook after
// the last touch of `*this` (the task's reference may be the last one, and `run` may return as
// soon as the hook has been called). Returns a caller that waited for the end, to be resumed on
// this thread in the task's stead (the executor's thread: not scheduled, so nothing is queued
// after the settle hook; it holds its own reference to the record).
SUPERVISOR_PROCESS_CORE_
std::coroutine_handle<> ProcessCore<R, Link>::finish_task() noexcept {
  const std::exception_ptr failure = task_failure(task_);
  task_.destroy();
  task_ = {};
  std::coroutine_handle<> next;
  // Only on a thread of the executor: a task that ended elsewhere (an I/O context's thread)
  // must not take its callers there. (And only where the compiler keeps the final awaiter's
  // result off the frame, which this has just freed: `hand_over_callers`.)
  finish_run(failure, hand_over_callers && executor().running_in_this_thread() ? &next : nullptr);
  if (cancels_at_done_) {
    // A cancel that unlinked its caller before the end is still scheduling it: wait, so that
    // nothing is scheduled once the settle hook has let `run` go on (and its pool go).
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return cancels_in_flight_ == 0; });
  }
  const SettleHook settle = settle_hook();
  if (!keep_forever_) {
    const std::shared_ptr<ProcessCore> last = std::move(self_);
  }
  if (settle.call != nullptr) {
    settle.call(settle.context);
  }
  return next;
}

// ---- Callers that are coroutines -----------------------------------------------------------

/// The awaiter of `until_started` / `until_done`. Lives in the caller's frame while it waits:
/// linked into the process's list under its mutex, unlinked by whoever resumes it (the
/// transition, or `cancel`'s callback), so exactly one of them resumes or schedules it.
SUPERVISOR_PROCESS_CORE_
class ProcessCore<R, Link>::CallerWait {
 public:
  CallerWait(ProcessCore& core, Until until, std::stop_token cancel) noexcept
      : core_(&core), cancel_(std::move(cancel)) {
    node_.until = until;
  }
  CallerWait(const CallerWait&) = delete;
  CallerWait& operator=(const CallerWait&) = delete;
  ~CallerWait() = default;

  [[nodiscard]] bool await_ready() const noexcept { return core_->caller_satisfied(node_.until); }
  bool await_suspend(std::coroutine_handle<> awaiting) noexcept {
    node_.handle = awaiting;
    if (cancel_.stop_possible()) {
      // Runs at once if already requested: it then only marks the wait canceled.
      on_cancel_.emplace(cancel_, OnCancel{this});
    }
    std::lock_guard lock(core_->mutex_);
    if (node_.until == Until::begun) {
      core_->begun_waited_.store(true);  // before reading `begun_`: see `task_begins`
    }
    if (canceled_ || core_->caller_satisfied(node_.until)) {
      return false;
    }
    node_.next = core_->callers_;
    core_->callers_ = &node_;
    linked_ = true;
    return true;  // from here the caller may be resumed elsewhere: touch nothing more
  }
  [[nodiscard]] bool await_resume() const noexcept { return core_->caller_satisfied(node_.until); }

 private:
  struct OnCancel {
    CallerWait* wait;
    void operator()() const noexcept { wait->cancel(); }
  };
  void cancel() noexcept {
    std::coroutine_handle<> resume;
    {
      std::lock_guard lock(core_->mutex_);
      canceled_ = true;
      if (linked_) {
        for (CallerNode** link = &core_->callers_; *link != nullptr; link = &(*link)->next) {
          if (*link == &node_) {
            *link = node_.next;
            resume = node_.handle;
            ++core_->cancels_in_flight_;
            break;
          }
        }
      }
    }
    if (resume) {
      // Outside the lock (the executor is user code). The process is not done yet (done takes
      // every linked caller first), and its task waits in `finish_task` until this is over.
      core_->executor().schedule(resume);
      std::lock_guard lock(core_->mutex_);
      if (--core_->cancels_in_flight_ == 0) {
        core_->changed_.notify_all();  // under the lock: the task may free the record next
      }
    }
  }

  ProcessCore* core_;
  std::stop_token cancel_;
  CallerNode node_;
  bool canceled_ = false;  // under the process's mutex
  bool linked_ = false;    // under the process's mutex
  std::optional<std::stop_callback<OnCancel>> on_cancel_;
};

SUPERVISOR_PROCESS_CORE_
auto ProcessCore<R, Link>::until_started(std::stop_token cancel) noexcept
    -> CallerWait requires CoroutineRunnable<R> {
  return CallerWait(*this, Until::started, std::move(cancel));
}

SUPERVISOR_PROCESS_CORE_
auto ProcessCore<R, Link>::until_done(std::stop_token cancel) noexcept
    -> CallerWait requires CoroutineRunnable<R> {
  return CallerWait(*this, Until::done, std::move(cancel));
}

SUPERVISOR_PROCESS_CORE_
auto ProcessCore<R, Link>::until_begun() noexcept -> CallerWait requires CoroutineRunnable<R> {
  return CallerWait(*this, Until::begun, {});
}

SUPERVISOR_PROCESS_CORE_
auto ProcessCore<R, Link>::take_callers(Until reached) noexcept -> CallerNode* {
  CallerNode* woken = nullptr;
  CallerNode** link = &callers_;
  while (*link != nullptr) {
    CallerNode* node = *link;
    if (reached == Until::done || node->until == reached ||
        (reached == Until::started && node->until == Until::begun)) {
      *link = node->next;
      node->next = woken;
      woken = node;
    } else {
      link = &node->next;
    }
  }
  return woken;
}

SUPERVISOR_PROCESS_CORE_
void ProcessCore<R, Link>::resume_callers(CallerNode* woken) noexcept {
  while (woken != nullptr) {
    CallerNode* const node = woken;
    woken = node->next;  // before the schedule: the node goes with its caller's frame
    executor().schedule(node->handle);
  }
}

#undef SUPERVISOR_PROCESS_CORE_

}  // namespace supervisor::detail
