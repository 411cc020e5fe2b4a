#pragma once

/// \file
/// One restart pass over the table, `run_pass`, and the background start of each row it finds
/// without a process, `start_in_background`. A pass reads the table on the thread that runs it
/// (the restart loop's, `run`'s for the initial pass, or a `reconcile` caller's), starts no
/// thread for a key that already has a process, and never waits for the starts it begins.
/// Included by `supervisor_class.hpp`; not for direct use.

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>

#include "supervisor/detail/fault_injection.hpp"
#include "supervisor/supervisor_class.hpp"

namespace supervisor {

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::run_pass(
    const std::shared_ptr<detail::PassTracker>& tracker) noexcept -> PassEnd {
  const std::uint64_t pass = pass_id_.fetch_add(1) + 1;
  bool complete = false;
  bool out_of_slots = false;
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
    return PassEnd::partial;
  }
  // Room for every row at once: growing a shard copies its nodes (and a million rows would
  // copy about a million). Nothing to do when the map is big enough already.
  processes_.reserve(cursor->size_hint());
  try {
    complete = true;
    // Rows a few at a time: the map's bucket and first node of each are fetched ahead of their
    // probes, so a pass over a big map waits for memory about once a batch, not once a row.
    // (Fewer when rows are big: the batch lives on the stack of whoever runs the pass.)
    constexpr std::size_t batch = std::clamp<std::size_t>(1024 / sizeof(std::pair<Key, R>), 1, 8);
    std::array<std::optional<std::pair<Key, R>>, batch> rows;
    std::array<std::uint64_t, batch> hashes{};
    bool more = true;
    while (more) {
      std::size_t filled = 0;
      std::exception_ptr broke;  // `next` threw: the rows read before it still start
      try {
        while (filled < batch && (more = cursor->next())) {
          try {
            rows[filled].emplace(cursor->get());
          } catch (...) {
            report(ErrorSource::row, nullptr, std::current_exception());
            complete = false;  // a row we could not read may be a key that runs: prune nothing
            continue;
          }
          try {
            hashes[filled] = processes_.hash_of(rows[filled]->first);
          } catch (...) {  // the key's start failed, as a start does: reported with its key
            report(ErrorSource::start, &rows[filled]->first, std::current_exception());
            complete = false;  // the key may run, unseen by this pass: prune nothing
            rows[filled].reset();
            continue;
          }
          ++filled;
        }
      } catch (...) {
        broke = std::current_exception();
        more = false;
      }
      processes_.prefetch(hashes.data(), filled);
      for (std::size_t i = 0; i < filled && !out_of_slots; ++i) {
        // The initial pass must not hold up `run`: without a free slot it ends, and the loop
        // goes on at once. Later passes wait for a slot (or the shutdown).
        // A runnable whose move throws fails that key's start alone, inside (reported with
        // the key); a running key's runnable is not moved at all.
        if (!start_in_background(hashes[i], rows[i]->first, std::move(rows[i]->second), tracker,
                                 pass, /*wait_for_slot=*/!tracker)) {
          complete = false;
          out_of_slots = true;
          more = false;
        }
      }
      for (std::size_t i = 0; i < filled; ++i) {
        rows[i].reset();
      }
      if (broke) {
        std::rethrow_exception(broke);
      }
    }
  } catch (...) {
    complete = false;
    report(ErrorSource::iterate, nullptr, std::current_exception());
  }
  try {
    cursor->close();
  } catch (...) {
    report(ErrorSource::close, nullptr, std::current_exception());
  }
  if (complete) {
    finish_complete_pass(pass);
    return PassEnd::complete;
  }
  return out_of_slots ? PassEnd::out_of_slots : PassEnd::partial;
}

template <class Key, SupervisedRunnable R, class Hash, class KeyEqual>
requires std::copy_constructible<Key>
bool Supervisor<Key, R, Hash, KeyEqual>::start_in_background(
    std::uint64_t hash, const Key& key, R&& runnable,
    const std::shared_ptr<detail::PassTracker>& tracker, std::uint64_t pass,
    bool wait_for_slot) noexcept {
  std::exception_ptr failure;
  ManagedPtr no_thread;  // a record whose launch failed: a failed start for the policy
  {
    Registration registration{*this};  // frees the key on failure, after the pass is released
    bool holds_slot = false;
    struct GiveBackSlot {
      Supervisor& self;
      bool& holds;
      ~GiveBackSlot() {
        if (holds) {
          self.pacer_.release();
        }
      }
    } give_back_slot{*this, holds_slot};
    try {
      // Most rows of a pass already run: one lock-free probe, and nothing else.
      enum class Found : std::uint8_t { none, running, leaving };
      const Found found = processes_.visit(hash, key, [&](const ManagedPtr* record) {
        if (record == nullptr) {
          return Found::none;
        }
        if (options_.prune) {
          (*record)->mark_seen(pass);
        }
        // A process on its way out may have marked its key's history with an earlier pass, and
        // may leave the map before this pass ends: then the history, not the record, must say
        // that this pass saw the key. One not yet claimed marks the history itself as it exits
        // (unless `run` is ending), with this pass or a later one: the claim and `pass_id_` are
        // sequentially consistent.
        return history_count_.load() != 0 && (*record)->leaving() ? Found::leaving : Found::running;
      });
      if (found == Found::leaving) {
        mark_history_seen(hash, key, pass);
      }
      if (found != Found::none) {
        return true;
      }
      if (!may_start_automatically(hash, key, runnable, pass)) {
        return true;
      }
      if (pacer_.limited()) {
        holds_slot = wait_for_slot ? pacer_.acquire() : pacer_.try_acquire();
        if (!holds_slot) {
          return false;
        }
      }
      ManagedPtr managed;  // declared before the pass: a record not kept dies outside it
      const detail::StartGate::Pass gate_pass(gate_);
      if (!gate_pass) {
        return false;
      }
      managed = Managed::make(*this, key, hash, std::move(runnable), run_work_, tracker.get());
      managed->seen_pass.store(pass, std::memory_order_relaxed);
      if (!processes_.try_emplace(hash, key, managed)) {
        return true;  // It got a process since the probe.
      }
      // `pass` itself within a pass; for `reconcile(key)` a pass may have begun since it read
      // the row, and missed the record.
      managed->born_pass.store(pass_id_.load());
      registration.managed = std::move(managed);
      registration.managed->count_start();
      if (holds_slot) {
        registration.managed->hold_start_slot();  // the record gives it back from here
        holds_slot = false;
      }
      try {
        registration.keep = !launch(registration.managed);
      } catch (...) {
        failure = std::current_exception();
        no_thread = registration.managed;
      }
    } catch (...) {
      failure = std::current_exception();
    }
    // No thread for it: a failed start, for the restart policy too. Outside the gate (the
    // history's lookup calls `KeyEqual`), and before the key is freed: a pass that found the
    // record and ends meanwhile must find it still, or it forgets the key's old history. Claimed
    // first, as an exit is: a pass that begins after the history's mark and finds the record
    // leaving marks the history itself, or it would forget it once the record has gone.
    if (no_thread) {
      (void)no_thread->claim(detail::Claim::own_exit);
      (void)record_history(*no_thread, now(), true, failure, false);
      detail::fault_point(detail::FaultPoint::failed_launch_recorded);  // a test seam
    }
  }
  // Outside the gate: the hook may call back in.
  if (failure) {
    report(ErrorSource::start, &key, failure);
  }
  return true;
}

}  // namespace supervisor
