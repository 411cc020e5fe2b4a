#pragma once

/// \file
/// `Supervisor::async_start` and `Supervisor::async_stop`: `start` and `stop` for callers that
/// are coroutines. Included by `supervisor_class.hpp`; not for direct use.

#include <exception>
#include <stop_token>
#include <system_error>
#include <utility>

#include "supervisor/supervisor_class.hpp"
#include "supervisor/task.hpp"

namespace supervisor {

// The same steps as `start_process` and `stop`, with each wait a suspension of the caller: the
// launch is `launch_process` (it never waits), the wait for the start or the end is the
// process's `CallerWait`, and a canceled wait forces the process and waits again, without a
// token, until its `run` has returned, as the blocking forms do.
template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::async_start(Key key, std::stop_token cancel)
    -> Task<std::error_code>
requires CoroutineRunnable<R> {
  std::error_code ec;
  const ManagedPtr managed = launch_process(key, ec);
  if (!managed) {
    co_return ec;
  }
  if (!co_await managed->until_started(std::move(cancel))) {
    managed->request_force();
    (void)co_await managed->until_done({});  // no token: true
    report_unheard(*managed, ErrorSource::start);
    co_return errc::canceled;
  }
  co_return managed->start_outcome();
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::async_stop(Key key, std::stop_token cancel)
    -> Task<std::error_code>
requires CoroutineRunnable<R> {
  std::error_code ec;
  const void* const caller = co_await detail::CurrentOwner{};
  const ManagedPtr managed = find_launched(key, caller, ec);
  if (!managed) {
    co_return ec;
  }
  if (options_.on_event) {
    // `stop_requested` must follow the process's `starting`, which its task sends when the
    // executor first runs it: wait for that here, suspended, not blocked (on a one-thread
    // executor the blocking wait would hold the very thread the task needs).
    (void)co_await managed->until_begun();
  }
  if (!claim_stop(*managed, ec)) {
    co_return ec;
  }
  if (!co_await managed->until_done(std::move(cancel))) {
    if (options_.on_event) {
      emit_foreign(*managed, EventKind::forced, now());  // before the process's last event
    }
    managed->request_force();
    (void)co_await managed->until_done({});  // no token: true
    report_unheard(*managed, ErrorSource::exit);
    co_return errc::canceled;
  }
  if (std::exception_ptr failure = managed->error()) {
    std::rethrow_exception(std::move(failure));
  }
  co_return std::error_code{};
}

}  // namespace supervisor
