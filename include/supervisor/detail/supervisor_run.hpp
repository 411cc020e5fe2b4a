#pragma once

/// \file
/// `Supervisor::run` and what it drives: the restart passes and the shutdown. Included by
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

#include "supervisor/supervisor_class.hpp"

namespace supervisor {

template <class Key, CopyableRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
template <class Callback>
void Supervisor<Key, R, Hash, KeyEqual>::run(Cancel cancel, Callback&& callback,
                                             std::error_code& ec) {
  ec.clear();
  if (detail::works_for(this)) {
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
  std::stop_source parent;
  std::stop_callback link(cancel.token(), [&parent]() noexcept { parent.request_stop(); });

  // The supervisor's own threads, before any process: out of threads, `run` fails here.
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
        run_pass(nullptr);
        // Frees what stopped processes left in shards that no write has visited since.
        processes_.reclaim();
      },
      [this](std::exception_ptr error) noexcept {
        // Only a user's clock can throw there; the loop ends, `run` and its processes go on.
        report(ErrorSource::clock, nullptr, std::move(error));
      });

  parent_ = parent.get_token();
  run_work_ = &work;
  gate_.open();

  std::exception_ptr failure;
  try {
    // Initial pass: restore the table before the callback, but let no slow start hold it up.
    {
      // The wait is measured from the start of the pass, so a long iteration eats into it.
      const auto give_up_at = options_.clock.now() + options_.initial_wait;
      auto tracker = std::make_shared<detail::PassTracker>();
      run_pass(tracker);
      std::stop_callback cut_short(parent.get_token(),
                                   [&tracker]() noexcept { tracker->settled().request_stop(); });
      if (!tracker->settled().stop_requested()) {
        options_.clock.wait_until(give_up_at, tracker->settled().get_token());
      }
    }
    loop.begin();
    std::stop_callback stop_loop_on_cancel(parent.get_token(),
                                           [&loop]() noexcept { loop.request_stop(); });

    const std::stop_token stopping = parent.get_token();
    using Result = decltype(detail::invoke_maybe_with_token(callback, stopping));
    if constexpr (std::is_convertible_v<Result, std::error_code>) {
      ec = detail::invoke_maybe_with_token(callback, stopping);
    } else {
      detail::invoke_maybe_with_token(callback, stopping);
    }
  } catch (...) {
    failure = std::current_exception();
  }

  // Shutdown: nothing below allocates or throws, so it cannot stop half-way.
  loop.stop();
  shut_down(parent.stop_requested());
  if (deadline_timer.joinable()) {
    deadline_timer.request_stop();
    deadline_timer.join();
  }
  parent_ = {};
  run_work_ = nullptr;
  if (failure) {
    std::rethrow_exception(failure);
  }
}

template <class Key, CopyableRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
template <class Rep, class Period, class Callback>
void Supervisor<Key, R, Hash, KeyEqual>::run_until(std::stop_token stop,
                                                   std::chrono::duration<Rep, Period> grace,
                                                   Callback&& callback) {
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
  run(Cancel(force.get_token()), [&](const std::stop_token& forced) -> decltype(auto) {
    std::stop_source either;
    std::stop_callback on_stop(stop, [&either]() noexcept { either.request_stop(); });
    std::stop_callback on_force(forced, [&either]() noexcept { either.request_stop(); });
    struct BeginShutdown {
      std::stop_source& source;
      ~BeginShutdown() { source.request_stop(); }
    } begin_shutdown{shutting_down};
    return detail::invoke_maybe_with_token(callback, either.get_token());
  });
}

/// Closes the gate, stops every process that nobody else is stopping, and joins every thread.
template <class Key, CopyableRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::shut_down(bool forced) noexcept {
  gate_.close();     // Waits for the registrations in flight; no process registers after it.
  threads_.close();  // Threads that finish now exit rather than park for work that won't come.
  // Ask everyone at once, then wait once. The walk needs no lock and no memory.
  processes_.for_each_unlocked([&](const Key& /*key*/, const ManagedPtr& managed) {
    if (managed->claim(detail::Claim::shutdown)) {
      stop_claimed(*managed, forced);
    }
  });
  threads_.join_all();
  processes_.reclaim();  // The last runnables' copies, unless a `get` elsewhere still holds them.
}

template <class Key, CopyableRunnable R, class Hash, class KeyEqual>
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

// ---- passes ----------------------------------------------------------------------------------

template <class Key, CopyableRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::run_pass(
    const std::shared_ptr<detail::PassTracker>& tracker) noexcept {
  struct EndIteration {
    const std::shared_ptr<detail::PassTracker>& tracker;
    ~EndIteration() {
      if (tracker) {
        tracker->end_iteration();
      }
    }
  } end_iteration{tracker};

  std::unique_ptr<typename detail::AnyTable<Key, R>::Cursor> cursor;
  try {
    cursor = table_->iterate();
  } catch (...) {
    report(ErrorSource::iterate, nullptr, std::current_exception());
    return;
  }
  try {
    while (cursor->next()) {
      std::optional<std::pair<Key, R>> row;
      try {
        row.emplace(cursor->get());
      } catch (...) {
        report(ErrorSource::row, nullptr, std::current_exception());
        continue;
      }
      start_in_background(row->first, std::move(row->second), tracker);
    }
  } catch (...) {
    report(ErrorSource::iterate, nullptr, std::current_exception());
  }
  try {
    cursor->close();
  } catch (...) {
    report(ErrorSource::close, nullptr, std::current_exception());
  }
}

template <class Key, CopyableRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::start_in_background(
    const Key& key, R runnable, const std::shared_ptr<detail::PassTracker>& tracker) noexcept {
  std::exception_ptr failure;
  {
    Registration registration{*this};  // frees the key on failure, after the pass is released
    try {
      const std::uint64_t hash = processes_.hash_of(key);
      // Most rows of a pass already run: one lock-free probe, and nothing else.
      if (processes_.visit(hash, key, [](const ManagedPtr* found) { return found != nullptr; })) {
        return;
      }
      ManagedPtr managed;  // declared before the pass: a record not kept dies outside it
      const detail::StartGate::Pass pass(gate_);
      if (!pass) {
        return;
      }
      managed = std::make_shared<Managed>(*this, key, hash, std::move(runnable), parent_,
                                          options_.handoff_spin, run_work_, tracker);
      if (!processes_.try_emplace(hash, key, managed)) {
        return;  // It got a process since the probe.
      }
      registration.managed = std::move(managed);
      registration.managed->count_start();
      registration.keep = !launch(*registration.managed);
    } catch (...) {
      failure = std::current_exception();
    }
  }
  // Reported outside the gate: the hook may call back in.
  if (failure) {
    report(ErrorSource::start, &key, failure);
  }
}

}  // namespace supervisor
