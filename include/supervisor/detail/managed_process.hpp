#pragma once

/// \file
/// `ManagedProcess`: the record a supervisor keeps per key: the process state machine, plus who
/// started it, who removes its key, and what its exit reports.

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <stop_token>
#include <system_error>
#include <utility>

#include "supervisor/detail/pass_tracker.hpp"
#include "supervisor/detail/process_core.hpp"
#include "supervisor/detail/work_context.hpp"
#include "supervisor/errors.hpp"
#include "supervisor/report.hpp"

namespace supervisor::detail {

/// Who removes a managed process's key: exactly one party wins the claim, the others step back.
enum class Claim : std::uint8_t { none, user_stop, shutdown, own_exit };

/// Who started a managed process: a caller of `start` (who hears how the start went) or a
/// restart pass (whose failures nobody hears but `on_error`).
enum class Origin : std::uint8_t { user_start, pass };

/// The record of one key's process, in the supervisor's map from the moment the key is taken
/// (state `initial`, maybe still without its runnable) until its runnable has returned: so there
/// is never more than one live runnable per key, and one `try_emplace` is the whole reservation.
///
/// It remembers the key's hash, so removing its entry calls no user code (`Owner::forget` erases
/// by identity): a throwing `Hash` or `KeyEqual` can fail a call, never strand a key.
///
/// `Owner` provides `void forget(const ManagedProcess&) noexcept` (erase the entry if it is still
/// this record) and `void report(ErrorSource, const Key*, std::exception_ptr) noexcept`.
template <class Owner, class Key, class R>
class ManagedProcess final : public ProcessCore<R> {
 public:
  /// A record without its runnable yet (a `start` registers the key, then asks the table).
  ManagedProcess(Owner& owner, const Key& key, std::uint64_t hash, const std::stop_token& parent,
                 std::chrono::nanoseconds spin, const WorkContext* outer)
      : ProcessCore<R>(parent, spin, outer),
        owner_(owner),
        parent_(parent),
        key_(key),
        hash_(hash),
        origin_(Origin::user_start) {}

  /// A record with its runnable (a restart pass has it from the table's row).
  ManagedProcess(Owner& owner, const Key& key, std::uint64_t hash, R runnable,
                 const std::stop_token& parent, std::chrono::nanoseconds spin,
                 const WorkContext* outer, std::shared_ptr<PassTracker> tracker)
      : ProcessCore<R>(parent, spin, outer),
        owner_(owner),
        parent_(parent),
        key_(key),
        hash_(hash),
        origin_(Origin::pass),
        tracker_(std::move(tracker)) {
    this->set_runnable(std::move(runnable));
  }

  /// Claims the right to remove the key. Returns whether `who` won.
  bool claim(Claim who) noexcept {
    Claim expected = Claim::none;
    return claim_.compare_exchange_strong(expected, who, std::memory_order_acq_rel);
  }

  [[nodiscard]] const Key& key() const noexcept { return key_; }
  [[nodiscard]] std::uint64_t hash() const noexcept { return hash_; }

  /// The pass waiting for this start counts it; call before `begin_start`.
  void count_start() {
    if (tracker_) {
      tracker_->add();
      counted_ = true;
    }
  }

  /// Gives up the pass's wait for a start that never launched.
  void forget_start() noexcept { finish_tracked_start(); }

 private:
  void on_ready() noexcept override { finish_tracked_start(); }

  // The watchdog, on the process's own thread, before `done` is visible. Calls no user code but
  // the error hook, allocates only to describe an error, and reports what it cannot allocate.
  void on_exit(bool became_ready, const std::exception_ptr& failure) noexcept override {
    if (!became_ready) {
      finish_tracked_start();
    }
    // The key is held until the runnable has returned, whoever stopped it: at most one live
    // runnable per key, ever.
    owner_.forget(*this);
    if (claim(Claim::own_exit)) {
      // A startup cut short by `run`'s cancellation, without an error of its own, is expected.
      const bool canceled = !failure && parent_.stop_requested();
      if (!became_ready && origin_ == Origin::pass && !canceled) {
        owner_.report(ErrorSource::start, &key_, failure ? failure : exited_before_ready());
      } else if (became_ready && failure) {
        owner_.report(ErrorSource::exit, &key_, failure);
      }
    } else if (claim_.load(std::memory_order_acquire) == Claim::shutdown && failure) {
      owner_.report(ErrorSource::shutdown, &key_, failure);
    }
  }

  /// The error of a background start that returned before `ready` without one of its own; if
  /// memory has run out, that `std::bad_alloc` instead, so the report still gets out.
  static std::exception_ptr exited_before_ready() noexcept {
    try {
      throw std::system_error(errc::exited_before_ready, "background start");
    } catch (...) {
      return std::current_exception();
    }
  }

  void finish_tracked_start() noexcept {
    if (counted_ && !tracker_finished_.exchange(true)) {
      tracker_->finish();
    }
  }

  Owner& owner_;
  std::stop_token parent_;
  Key key_;
  std::uint64_t hash_;
  Origin origin_;
  std::shared_ptr<PassTracker> tracker_;
  bool counted_ = false;  // set by the starter before the process can run
  std::atomic<bool> tracker_finished_{false};
  std::atomic<Claim> claim_{Claim::none};
};

}  // namespace supervisor::detail
