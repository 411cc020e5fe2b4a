#pragma once

/// \file
/// The members of `AsyncCalls` (async_calls.hpp): `start`, `stop` and `run_until` for callers
/// that are coroutines. Included by `supervisor_class.hpp`; not for direct use.

#include <chrono>
#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>

#include "supervisor/async_calls.hpp"
#include "supervisor/detail/hand_over.hpp"
#include "supervisor/detail/run_on_thread.hpp"
#include "supervisor/detail/work_context.hpp"
#include "supervisor/supervisor_class.hpp"
#include "supervisor/task.hpp"

namespace supervisor {

// The awaiter of a `Call`. Without a token to watch (or, stopping, an event hook to wait for)
// it does `launch_process` (or the stop's lookup and claim) in `await_suspend`, then parks the
// caller in a `CallerWait` of its own, in the caller's frame; else it runs the call's coroutine
// (`start_task`, `stop_task`), whose canceled wait forces the process and waits again until its
// `run` has returned.
//
// On a thread of the supervisor's executor the caller, once parked, resumes the process it has
// just launched or woken (the task's first step, or its return from `co_await ready`) instead of
// scheduling it, and the process resumes the caller in turn once ready or done
// (`hand_over_callers`). The pool would run it next on this thread anyway (the worker's own
// slot, thread_pool.hpp), and this saves the queue's two locked instructions each way; on an
// executor that queues in order it runs ahead of what is queued, for at most
// `max_run_here_in_a_row` processes before the caller suspends to the executor (hand_over.hpp).
template <class Derived, class Key, class R>
class AsyncCalls<Derived, Key, R>::Call::Awaiter {
 public:
  explicit Awaiter(Call&& call) noexcept(std::is_nothrow_move_constructible_v<Key>)
      : sup_(call.sup_),
        stopping_(call.stopping_),
        key_(std::move(call.key_)),
        cancel_(std::move(call.cancel_)) {
    call.sup_ = nullptr;  // only once the key has moved: a move that throws leaves the call whole
  }
  Awaiter(const Awaiter&) = delete;
  Awaiter& operator=(const Awaiter&) = delete;
  ~Awaiter() = default;

  /// An empty call (awaited already, or moved from) does not suspend: `await_resume` throws.
  [[nodiscard]] bool await_ready() const noexcept { return sup_ == nullptr; }

  template <class Promise>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> caller) noexcept {
    std::coroutine_handle<> process;  // to resume here, unscheduled: see above
    unsigned& in_a_row = detail::run_here_in_a_row();
    std::coroutine_handle<>* const run_here =
        in_a_row < detail::max_run_here_in_a_row ? &process : nullptr;
    try {
      // Where the compiler may keep a returned handle in the awaiting frame (hand_over.hpp),
      // the caller parks only inside the call's coroutine: the handle returned below once it
      // has parked would be written to a frame that another thread may have freed.
      if (!detail::hand_over_callers_for<Promise> || cancel_.stop_possible() ||
          (stopping_ && sup_->options_.on_event)) {
        Task<std::error_code> task = stopping_ ? sup_->stop_task(std::move(key_), cancel_)
                                               : sup_->start_task(std::move(key_), cancel_);
        return slow_.emplace(std::move(task).operator co_await()).await_suspend(caller);
      }
      if (stopping_) {
        const detail::WorkContext* owner = nullptr;
        if constexpr (std::is_base_of_v<detail::TaskPromiseBase, Promise>) {
          owner = caller.promise().owner();
        }
        managed_ = sup_->find_launched(key_, owner, ec_);
        if (managed_ && !sup_->claim_stop(*managed_, ec_, run_here)) {
          managed_.reset();
        }
      } else {
        managed_ = sup_->launch_process(key_, ec_, run_here);
      }
    } catch (...) {
      failure_ = std::current_exception();
      return caller;
    }
    if (!managed_) {
      return caller;  // goes on at once, with `ec_`
    }
    using Until = typename Managed::Until;
    auto& wait =
        wait_.emplace(*managed_, stopping_ ? Until::done : Until::started, std::stop_token{});
    // From a true return on the caller may be resumed elsewhere: touch nothing of this.
    if (wait.await_suspend(caller)) {
      if (process) {
        ++in_a_row;
        return process;
      }
      in_a_row = 0;  // the caller suspends to the executor: the nested calls return
      return std::noop_coroutine();
    }
    // Not reached with a process in hand (it can be neither ready nor done before it resumes,
    // and the wait has no token), but were it, the process would still run.
    if (process) {
      sup_->coroutines_.executor().schedule(process);
    }
    return caller;
  }

  std::error_code await_resume() {
    if (slow_) {
      return slow_->await_resume();
    }
    if (failure_) {
      std::rethrow_exception(failure_);
    }
    if (!managed_) {
      if (sup_ == nullptr) {
        throw std::logic_error("supervisor::Supervisor: an async call awaited twice, or empty");
      }
      return ec_;
    }
    // Without a token the wait ends only with its condition: ready or done, or done.
    if (!stopping_) {
      return managed_->start_outcome();
    }
    if (std::exception_ptr failure = managed_->error()) {
      std::rethrow_exception(std::move(failure));
    }
    return {};
  }

 private:
  using Managed = typename Derived::Managed;

  Derived* sup_;
  bool stopping_;
  Key key_;
  std::stop_token cancel_;
  std::shared_ptr<Managed> managed_;
  std::error_code ec_;
  std::exception_ptr failure_;
  std::optional<typename Managed::CallerWait> wait_;
  std::optional<typename Task<std::error_code>::Awaiter> slow_;
};

template <class Derived, class Key, class R>
auto AsyncCalls<Derived, Key, R>::Call::operator co_await() && noexcept(
    std::is_nothrow_move_constructible_v<Key>) -> Awaiter {
  return Awaiter(std::move(*this));
}

template <class Derived, class Key, class R>
auto AsyncCalls<Derived, Key, R>::async_start(Key key, std::stop_token cancel)
    -> Call requires CoroutineRunnable<R> {
  return Call(self(), false, std::move(key), std::move(cancel));
}

template <class Derived, class Key, class R>
auto AsyncCalls<Derived, Key, R>::async_stop(Key key, std::stop_token cancel)
    -> Call requires CoroutineRunnable<R> {
  return Call(self(), true, std::move(key), std::move(cancel));
}

// The same steps as `start_process` and `stop`, with each wait a suspension of the caller: the
// launch is `launch_process` (it never waits), the wait for the start or the end is the
// process's `CallerWait`, and a canceled wait forces the process and waits again, without a
// token, until its `run` has returned, as the blocking forms do.
template <class Derived, class Key, class R>
auto AsyncCalls<Derived, Key, R>::start_task(Key key, std::stop_token cancel)
    -> Task<std::error_code> {
  Derived& sup = self();
  std::error_code ec;
  const auto managed = sup.launch_process(key, ec);
  if (!managed) {
    co_return ec;
  }
  if (!co_await managed->until_started(std::move(cancel))) {
    managed->request_force();
    (void)co_await managed->until_done({});  // no token: true
    sup.report_unheard(*managed, ErrorSource::start);
    co_return errc::canceled;
  }
  co_return managed->start_outcome();
}

template <class Derived, class Key, class R>
auto AsyncCalls<Derived, Key, R>::stop_task(Key key, std::stop_token cancel)
    -> Task<std::error_code> {
  Derived& sup = self();
  std::error_code ec;
  const detail::WorkContext* const caller = co_await detail::CurrentOwner{};
  const auto managed = sup.find_launched(key, caller, ec);
  if (!managed) {
    co_return ec;
  }
  if (sup.options_.on_event) {
    // `stop_requested` must follow the process's `starting`, which its task sends when the
    // executor first runs it: wait for that here, suspended, not blocked (on a one-thread
    // executor the blocking wait would hold the very thread the task needs).
    (void)co_await managed->until_begun();
  }
  if (!sup.claim_stop(*managed, ec)) {
    co_return ec;
  }
  if (!co_await managed->until_done(std::move(cancel))) {
    if (sup.options_.on_event) {
      sup.emit_foreign(*managed, EventKind::forced, sup.now());  // before the process's last event
    }
    managed->request_force();
    (void)co_await managed->until_done({});  // no token: true
    sup.report_unheard(*managed, ErrorSource::exit);
    co_return errc::canceled;
  }
  if (std::exception_ptr failure = managed->error()) {
    std::rethrow_exception(std::move(failure));
  }
  co_return std::error_code{};
}

template <class Derived, class Key, class R>
template <class Rep, class Period>
Task<std::error_code> AsyncCalls<Derived, Key, R>::async_run(
    std::stop_token stop, std::chrono::duration<Rep, Period> grace, ExecutorRef resume_on) {
  Derived& sup = self();
  // A process of this supervisor (its task, or code on its thread) would wait for itself. (The
  // run, which works for the caller, would refuse it too: this refuses before making a thread.)
  const detail::WorkContext* const caller = co_await detail::CurrentOwner{};
  if (detail::chain_works_for(caller, &sup) || detail::works_for(&sup)) {
    co_return std::make_error_code(std::errc::resource_deadlock_would_occur);
  }
  const ExecutorRef executor = resume_on ? resume_on : sup.options_.executor;
  if (!executor) {
    throw std::invalid_argument(
        "supervisor::Supervisor::async_run: no executor to resume the caller on");
  }
  // The run works for the caller, as a blocking `run_until` on the caller's thread would: a
  // process of the run that calls back into what the caller is part of is refused, not hung.
  const detail::WorkContext* const work = caller != nullptr ? caller : detail::current_work();
  co_return co_await detail::RunOnThread(executor, work, [&sup, &stop, grace](std::error_code& ec) {
    sup.run_until(stop, grace, &detail::wait_for_stop, ec);
  });
}

}  // namespace supervisor
