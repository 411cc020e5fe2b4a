#pragma once

/// \file
/// The operations layer of `Supervisor`: the hooks a process's record calls (ready, exiting,
/// gone), events, restart policy and escalation. Pruning, `reconcile`, `reset` and `snapshot` are
/// in `supervisor_reconcile.hpp`.
/// Included by `supervisor_class.hpp`; not for direct use.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>

#include "supervisor/supervisor_class.hpp"

namespace supervisor {

#define SUPERVISOR_MEMBER_                                               \
  template <class Key, SupervisedRunnable R, class Hash, class KeyEqual> \
  requires std::copy_constructible<Key>

// ---- time and events ---------------------------------------------------------------------------

SUPERVISOR_MEMBER_
auto Supervisor<Key, R, Hash, KeyEqual>::now() const noexcept -> time_point {
  try {
    return options_.clock.now();
  } catch (...) {  // A user's clock that throws: events and history get the real time instead.
    return std::chrono::steady_clock::now();
  }
}

// The moments of a process that only `snapshot` (`KeyStatus::since`) and the restart policy's
// `reset_after` read, four per start+stop cycle, take the clock's coarse reading: a precise one
// reads the time-stamp counter, which on a virtual machine costs 40 to 60 ns, a seventh of a
// coroutine process's cycle on one thread. It lags by a few milliseconds on Linux (about two
// ticks) and never leads, so a `since` is never after the moment; `reset_after` measures from
// a `ready_at` with a reading of the same kind. An event hook gets every time precise.
SUPERVISOR_MEMBER_
auto Supervisor<Key, R, Hash, KeyEqual>::stamp() const noexcept -> time_point {
  if (options_.on_event) {
    return now();
  }
  try {
    return options_.clock.coarse_now();
  } catch (...) {  // A user's clock that throws: as in `now()`.
    return std::chrono::steady_clock::now();
  }
}

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::emit(const Event<Key>& event) noexcept {
  try {
    options_.on_event(event);
  } catch (...) {
    try {
      std::clog << "supervisor: the event hook threw: " << describe(std::current_exception())
                << '\n';
    } catch (...) {  // NOLINT(bugprone-empty-catch): nowhere left to report to.
    }
  }
}

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::emit_foreign(Managed& managed, EventKind kind,
                                                      time_point at) noexcept {
  if (!options_.on_event || !managed.begin_foreign_event()) {
    return;
  }
  Event<Key> event{kind, managed.key(), at, {}, {}, 0, {}};
  if (const auto requested = Managed::time_of(managed.stop_requested_at)) {
    event.elapsed = at - *requested;
  }
  emit(event);
  managed.end_foreign_event();
}

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::mark_stop_requested(Managed& managed) noexcept {
  const time_point at = stamp();
  managed.set_time(managed.stop_requested_at, at);
  emit_foreign(managed, EventKind::stop_requested, at);
}

// ---- hooks of the process records ------------------------------------------------------------

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::process_starting(Managed& managed) noexcept {
  if (options_.on_event) {
    emit(Event<Key>{EventKind::starting,
                    managed.key(),
                    Managed::time_of(managed.started_at).value_or(now()),
                    {},
                    {},
                    0,
                    {}});
    managed.starting_delivered();  // other threads' events about it may go now
  }
}

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::process_becoming_ready(Managed& managed) noexcept {
  if (!Managed::time_of(managed.ready_at)) {  // only the runnable's thread writes it
    managed.set_time(managed.ready_at, stamp());
  }
}

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::process_ready(Managed& managed) noexcept {
  if (options_.on_event) {
    const time_point at = Managed::time_of(managed.ready_at).value_or(now());
    Event<Key> event{EventKind::ready, managed.key(), at, {}, {}, 0, {}};
    if (const auto started = Managed::time_of(managed.started_at)) {
      event.elapsed = at - *started;
    }
    emit(event);
  }
}

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::process_exiting(
    Managed& managed, detail::Claim claim, bool became_ready,
    const std::exception_ptr& failure) noexcept {
  // An exit on its own goes into the history (backoff, give-up), which deadlines read: precise.
  const time_point at = claim == detail::Claim::own_exit ? now() : stamp();
  managed.set_time(managed.exited_at, at);
  if (options_.on_event) {
    managed.close_foreign_events();
  }
  if (claim != detail::Claim::own_exit) {  // someone stopped it
    if (!ending()) {
      // Its row may still be in the table: a pass that found this record, before the claim,
      // and ends after the key is free must not forget the key's history (its failures).
      try {
        mark_history_seen(managed.hash(), managed.key(), pass_id_.load());
      } catch (...) {  // The user's `KeyEqual`: the history may be forgotten a pass early.
        report(ErrorSource::exit, &managed.key(), std::current_exception());
      }
    }
    if (options_.on_event) {
      Event<Key> event{EventKind::stopped, managed.key(), at, {}, {}, 0, {}};
      if (const auto requested = Managed::time_of(managed.stop_requested_at)) {
        event.elapsed = at - *requested;
      }
      event.error = failure;
      emit(event);
    }
    return;
  }
  // On its own. A startup cut short by `run`'s cancellation, without an error, is no failure;
  // and nothing that ends while `run` is being canceled or shut down counts for the policy
  // (that would also allocate in a shutdown that promises not to).
  const bool run_ending = ending();
  const bool canceled = run_ending && !failure;
  const bool failed = !canceled && (failure || !became_ready);
  std::error_code said;  // what the runnable said with its error, if one of ours
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::system_error& e) {
      said = e.code();
    } catch (...) {  // NOLINT(bugprone-empty-catch): any other exception is a plain failure.
    }
  }
  std::exception_ptr error = failure;
  if (failed && !error) {
    try {
      error = exited_before_ready_error();
    } catch (...) {  // NOLINT(bugprone-empty-catch): made by the constructor; cannot fail here.
    }
  }

  typename History::Verdict verdict;
  if (!run_ending) {
    verdict = record_history(managed, at, failed, error, said == errc::do_not_restart);
  }
  if (options_.on_event) {
    Event<Key> event{
        failed ? EventKind::failed : EventKind::exited, managed.key(), at, {}, {}, 0, {}};
    if (const auto ready = Managed::time_of(managed.ready_at)) {
      event.elapsed = at - *ready;
    }
    event.consecutive_failures = verdict.consecutive_failures;
    event.error = error;
    emit(event);
    if (!run_ending && !verdict.given_up_now && !escalated_.load()) {
      Event<Key> scheduled{EventKind::restart_scheduled, managed.key(), at, {}, {}, 0, {}};
      scheduled.delay = verdict.delay;
      scheduled.consecutive_failures = verdict.consecutive_failures;
      emit(scheduled);
    }
    if (verdict.given_up_now) {
      Event<Key> given_up{EventKind::given_up, managed.key(), at, {}, {}, 0, {}};
      given_up.consecutive_failures = verdict.consecutive_failures;
      given_up.error = error;
      emit(given_up);
    }
  }
  if (verdict.given_up_now) {
    report(ErrorSource::given_up, &managed.key(), error);
  }
  if (failed && !run_ending && (said == errc::escalate || count_for_escalation(at))) {
    escalate(managed.key(), at, error);
  }
  if (failed && options_.restart.retry_when_due && verdict.delay.count() > 0) {
    if (auto* loop = loop_.load(std::memory_order_acquire)) {
      loop->nudge();
    }
  }
}

SUPERVISOR_MEMBER_
bool Supervisor<Key, R, Hash, KeyEqual>::ending() const noexcept {
  return shutting_down_.load() || parent_.stop_requested();
}

SUPERVISOR_MEMBER_
bool Supervisor<Key, R, Hash, KeyEqual>::would_block_executor() const noexcept {
  return Managed::is_coroutine && coroutines_.on_executor_thread();
}

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::process_gone() noexcept {
  if (live_.fetch_sub(1) == 1 && shutting_down_.load() && drained_ != nullptr) {
    drained_->request_stop();
  }
}

SUPERVISOR_MEMBER_
const std::exception_ptr& Supervisor<Key, R, Hash, KeyEqual>::exited_before_ready_error() {
  // One shared, immutable error for history and events, made by the first supervisor's
  // constructor (which fails if it cannot), so that an exit never allocates for it.
  static const std::exception_ptr error =
      std::make_exception_ptr(std::system_error(errc::exited_before_ready, "start"));
  return error;
}

// ---- restart policy --------------------------------------------------------------------------

SUPERVISOR_MEMBER_
double Supervisor<Key, R, Hash, KeyEqual>::draw_spread() noexcept {
  // splitmix64 over a shared counter: cheap, lock-free, and good enough to spread restarts.
  std::uint64_t z = jitter_state_.fetch_add(0x9E3779B97F4A7C15ULL, std::memory_order_relaxed);
  z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
  z ^= z >> 31U;
  return static_cast<double>(z >> 11U) * 0x1.0p-53 * 2.0 - 1.0;  // [-1, 1)
}

SUPERVISOR_MEMBER_
auto Supervisor<Key, R, Hash, KeyEqual>::record_history(Managed& managed, time_point at,
                                                        bool failed,
                                                        const std::exception_ptr& error,
                                                        bool give_up) noexcept ->
    typename History::Verdict {
  try {
    HistoryPtr history = histories_.visit(
        managed.hash(), managed.key(),
        [](const HistoryPtr* found) { return found != nullptr ? *found : nullptr; });
    if (!history) {
      history = std::make_shared<History>(managed.hash(), at);
      history->mark_seen(pass_id_.load());
      if (histories_.try_emplace(managed.hash(), managed.key(), history)) {
        history_count_.fetch_add(1);
      } else {  // another thread made it meanwhile (cannot happen for one key, but be safe)
        history = histories_.visit(managed.hash(), managed.key(), [](const HistoryPtr* found) {
          return found != nullptr ? *found : nullptr;
        });
        if (!history) {
          return {};
        }
      }
    }
    // Seen by the pass under way: its end must not forget a history it just changed.
    history->mark_seen(pass_id_.load());
    // `ready_at` is a stamp, `at` a precise reading: moved by a stamp's lag now, a coarse
    // clock's lag does not count as time the process ran healthy (`reset_after`).
    auto ready = Managed::time_of(managed.ready_at);
    if (ready) {
      *ready += at - stamp();
    }
    return history->record_exit(options_.restart, at, ready, failed, error, give_up, draw_spread(),
                                &managed.runnable());
  } catch (...) {  // Memory, or the user's `KeyEqual`: the key restarts without a history.
    report(ErrorSource::exit, &managed.key(), std::current_exception());
    return {};
  }
}

SUPERVISOR_MEMBER_
bool Supervisor<Key, R, Hash, KeyEqual>::count_for_escalation(time_point at) noexcept {
  const Escalation& limit = options_.escalation;
  if (limit.max_failures == 0) {
    return false;
  }
  std::lock_guard lock(escalation_mutex_);
  if (escalation_failures_ == 0 || at - escalation_window_start_ > limit.period) {
    escalation_window_start_ = at;
    escalation_failures_ = 0;
  }
  return ++escalation_failures_ > limit.max_failures;
}

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::escalate(const Key& key, time_point at,
                                                  const std::exception_ptr& error) noexcept {
  if (escalated_.exchange(true)) {
    return;
  }
  if (options_.on_event) {
    Event<Key> event{EventKind::escalated, key, at, {}, {}, 0, {}};
    event.error = error;
    emit(event);
  }
  if (auto* callback_stop = callback_stop_.load(std::memory_order_acquire)) {
    callback_stop->request_stop();
  }
}

SUPERVISOR_MEMBER_
bool Supervisor<Key, R, Hash, KeyEqual>::may_start_automatically(std::uint64_t hash, const Key& key,
                                                                 const R& row, std::uint64_t pass) {
  if (escalated_.load()) {
    return false;
  }
  if (history_count_.load() == 0) {
    return true;
  }
  HistoryPtr history = histories_.visit(
      hash, key, [](const HistoryPtr* found) { return found != nullptr ? *found : nullptr; });
  return !history || history->may_start(now(), row, pass) == History::Gate::go;
}

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::mark_history_seen(std::uint64_t hash, const Key& key,
                                                           std::uint64_t pass) {
  if (history_count_.load() == 0) {
    return;
  }
  HistoryPtr history = histories_.visit(
      hash, key, [](const HistoryPtr* found) { return found != nullptr ? *found : nullptr; });
  if (history) {
    history->mark_seen(pass);
  }
}

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::count_restart(const Managed& managed) {
  if (history_count_.load() == 0) {
    return;
  }
  HistoryPtr history = histories_.visit(managed.hash(), managed.key(), [](const HistoryPtr* found) {
    return found != nullptr ? *found : nullptr;
  });
  if (history) {
    history->mark_seen(pass_id_.load());
    history->count_restart();
    if (managed.origin() == detail::Origin::user_start) {
      history->lift_give_up();
    }
  }
}

SUPERVISOR_MEMBER_
auto Supervisor<Key, R, Hash, KeyEqual>::next_retry_due() const noexcept
    -> std::optional<time_point> {
  if (!options_.restart.retry_when_due || history_count_.load() == 0) {
    return std::nullopt;
  }
  std::optional<time_point> earliest;
  const time_point at = now();
  try {  // A thread's first walk registers it with the epoch domain, which may allocate.
    histories_.for_each_unlocked([&](const Key& /*key*/, const HistoryPtr& history) {
      if (const auto due = history->backoff_end(at); due && (!earliest || *due < *earliest)) {
        earliest = due;
      }
    });
  } catch (...) {  // NOLINT(bugprone-empty-catch): then only the interval wakes the loop.
  }
  return earliest;
}

#undef SUPERVISOR_MEMBER_

}  // namespace supervisor
