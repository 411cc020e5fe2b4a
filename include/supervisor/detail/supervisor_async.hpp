#pragma once

/// \file
/// The members of `AsyncCalls` (async_calls.hpp): `start`, `stop` and `run_until` for callers
/// that are coroutines. Included by `supervisor_class.hpp`; not for direct use.

#include <chrono>
#include <exception>
#include <stdexcept>
#include <stop_token>
#include <system_error>
#include <utility>

#include "supervisor/async_calls.hpp"
#include "supervisor/detail/run_on_thread.hpp"
#include "supervisor/detail/work_context.hpp"
#include "supervisor/supervisor_class.hpp"
#include "supervisor/task.hpp"

namespace supervisor {

// The same steps as `start_process` and `stop`, with each wait a suspension of the caller: the
// launch is `launch_process` (it never waits), the wait for the start or the end is the
// process's `CallerWait`, and a canceled wait forces the process and waits again, without a
// token, until its `run` has returned, as the blocking forms do.
template <class Derived, class Key, class R>
auto AsyncCalls<Derived, Key, R>::async_start(Key key, std::stop_token cancel)
    -> Task<std::error_code>
requires CoroutineRunnable<R> {
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
auto AsyncCalls<Derived, Key, R>::async_stop(Key key, std::stop_token cancel)
    -> Task<std::error_code>
requires CoroutineRunnable<R> {
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
