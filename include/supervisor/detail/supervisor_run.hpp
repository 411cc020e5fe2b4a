#pragma once

/// \file
/// `Supervisor::run` and what it drives: the initial pass, the restart loop and the shutdown (the
/// passes themselves are in `supervisor_pass.hpp`). Included by
/// `supervisor_class.hpp`; not for direct use.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "supervisor/supervisor_class.hpp"

namespace supervisor {

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
template <class Callback>
void Supervisor<Key, R, Hash, KeyEqual>::run(Cancel cancel, Callback&& callback,
                                             std::error_code& ec) {
  ec.clear();
  if (detail::works_for(this) || would_block_executor()) {
    ec = std::make_error_code(std::errc::resource_deadlock_would_occur);
    return;
  }
  if ((ec = run_lock_.acquire(cancel))) {
    return;
  }
  struct Release {
    detail::RunLock& lock;
    ~Release() { lock.release(); }
  } release{run_lock_};

  // From here this thread, and through it every thread and process of this run, works for
  // `run`: a call there that would wait for `run` fails instead.
  const detail::WorkContext work{this, detail::current_work()};
  const detail::WorkScope working(&work);
  // Shutdown's walk over the processes pins the epoch domain: take this thread's record now, so
  // that the walk cannot fail for memory later.
  { const detail::EpochDomain::Pin secure_record; }

  // The parent of every process: requested when `cancel`'s token is, or its deadline passes.
  // Force follows it through one callback that walks the map, not one per process
  // (`ParentLink::by_owner`). The walk runs on whichever thread requests the stop, so it pins
  // with a record reserved here, where running out of memory can still fail `run`.
  detail::EpochDomain::Spare force_walk_record;
  std::stop_source parent;
  forcing_all_.store(false);
  const std::stop_callback force_every_process(
      parent.get_token(), [this, &force_walk_record]() noexcept {
        // A process entering `starting` reads this after its record is in the map, and the map
        // publishes and reads with sequentially consistent stores and loads (as here): either
        // this walk finds the record, or the process sees the flag (`owner_forces_all`).
        forcing_all_.store(true);
        const detail::EpochDomain::Pin pin(force_walk_record);
        processes_.for_each_unlocked(
            [](const Key& /*key*/, const ManagedPtr& managed) { managed->request_force(); });
      });
  std::stop_callback link(cancel.token(), [&parent]() noexcept { parent.request_stop(); });

  // The supervisor's own threads, before any process: out of threads, `run` fails here.
  if constexpr (Managed::is_coroutine) {
    coroutines_.open();
  }
  struct CloseExecutor {  // after the shutdown below: every coroutine process has settled
    detail::CoroutineHost& host;
    ~CloseExecutor() { host.close(); }
  } close_executor{coroutines_};
  std::jthread deadline_timer;
  if (cancel.has_deadline()) {
    deadline_timer = detail::start_jthread(
        [&parent, deadline = cancel.deadline()](const std::stop_token& over) noexcept {
          bool passed = true;
          try {
            passed = SteadyClock{}.wait_until(deadline, over);
          } catch (...) {  // NOLINT(bugprone-empty-catch): cannot wait, so act as if passed.
          }
          if (passed && !over.stop_requested()) {
            parent.request_stop();
          }
        });
  }
  detail::RestartLoop loop(
      options_.clock, options_.restart_interval, &work,
      [this]() noexcept {
        run_passes_coalesced();
        // Frees what stopped processes left in shards that no write has visited since.
        processes_.reclaim();
      },
      [this]() noexcept { return next_retry_due(); },
      [this](std::exception_ptr error, bool /*loop_ended*/) noexcept {
        // A user's clock threw (the loop ends), or a wake-up could not be armed (that wait
        // lasts its interval). `run` and its processes go on.
        report(ErrorSource::clock, nullptr, std::move(error));
      });

  // The callback's token: requested when `run` is canceled, or when it escalates.
  std::stop_source callback_stop;
  std::stop_callback stop_callback_on_cancel(
      parent.get_token(), [&callback_stop]() noexcept { callback_stop.request_stop(); });
  // Requested when the last process is gone during the shutdown (its deadline's wait ends).
  std::stop_source drained;

  parent_ = parent.get_token();
  run_work_ = &work;
  drained_ = &drained;
  escalated_.store(false);
  {
    const std::lock_guard lock(escalation_mutex_);
    escalation_failures_ = 0;
  }
  shutting_down_.store(false);
  callback_stop_.store(&callback_stop);
  loop_.store(&loop);
  pacer_.open();
  // The initial pass counts as a pass running: a `reconcile` meanwhile asks for one more, which
  // the loop runs at once. Ended by its destructor whatever happens before the pass returns.
  struct InitialPass {
    Supervisor& self;
    detail::RestartLoop& loop;
    bool running = true;
    InitialPass(Supervisor& s, detail::RestartLoop& l) noexcept : self(s), loop(l) {
      self.pass_running_.store(true);
    }
    InitialPass(const InitialPass&) = delete;
    InitialPass& operator=(const InitialPass&) = delete;
    void end() noexcept {
      if (std::exchange(running, false)) {
        self.pass_running_.store(false);
        // Cut short for want of a start slot, or a `reconcile` came meanwhile.
        if (self.pass_pending_.load()) {
          loop.request_pass();
        }
      }
    }
    ~InitialPass() { end(); }
  } initial_pass(*this, loop);
  gate_.open();
  reconcile_calls_.open();

  std::exception_ptr failure;
  // Outlives the shutdown below: the initial pass's processes count their starts in it through a
  // plain pointer, and a start may finish long after the wait for it gave up.
  std::shared_ptr<detail::PassTracker> tracker;
  try {
    // Initial pass: restore the table before the callback, but let no slow start hold it up.
    {
      // The wait is measured from the start of the pass, so a long iteration eats into it.
      const auto give_up_at = options_.clock.now() + options_.initial_wait;
      tracker = std::make_shared<detail::PassTracker>();
      if (run_pass(tracker) == PassEnd::out_of_slots) {
        pass_pending_.store(true);
      }
      initial_pass.end();
      // Cut short by a cancel, or by an escalation (whose token is the callback's).
      std::stop_callback cut_short(callback_stop.get_token(),
                                   [&tracker]() noexcept { tracker->settled().request_stop(); });
      if (!tracker->settled().stop_requested()) {
        options_.clock.wait_until(give_up_at, tracker->settled().get_token());
      }
    }
    loop.begin();
    std::stop_callback stop_loop_on_cancel(parent.get_token(),
                                           [&loop]() noexcept { loop.request_stop(); });

    const std::stop_token stopping = callback_stop.get_token();
    using Result = decltype(detail::invoke_maybe_with_token(callback, stopping));
    if constexpr (std::is_convertible_v<Result, std::error_code>) {
      ec = detail::invoke_maybe_with_token(callback, stopping);
    } else {
      detail::invoke_maybe_with_token(callback, stopping);
    }
  } catch (...) {
    failure = std::current_exception();
  }

  // Shutdown: nothing below allocates or throws, so it cannot stop half-way. First, nothing
  // more counts for the policy, and a loop pass waiting for a start slot gives up (the slots
  // are held by starts that only the shutdown below can end).
  reconcile_calls_.close();
  shutting_down_.store(true);
  pacer_.close();
  loop.stop();
  loop_.store(nullptr);
  // A `reconcile` admitted before the close ends its pass (its starts no longer wait for a
  // slot) before the shutdown: no pass of this run outlives it, or overlaps the next run's.
  reconcile_calls_.wait_empty();
  shut_down(parent.stop_requested());
  if (deadline_timer.joinable()) {
    deadline_timer.request_stop();
    deadline_timer.join();
  }
  callback_stop_.store(nullptr);
  drained_ = nullptr;
  parent_ = {};
  run_work_ = nullptr;
  if (failure) {
    std::rethrow_exception(failure);
  }
  if (!ec && escalated_.load()) {
    ec = errc::escalated;
  }
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
template <class Rep, class Period, class Callback>
void Supervisor<Key, R, Hash, KeyEqual>::run_until(std::stop_token stop,
                                                   std::chrono::duration<Rep, Period> grace,
                                                   Callback&& callback) {
  std::error_code ec;
  run_until(std::move(stop), grace, std::forward<Callback>(callback), ec);
  detail::throw_if(ec, "supervisor::Supervisor::run_until");
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
template <class Rep, class Period, class Callback>
void Supervisor<Key, R, Hash, KeyEqual>::run_until(std::stop_token stop,
                                                   std::chrono::duration<Rep, Period> grace,
                                                   Callback&& callback, std::error_code& ec) {
  std::stop_source force;
  std::stop_source shutting_down;  // requested when the callback returns, or `run_until` ends
  // Counts the grace period once the shutdown begins. Made before `run` starts anything.
  std::jthread grace_timer =
      detail::start_jthread([&force, &shutting_down, grace](const std::stop_token& over) noexcept {
        try {
          std::stop_callback ending(over,
                                    [&shutting_down]() noexcept { shutting_down.request_stop(); });
          std::mutex mutex;
          std::condition_variable_any wake;
          std::unique_lock lock(mutex);
          wake.wait(lock, shutting_down.get_token(), [] { return false; });
          if (!over.stop_requested()) {
            // A grace of "for ever" (`hours::max()`) must not overflow `now() + grace`.
            const auto capped =
                std::min<std::chrono::duration<double>>(grace, std::chrono::hours(24 * 365 * 100));
            (void)wake.wait_for(lock, over, capped, [&] { return over.stop_requested(); });
          }
          if (!over.stop_requested()) {  // The grace period is over, and `run` still runs.
            force.request_stop();
          }
        } catch (...) {  // A wait that cannot be made: force now rather than never.
          force.request_stop();
        }
      });
  run(
      Cancel(force.get_token()),
      [&](const std::stop_token& forced) -> decltype(auto) {
        std::stop_source either;
        std::stop_callback on_stop(stop, [&either]() noexcept { either.request_stop(); });
        std::stop_callback on_force(forced, [&either]() noexcept { either.request_stop(); });
        struct BeginShutdown {
          std::stop_source& source;
          ~BeginShutdown() { source.request_stop(); }
        } begin_shutdown{shutting_down};
        return detail::invoke_maybe_with_token(callback, either.get_token());
      },
      ec);
}

/// Closes the gate, stops every process that nobody else is stopping, forces what has not
/// stopped by `Options::shutdown_timeout`, and joins every thread. Allocates nothing unless a
/// process had to be forced (then the report's list may, and is marked incomplete if it can't).
template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::shut_down(bool forced) noexcept {
  pacer_.close();    // Passes waiting for a start slot give up.
  gate_.close();     // Waits for the registrations in flight; no process registers after it.
  threads_.close();  // Threads that finish now exit rather than park for work that won't come.
  const time_point began = now();
  shutting_down_.store(true);
  ShutdownReport<Key> summary;
  // Ask everyone at once, then wait once. The walk needs no lock and no memory.
  processes_.for_each_unlocked([&](const Key& /*key*/, const ManagedPtr& managed) {
    if (managed->claim(detail::Claim::shutdown)) {
      if (managed->launched()) {
        ++summary.stopped;
        mark_stop_requested(*managed);
      }
      stop_claimed(*managed, forced);
    }
  });
  std::vector<ManagedPtr> stragglers;
  time_point forcing_began = began;  // each straggler still ran then
  const auto timeout = options_.shutdown_timeout;
  if (!forced && timeout != std::chrono::steady_clock::duration::max() && live_.load() != 0) {
    bool passed = true;
    try {
      const time_point deadline =
          began + std::min(timeout, time_point::max() - began);  // no overflow
      passed = options_.clock.wait_until(deadline, drained_->get_token());
    } catch (...) {  // A clock that cannot wait: force now rather than never.
    }
    if (passed && live_.load() != 0) {
      forcing_began = now();
      processes_.for_each_unlocked([&](const Key& /*key*/, const ManagedPtr& managed) {
        if (!managed->launched() || managed->done() || Managed::time_of(managed->exited_at)) {
          return;  // never ran, or its runnable has returned already
        }
        emit_foreign(*managed, EventKind::forced, now());
        managed->request_force();
        ++summary.forced_count;
        try {
          stragglers.push_back(managed);
        } catch (...) {
          summary.incomplete = true;
        }
      });
    }
  }
  // Unbounded on purpose: every record points at `run`'s pass tracker and at `*this`, so none
  // may be left running once `run` returns (no detach, no timeout here).
  threads_.join_all();
  coroutines_.wait_settled();  // coroutine processes have no thread to join
  processes_.reclaim();  // The last runnables' copies, unless a `get` elsewhere still holds them.
  summary.took = now() - began;
  if (!options_.on_shutdown) {
    return;
  }
  try {
    summary.forced.reserve(stragglers.size());
    for (const ManagedPtr& managed : stragglers) {
      // Its exit may be a stamp (`stamp`), up to the clock's coarse lag early; it ran until
      // the forcing began at least.
      const time_point exited = Managed::time_of(managed->exited_at).value_or(began);
      summary.forced.push_back(
          Straggler<Key>{managed->key(), std::max(exited, forcing_began) - began});
    }
  } catch (...) {
    summary.incomplete = true;
  }
  try {
    options_.on_shutdown(summary);
  } catch (...) {
    try {
      std::clog << "supervisor: the shutdown hook threw: " << describe(std::current_exception())
                << '\n';
    } catch (...) {  // NOLINT(bugprone-empty-catch): nowhere left to report to.
    }
  }
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::report(ErrorSource source, const Key* key,
                                                std::exception_ptr error) noexcept {
  if (!options_.on_error) {
    return;
  }
  try {
    options_.on_error(ErrorReport<Key>{source, key, std::move(error)});
  } catch (...) {
    try {
      std::clog << "supervisor: the error hook threw: " << describe(std::current_exception())
                << '\n';
    } catch (...) {  // NOLINT(bugprone-empty-catch): nowhere left to report to.
    }
  }
}

}  // namespace supervisor
