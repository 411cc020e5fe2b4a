#pragma once

/// \file
/// `Supervisor::start` and `Supervisor::stop`, and their helpers: launching a registered
/// process, stopping a claimed one, abandoning a start whose caller cannot be told. Included by
/// `supervisor_class.hpp`; not for direct use.

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>

#include "supervisor/supervisor_class.hpp"

namespace supervisor {

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::forget(const Managed& managed) noexcept {
  processes_.erase_value(managed.hash(),
                         [&](const ManagedPtr& value) { return value.get() == &managed; });
}

// A start takes the key with one insert of the record, still `initial` and without its runnable;
// asks the table outside every lock; then gives the record its runnable and launches it. Each
// step that touches the map holds a gate pass, so `run`'s shutdown either sees the record (and
// stops it) or the start sees the gate closed (and frees the key). Every failure frees the key
// through `Registration`, by identity, calling no user code.
template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::start_process(const Key& key, const Cancel& cancel,
                                                       std::error_code& ec) -> ManagedPtr {
  if (would_block_executor()) {
    ec = std::make_error_code(std::errc::resource_deadlock_would_occur);
    return nullptr;
  }
  ManagedPtr managed = launch_process(key, ec);
  if (!managed) {
    return nullptr;
  }
  // Outside the gate: a slow startup must not hold up `run`'s shutdown, which stops it.
  if ((ec = managed->await_start(cancel))) {
    // Canceled: the caller hears that, so the runnable's own error goes to the hook.
    report_unheard(*managed, ErrorSource::start);
    return nullptr;
  }
  return managed;
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::launch_process(const Key& key, std::error_code& ec,
                                                        std::coroutine_handle<>* run_here)
    -> ManagedPtr {
  const std::uint64_t hash = processes_.hash_of(key);  // throws before anything is taken
  Registration registration{*this};
  {
    const detail::StartGate::Pass pass(gate_);
    if (!pass) {
      ec = errc::not_running;
      return nullptr;
    }
    auto managed = Managed::make(*this, key, hash, run_work_);
    if (!processes_.try_emplace(hash, key, managed)) {
      ec = errc::process_exists;
      return nullptr;
    }
    registration.managed = std::move(managed);
  }
  // Declared after `registration`: a runnable not handed over is destroyed before the key is
  // freed, and outside the gate.
  std::optional<R> runnable = table_->get(key);
  if (!runnable) {
    ec = errc::not_in_table;
    return nullptr;
  }
  // Once the row is read: a pass that began before may have read the table without it, and
  // must not prune the process; one that begins after reads the row (or its removal).
  registration.managed->born_pass.store(pass_id_.load());
  {
    const detail::StartGate::Pass pass(gate_);
    // `run` is shutting down, or shut down meanwhile and stopped the record (a later `run` may
    // have opened the gate again: the record is still done for).
    if (!pass || registration.managed->state() != ProcessState::initial) {
      ec = errc::not_running;
      return nullptr;
    }
    registration.managed->set_runnable(std::move(*runnable));
    if (launch(registration.managed, run_here)) {
      ec = errc::not_running;  // Only `run`'s shutdown stops a record that has not launched.
      return nullptr;
    }
    registration.keep = true;  // From here the watchdog frees the key when the runnable returns.
  }
  return std::move(registration.managed);
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::stop(const Key& key, Cancel cancel, std::error_code& ec) {
  ec.clear();
  if (would_block_executor()) {
    ec = std::make_error_code(std::errc::resource_deadlock_would_occur);
    return;
  }
  ManagedPtr managed = claim_for_stop(key, nullptr, ec);
  if (!managed) {
    return;
  }
  if (options_.on_event && !managed->wait_done(cancel)) {
    // The caller's deadline passed: tell the hook before forcing (the process's last event
    // must come after this one).
    emit_foreign(*managed, EventKind::forced, now());
  }
  if ((ec = managed->await_done(cancel))) {
    // Canceled: the caller hears that, so the runnable's own error goes to the hook.
    report_unheard(*managed, ErrorSource::exit);
    return;
  }
  if (auto failure = managed->error()) {
    std::rethrow_exception(failure);
  }
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::start(const Key& key, Cancel cancel, std::error_code& ec)
    -> std::optional<R> {
  ec.clear();
  auto managed = start_process(key, cancel, ec);
  if (!managed) {
    return std::nullopt;
  }
  try {
    return std::optional<R>(std::in_place, managed->runnable());
  } catch (...) {
    abandon(*managed);
    throw;
  }
}

// ---- helpers of start and stop ----------------------------------------------------------

// Finds the key's launched process, refuses a caller that is part of it, claims its stop and
// requests it (graceful). Null (and `ec`) if there is nothing this caller may stop.
template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::claim_for_stop(const Key& key,
                                                        const detail::WorkContext* caller_task,
                                                        std::error_code& ec) -> ManagedPtr {
  ManagedPtr managed = find_launched(key, caller_task, ec);
  if (managed && !claim_stop(*managed, ec)) {
    return nullptr;
  }
  return managed;
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::find_launched(const Key& key,
                                                       const detail::WorkContext* caller_task,
                                                       std::error_code& ec) -> ManagedPtr {
  ManagedPtr managed = processes_.visit(
      key, [](const ManagedPtr* found) { return found != nullptr ? *found : nullptr; });
  if (!managed || !managed->launched()) {
    ec = errc::process_not_found;
    return nullptr;
  }
  if (managed->runs_on_this_thread() ||
      (caller_task != nullptr && managed->is_task_owner(caller_task))) {
    ec = std::make_error_code(std::errc::resource_deadlock_would_occur);
    return nullptr;
  }
  return managed;
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
bool Supervisor<Key, R, Hash, KeyEqual>::claim_stop(Managed& managed, std::error_code& ec,
                                                    std::coroutine_handle<>* run_here) {
  if (!managed.claim(detail::Claim::user_stop)) {
    ec = errc::process_not_found;
    return false;
  }
  mark_stop_requested(managed);
  stop_claimed(managed, false, run_here);
  return true;
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::abandon(Managed& managed) noexcept {
  const bool claimed = managed.claim(detail::Claim::user_stop);
  if (claimed) {
    mark_stop_requested(managed);
    stop_claimed(managed, true);
  }
  (void)managed.await_done(Cancel{});
  if (claimed) {
    report_unheard(managed, ErrorSource::exit);
  }
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::report_unheard(Managed& managed,
                                                        ErrorSource source) noexcept {
  std::exception_ptr failure;
  try {
    failure = managed.error();
  } catch (...) {  // NOLINT(bugprone-empty-catch): only a lock failure; nothing to report.
  }
  if (failure) {
    report(source, &managed.key(), std::move(failure));
  }
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::stop_claimed(Managed& managed, bool forced,
                                                      std::coroutine_handle<>* run_here) noexcept {
  bool was_initial = false;
  // `invalid_state` only means it already returned on its own; the watchdog handles that.
  (void)managed.request_stop(forced, &was_initial, run_here);
  if (was_initial) {
    forget(managed);
  }
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::launch(const ManagedPtr& record,
                                                std::coroutine_handle<>* run_here)
    -> std::error_code {
  Managed& managed = *record;
  count_restart(managed);
  managed.set_time(managed.started_at, stamp());
  live_.fetch_add(1);
  std::error_code ec;
  if constexpr (Managed::is_coroutine) {
    coroutines_.launching();
    try {
      ec = managed.begin_start(coroutines_.executor(), record, run_here);
    } catch (...) {
      coroutines_.settled();
      process_gone();  // Not scheduled: no events either (`starting` comes from the task).
      throw;
    }
    if (ec) {
      coroutines_.settled();
    }
  } else {
    try {
      ec = managed.begin_start(
          [this](std::function<void()> body) { threads_.launch(std::move(body)); }, record);
    } catch (...) {
      process_gone();  // No thread: no events either (`starting` comes from the thread).
      throw;
    }
  }
  if (ec) {  // `run`'s shutdown stopped it first
    process_gone();
  }
  return ec;
}

}  // namespace supervisor
