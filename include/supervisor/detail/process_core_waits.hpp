#pragma once

/// \file
/// The state changes of `ProcessCore` (see process_core.hpp): entering `starting`, a failed
/// launch, the exit path, and the stop request with the blocking waits it ends: a caller's
/// wait for the start or the end of a process, and a thread runnable's `ready`. Each wait spins
/// for at most the hand-off budget, then sleeps on the process's condition variable.

#include <coroutine>
#include <exception>
#include <memory>
#include <mutex>
#include <stop_token>
#include <system_error>

#include "supervisor/cancel.hpp"
#include "supervisor/detail/process_core.hpp"
#include "supervisor/detail/spin.hpp"

namespace supervisor::detail {

#define SUPERVISOR_PROCESS_CORE_      \
  template <class R, ParentLink Link> \
  requires AnyKindRunnable<R>

SUPERVISOR_PROCESS_CORE_
bool ProcessCore<R, Link>::enter_starting() {
  {
    std::lock_guard lock(mutex_);
    if (state_ != ProcessState::initial) {
      return false;
    }
    set_state(ProcessState::starting);
  }
  // Only now: force belongs to the run that starts (a `by_owner` walk's is that run's too).
  if constexpr (Link == ParentLink::per_process) {
    parent_link_.emplace(parent_, RequestForce{this});
  } else if (owner_forces_all()) {
    force_now();  // the owner's walk may have missed this record
  }
  return true;
}

SUPERVISOR_PROCESS_CORE_
void ProcessCore<R, Link>::mark_ready(std::coroutine_handle<>* hand_over) {
  before_ready();  // before anyone can see it ready
  bool first = false;
  CallerNode* woken = nullptr;
  {
    std::lock_guard lock(mutex_);
    first = !ready_;
    if (state_ == ProcessState::starting) {
      set_state(ProcessState::running);  // first: whoever sees `ready_` may read it unlocked
    }
    ready_.store(true, std::memory_order_release);
    woken = take_callers(Until::started);
  }
  changed_.notify_all();
  if (hand_over != nullptr && woken != nullptr) {
    *hand_over = woken->handle;  // not resumed yet: its node (in its frame) is still there
    woken = woken->next;
  }
  resume_callers(woken);
  if (first) {
    on_ready();
  }
}

SUPERVISOR_PROCESS_CORE_
void ProcessCore<R, Link>::fail_launch() noexcept {
  unlink_parent();  // as in `finish_run`
  CallerNode* woken = nullptr;
  {
    std::lock_guard lock(mutex_);
    set_state(ProcessState::stopped);
    error_ = std::current_exception();
    done_.store(true, std::memory_order_release);
    woken = take_callers(Until::done);
  }
  changed_.notify_all();
  resume_callers(woken);
}

SUPERVISOR_PROCESS_CORE_
void ProcessCore<R, Link>::finish_run(const std::exception_ptr& failure,
                                      std::coroutine_handle<>* hand_over) noexcept {
  // First, outside every lock: a force request in flight through this record's own link ends
  // before the record may go. (`by_owner`: the owner's walk holds a reference while it forces;
  // callbacks on the force token that it runs may still be running when this process is done.)
  unlink_parent();
  bool became_ready = false;
  // A stop request has usually made it `stopped` already, and without a failure there is
  // nothing else to write: no lock then. (`stopped` is final, and `state_view_` follows
  // `state_`, so what it says holds.)
  if (failure || state_view_.load(std::memory_order_acquire) != ProcessState::stopped) {
    std::lock_guard lock(mutex_);
    set_state(ProcessState::stopped);
    error_ = failure;
    became_ready = ready_;
  } else {
    became_ready = ready_.load();
  }
  force_.request_stop();  // Releases anything still tied to the force signal.
  on_exit(became_ready, failure);
  CallerNode* woken = nullptr;
  {
    std::lock_guard lock(mutex_);
    done_.store(true, std::memory_order_release);
    woken = take_callers(Until::done);
    // Every caller is unlinked now, so no cancel can begin scheduling one any more: if none is
    // under way, `finish_task` need not wait for one.
    cancels_at_done_ = cancels_in_flight_ != 0;
  }
  changed_.notify_all();  // Safe after unlocking: this thread holds a reference to *this.
  if (hand_over != nullptr && woken != nullptr) {
    *hand_over = woken->handle;  // not resumed yet: its node (in its frame) is still there
    woken = woken->next;
  }
  resume_callers(woken);
}

SUPERVISOR_PROCESS_CORE_
std::error_code ProcessCore<R, Link>::request_stop(bool forced, bool* was_initial,
                                                   std::coroutine_handle<>* run_here) {
  bool force = forced;
  std::stop_source* graceful_token = nullptr;  // `Ready::stop_token`'s, if one was made
  CallerNode* woken = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (was_initial != nullptr) {
      *was_initial = state_ == ProcessState::initial;
    }
    switch (state_) {
      case ProcessState::initial:
        set_state(ProcessState::stopped);  // before `done_`, as everywhere: see `mark_ready`
        done_.store(true, std::memory_order_release);
        woken = take_callers(Until::done);
        break;
      case ProcessState::starting:
        force = true;
        break;
      case ProcessState::running:
        if (forced) {
          break;  // Force alone: a graceful flag seen first would start a graceful path.
        }
        graceful_ = true;
        graceful_token = stopping_ ? &stopping_->source : nullptr;
        break;
      case ProcessState::stopped:
        return errc::invalid_state;
    }
    set_state(ProcessState::stopped);
  }
  changed_.notify_all();  // After unlocking: the woken thread need not block on the mutex.
  resume_callers(woken);
  if (graceful_token != nullptr) {
    graceful_token->request_stop();  // Outside the lock: it runs the runnable's callbacks.
  }
  if (is_coroutine && !force) {
    // A coroutine parked on `co_await ready` (`force_now` wakes it for force). The executor is
    // asked for only once one is found parked: it is valid only while the process is unsettled.
    if (run_here == nullptr) {
      wake_ready();
    } else if (const std::coroutine_handle<> parked = ready_waiter_.take()) {
      if (executor().running_in_this_thread()) {
        *run_here = parked;
      } else {
        executor().schedule(parked);
      }
    }
  }
  if (force) {
    force_now();
  }
  return {};
}

SUPERVISOR_PROCESS_CORE_
std::error_code ProcessCore<R, Link>::await_start(const Cancel& cancel) {
  spin_until([&] { return ready_.load() || done_.load() || cancel.token().stop_requested(); },
             handoff_spin());
  if (std::error_code ec = wait(changed_, mutex_, cancel, [&] { return ready_ || done_; })) {
    force_now();
    wait_done_forever();
    return ec;
  }
  return start_outcome();
}

SUPERVISOR_PROCESS_CORE_
std::error_code ProcessCore<R, Link>::await_done(const Cancel& cancel) {
  spin_until([&] { return done_.load() || cancel.token().stop_requested(); }, handoff_spin());
  std::error_code ec = wait(changed_, mutex_, cancel, [&] { return done_.load(); });
  if (ec) {
    force_now();
    wait_done_forever();
  }
  return ec;
}

SUPERVISOR_PROCESS_CORE_
bool ProcessCore<R, Link>::wait_done(const Cancel& cancel) {
  spin_until([&] { return done_.load() || cancel.token().stop_requested(); }, handoff_spin());
  return !wait(changed_, mutex_, cancel, [&] { return done_.load(); });
}

SUPERVISOR_PROCESS_CORE_
void ProcessCore<R, Link>::wait_done_forever() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return done_.load(); });
}

SUPERVISOR_PROCESS_CORE_
void ProcessCore<R, Link>::signal_ready_and_wait(const std::stop_token& early) {
  mark_ready();
  // A stop that follows readiness closely (a start then a stop) is caught without sleeping;
  // a quarter of the budget, since every process pays it once whether or not a stop comes.
  const std::stop_token force = force_.get_token();
  auto released = [&] {
    return graceful_.load() || force.stop_requested() || early.stop_requested();
  };
  if (spin_until(released, handoff_spin() / 4)) {
    return;
  }
  // Registered before taking the lock: a callback on an already-requested token runs at once.
  auto notify = [this] {
    if constexpr (is_coroutine) {
      changed_.wake_all();  // a token's request is not sequentially consistent: see ParkedSignal
    } else {
      std::lock_guard lock(mutex_);
      changed_.notify_all();
    }
  };
  std::stop_callback wake_on_force(force, notify);
  std::stop_callback wake_on_early(early, notify);
  std::unique_lock lock(mutex_);
  changed_.wait(lock, released);
}

// `Ready::stop_token`'s source, made on first request. The force token first, outside the lock:
// a lazy one is made there, and may throw before anything here has changed.
SUPERVISOR_PROCESS_CORE_
std::stop_token ProcessCore<R, Link>::stopping() {
  const std::stop_token force = force_.get_token();
  std::lock_guard lock(mutex_);
  if (!stopping_) {
    stopping_ = std::make_unique<Stopping>();
    if (graceful_ || force_.stop_requested()) {
      stopping_->source.request_stop();
    } else {
      stopping_->on_force.emplace(force, RequestStopOf{&stopping_->source});
    }
  }
  return stopping_->source.get_token();
}

#undef SUPERVISOR_PROCESS_CORE_

}  // namespace supervisor::detail
