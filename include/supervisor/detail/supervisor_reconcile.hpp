#pragma once

/// \file
/// The end of a restart pass and the calls that act on the table from outside the loop:
/// pruning the processes whose key left the table (`Options::prune`) and forgetting their
/// failure history, `reconcile` (a pass now, coalesced with any in flight), `reconcile(key)`,
/// `reset(key)`, and `snapshot`. Included by `supervisor_class.hpp`; not for direct use.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include "supervisor/supervisor_class.hpp"

namespace supervisor {

#define SUPERVISOR_MEMBER_                                               \
  template <class Key, SupervisedRunnable R, class Hash, class KeyEqual> \
  requires std::copy_constructible<Key>

// ---- end of a pass: pruning, and forgetting keys that left the table ----------------------------

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::finish_complete_pass(std::uint64_t pass) noexcept {
  try {
    prune_and_forget(pass);
  } catch (...) {  // Only a first epoch registration of this thread (memory): next pass again.
    report(ErrorSource::iterate, nullptr, std::current_exception());
  }
}

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::prune_and_forget(std::uint64_t pass) {
  if (options_.prune) {
    processes_.for_each_unlocked([&](const Key& /*key*/, const ManagedPtr& managed) {
      if (managed->launched() && managed->born_pass.load() < pass &&
          managed->seen_pass.load(std::memory_order_relaxed) < pass &&
          managed->claim(detail::Claim::prune)) {
        mark_stop_requested(*managed);
        stop_claimed(*managed, false);
      }
    });
  }
  if (history_count_.load() == 0) {
    return;
  }
  histories_.for_each_unlocked([&](const Key& key, const HistoryPtr& history) {
    if (history->seen_pass() >= pass) {  // this pass, or a later one, read its row
      return;
    }
    try {
      const bool has_process = processes_.visit(
          history->hash(), key, [](const ManagedPtr* found) { return found != nullptr; });
      // Read again once no process is found: a process of the key that this pass found running
      // may have exited since the read above, marking the history (with this pass or a later
      // one) before it left the map. An exit while `run` ends marks nothing: keep it all then.
      if (!has_process && !ending() && history->seen_pass() < pass &&
          histories_.erase_value(history->hash(), [&](const HistoryPtr& value) {
            return value.get() == history.get();
          })) {
        history_count_.fetch_sub(1);
      }
    } catch (...) {  // The user's `KeyEqual`: keep the history; the next pass tries again.
      report(ErrorSource::iterate, &key, std::current_exception());
    }
  });
}

// ---- reconcile, reset, snapshot ----------------------------------------------------------------

SUPERVISOR_MEMBER_
void Supervisor<Key, R, Hash, KeyEqual>::run_passes_coalesced() noexcept {
  pass_pending_.store(true);
  for (;;) {
    bool expected = false;
    if (!pass_running_.compare_exchange_strong(expected, true)) {
      return;  // The pass running now will see the request.
    }
    while (pass_pending_.exchange(false)) {
      run_pass(nullptr);
    }
    pass_running_.store(false);
    if (!pass_pending_.load()) {
      return;  // Else a request came after the last check, and its caller saw us running.
    }
  }
}

SUPERVISOR_MEMBER_
std::error_code Supervisor<Key, R, Hash, KeyEqual>::reconcile() {
  if (would_block_executor()) {  // the pass may wait for start slots held by coroutines
    return std::make_error_code(std::errc::resource_deadlock_would_occur);
  }
  const detail::CallAdmission::Ticket admitted(reconcile_calls_);  // `run` waits for it
  if (!admitted) {
    return errc::not_running;
  }
  // This thread works for `run` meanwhile: a hook of the pass that calls `run` fails at once.
  const detail::WorkContext work{this, detail::current_work()};
  const detail::WorkScope working(&work);
  run_passes_coalesced();
  return {};
}

SUPERVISOR_MEMBER_
std::error_code Supervisor<Key, R, Hash, KeyEqual>::reconcile(const Key& key) {
  if (would_block_executor()) {  // a stop's event may wait for the task's first resumption
    return std::make_error_code(std::errc::resource_deadlock_would_occur);
  }
  const detail::CallAdmission::Ticket admitted(reconcile_calls_);  // `run` waits for it
  if (!admitted) {
    return errc::not_running;
  }
  const detail::WorkContext work{this, detail::current_work()};  // as in `reconcile()`
  const detail::WorkScope working(&work);
  const std::uint64_t hash = processes_.hash_of(key);
  ManagedPtr managed = processes_.visit(
      hash, key, [](const ManagedPtr* found) { return found != nullptr ? *found : nullptr; });
  if (managed && !options_.prune) {
    return {};
  }
  // Before the row is read: a start launches only once it has read its row, so a process
  // launched by now had a row then, and no row now means it left the table. One that launches
  // later may have read a row that this read missed: it is not pruned.
  const bool was_launched = managed && managed->launched();
  std::optional<R> row = table_->get(key);
  if (managed) {
    if (!row && was_launched && managed->claim(detail::Claim::prune)) {
      mark_stop_requested(*managed);
      stop_claimed(*managed, false);
    }
    return {};
  }
  if (row) {
    // Never waits for a start slot: without one, the key is left to the next pass.
    (void)start_in_background(hash, key, std::move(*row), nullptr, pass_id_.load(),
                              /*wait_for_slot=*/false);
  }
  return {};
}

SUPERVISOR_MEMBER_
bool Supervisor<Key, R, Hash, KeyEqual>::reset(const Key& key) {
  const std::uint64_t hash = histories_.hash_of(key);
  HistoryPtr history = histories_.visit(
      hash, key, [](const HistoryPtr* found) { return found != nullptr ? *found : nullptr; });
  if (!history) {
    return false;
  }
  if (histories_.erase_value(
          hash, [&](const HistoryPtr& value) { return value.get() == history.get(); })) {
    history_count_.fetch_sub(1);
  }
  return true;
}

SUPERVISOR_MEMBER_
Snapshot<Key> Supervisor<Key, R, Hash, KeyEqual>::snapshot() const {
  Snapshot<Key> result;
  result.taken_at = now();
  const time_point at = result.taken_at;
  const time_point stamped_at = stamp();  // to measure from a `ready_at`, read the same way
  // Histories listed with their process: the second walk skips them, so a process that exits
  // between the walks is listed once.
  std::vector<const History*> listed;
  auto view_of = [&](std::uint64_t hash, const Key& key) -> std::optional<typename History::View> {
    if (history_count_.load() == 0) {
      return std::nullopt;
    }
    HistoryPtr history = histories_.visit(
        hash, key, [](const HistoryPtr* found) { return found != nullptr ? *found : nullptr; });
    if (!history) {
      return std::nullopt;
    }
    listed.push_back(history.get());
    return history->view();
  };
  // A key without a process (or whose process has exited on its own and whose exit the history
  // already holds) is described by its history.
  auto from_history = [&](const Key& key, const typename History::View& view) {
    KeyStatus<Key> status{key, KeyState::waiting, view.since, 0, 0, {}, std::nullopt};
    status.restarts = view.restarts;
    status.consecutive_failures = view.consecutive_failures;
    status.last_error = view.last_error;
    if (view.given_up) {
      status.state = KeyState::given_up;
    } else if (view.next_start > at) {
      status.state = KeyState::backing_off;
      status.next_start = view.next_start;
    }
    return status;
  };
  processes_.for_each_unlocked([&](const Key& key, const ManagedPtr& managed) {
    if (!managed->launched()) {
      return;
    }
    const auto view = view_of(managed->hash(), key);
    KeyStatus<Key> status{key, KeyState::starting, {}, 0, 0, {}, std::nullopt};
    const detail::Claim claim = managed->claimed_by();
    const bool stopped_by_us = claim != detail::Claim::none && claim != detail::Claim::own_exit;
    const auto exited = Managed::time_of(managed->exited_at);
    if (claim == detail::Claim::own_exit && managed->state() == ProcessState::stopped && exited &&
        view && view->since == *exited) {
      // It exited on its own and its record has not left the map yet, but its exit (and with it
      // a give-up or a backoff, which its events may have told already) is in the history.
      result.keys.push_back(from_history(key, *view));
      return;
    }
    if (stopped_by_us || managed->state() == ProcessState::stopped) {
      status.state = KeyState::stopping;
      status.since = Managed::time_of(managed->stop_requested_at).value_or(exited.value_or(at));
    } else if (managed->state() == ProcessState::running) {
      status.state = KeyState::running;
      status.since = Managed::time_of(managed->ready_at).value_or(at);
    } else {
      status.since = Managed::time_of(managed->started_at).value_or(at);
    }
    if (view) {
      status.restarts = view->restarts;
      status.consecutive_failures = view->consecutive_failures;
      status.last_error = view->last_error;
      const auto ready = Managed::time_of(managed->ready_at);
      if (ready && stamped_at - *ready >= options_.restart.reset_after) {
        status.consecutive_failures = 0;  // healthy long enough: the next exit starts afresh
      }
    }
    result.keys.push_back(std::move(status));
  });
  std::sort(listed.begin(), listed.end());
  histories_.for_each_unlocked([&](const Key& key, const HistoryPtr& history) {
    if (std::binary_search(listed.begin(), listed.end(), history.get())) {
      return;
    }
    const bool has_process = processes_.visit(history->hash(), key, [](const ManagedPtr* found) {
      return found != nullptr && (*found)->launched();
    });
    if (has_process) {
      return;
    }
    result.keys.push_back(from_history(key, history->view()));
  });
  for (const auto& status : result.keys) {
    ++result.counts[static_cast<std::size_t>(status.state)];
  }
  return result;
}

#undef SUPERVISOR_MEMBER_

}  // namespace supervisor
