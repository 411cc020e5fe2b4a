#pragma once

/// \file
/// `ManagedProcess`: the record a supervisor keeps per key: the process state machine, plus who
/// started it, who removes its key, and what its exit reports.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <stop_token>
#include <system_error>
#include <utility>

#include "supervisor/detail/frame_room.hpp"
#include "supervisor/detail/pass_tracker.hpp"
#include "supervisor/detail/process_core.hpp"
#include "supervisor/detail/work_context.hpp"
#include "supervisor/errors.hpp"
#include "supervisor/report.hpp"

namespace supervisor::detail {

/// Who removes a managed process's key: exactly one party wins the claim, the others step back.
enum class Claim : std::uint8_t { none, user_stop, shutdown, prune, own_exit };

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
/// `Owner` provides, all `noexcept`: `forget(const ManagedProcess&)` (erase the entry if it is
/// still this record), `report(ErrorSource, const Key*, std::exception_ptr)`, and the hooks of
/// its operations layer: `process_ready(ManagedProcess&)`, `process_exiting(ManagedProcess&,
/// Claim, bool became_ready, const std::exception_ptr&)` (before the key is freed: the last
/// event of the process), `process_gone()` (after), `start_settled()` for a paced start,
/// `process_starting(ManagedProcess&)` (its first event) and `bool ending()` (`run` is shutting
/// down or canceled).
///
/// Force follows `parent` through the owner (`ParentLink::by_owner`): when `parent` is
/// requested, the owner sets `forcing_all_` and then calls `request_force` on every record in
/// its map, all sequentially consistent; a record is in the map before it starts, and reads
/// `forcing_all_` as it does.
template <class Owner, class Key, class R>
class ManagedProcess final : public ProcessCore<R, ParentLink::by_owner> {
  using Core = ProcessCore<R, ParentLink::by_owner>;

 public:
  /// A record without its runnable yet (a `start` registers the key, then asks the table).
  /// The hand-off spin is the owner's (`owner_handoff_spin`), as are the parent and the executor.
  ManagedProcess(Owner& owner, const Key& key, std::uint64_t hash, const WorkContext* outer)
      : Core(std::stop_token(), {}, outer),
        origin_(Origin::user_start),
        owner_(owner),
        key_(key),
        hash_(hash) {}

  /// A record with its runnable (a restart pass has it from the table's row).
  ManagedProcess(Owner& owner, const Key& key, std::uint64_t hash, R runnable,
                 const WorkContext* outer, PassTracker* tracker)
      : Core(std::stop_token(), {}, outer),
        origin_(Origin::pass),
        owner_(owner),
        key_(key),
        hash_(hash),
        tracker_(tracker) {
    this->set_runnable(std::move(runnable));
  }

  /// A record, made with room for its frame if it is of the coroutine kind (frame_room.hpp) and
  /// the room can be reached: aligned as `operator new` aligns, within 64 KiB of the record.
  template <class... Args>
  static std::shared_ptr<ManagedProcess> make(Args&&... args) {
    constexpr bool roomy = Core::is_coroutine &&
                           alignof(ManagedProcess) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__ &&
                           sizeof(ManagedProcess) + 256 <= 0xffff;
    if constexpr (roomy) {
      return make_record_with_room<ManagedProcess>(FrameRoomHint<R>::room(),
                                                   std::forward<Args>(args)...);
    } else {
      return std::make_shared<ManagedProcess>(std::forward<Args>(args)...);
    }
  }

  /// Claims the right to remove the key. Returns whether `who` won. Sequentially consistent,
  /// as is `leaving`: a pass that finds the record either sees the claim, or begins before the
  /// exit that follows it marks the key's history (`Supervisor::start_in_background`).
  bool claim(Claim who) noexcept {
    // A claim is never undone: one already made fails the exchange anyway, and the load (as
    // sequentially consistent as the failed exchange would be) skips a locked instruction on
    // the exit of every stopped process.
    Claim expected = Claim::none;
    return claim_.load() == Claim::none && claim_.compare_exchange_strong(expected, who);
  }
  /// Someone has claimed the key: the process is on its way out of the map.
  [[nodiscard]] bool leaving() const noexcept { return claim_.load() != Claim::none; }

  [[nodiscard]] const Key& key() const noexcept { return key_; }
  [[nodiscard]] std::uint64_t hash() const noexcept { return hash_; }
  [[nodiscard]] Origin origin() const noexcept { return origin_; }

  /// The pass waiting for this start counts it; call before `begin_start`.
  void count_start() {
    if (tracker_) {
      tracker_->add();
      counted_ = true;
    }
  }

  /// Gives up the pass's wait for a start that never launched.
  void forget_start() noexcept { finish_tracked_start(); }

  /// Which claim won, if any.
  [[nodiscard]] Claim claimed_by() const noexcept { return claim_.load(std::memory_order_acquire); }

  /// This start holds a slot of the owner's pacer, given back once it is ready or returned.
  void hold_start_slot() noexcept { paced_ = true; }

  // ---- Times on the supervisor's clock, as ticks since its epoch (`unset`: not yet) ----------
  // Not 0 for "not yet": a `ManualClock` starts at its epoch, so 0 is a time like any other.
  using time_point = std::chrono::steady_clock::time_point;
  using ticks = time_point::rep;
  static constexpr ticks unset = std::numeric_limits<ticks>::min();
  void set_time(std::atomic<ticks>& slot, time_point t) noexcept {
    slot.store(t.time_since_epoch().count(), std::memory_order_release);
  }
  static std::optional<time_point> time_of(const std::atomic<ticks>& slot) noexcept {
    const ticks value = slot.load(std::memory_order_acquire);
    if (value == unset) {
      return std::nullopt;
    }
    return time_point(std::chrono::steady_clock::duration(value));
  }

 private:
  // The narrow fields first, in the tail padding of `ProcessCore` (which ends with its own), the
  // wide ones after: a coroutine record is 8 bytes smaller than with the narrow ones last, and
  // its block (with the control block and the frame's room) 16.
  std::atomic<std::uint32_t> foreign_{0};
  Origin origin_;
  bool counted_ = false;  // set by the starter before the process can run
  bool paced_ = false;    // likewise
  std::atomic<bool> tracker_finished_{false};
  std::atomic<Claim> claim_{Claim::none};

 public:
  std::atomic<ticks> started_at{unset};
  std::atomic<ticks> ready_at{unset};
  std::atomic<ticks> stop_requested_at{unset};
  std::atomic<ticks> exited_at{unset};

  /// The pass under way once the record was in the map and its row read (no pass prunes it
  /// before this is set), and the latest pass that saw its row (pruning). A pass that began
  /// before may have read the table without the row, or missed the record; one that begins
  /// after cannot.
  std::atomic<std::uint64_t> born_pass{std::numeric_limits<std::uint64_t>::max()};
  std::atomic<std::uint64_t> seen_pass{0};
  /// Never lowers `seen_pass`. Passes do not overlap, but `reconcile(key)` probes with the pass
  /// number it read before its probe, which a pass that has marked the record since outdates.
  void mark_seen(std::uint64_t pass) noexcept {
    std::uint64_t seen = seen_pass.load(std::memory_order_relaxed);
    while (seen < pass && !seen_pass.compare_exchange_weak(seen, pass, std::memory_order_relaxed)) {
    }
  }

  // ---- Events from threads other than the process's own (stop requested, forced) ----------
  /// Registers such an event; false once the process's last event has begun (then do not emit).
  /// Waits, if need be, until the process's own thread has delivered its first event
  /// (`starting`): the record is visible from `launch`'s return, the thread's first event a
  /// moment later.
  bool begin_foreign_event() noexcept {
    std::uint32_t seen = foreign_.load(std::memory_order_acquire);
    while ((seen & started_bit) == 0) {
      foreign_.wait(seen, std::memory_order_acquire);
      seen = foreign_.load(std::memory_order_acquire);
    }
    if ((foreign_.fetch_add(1, std::memory_order_acq_rel) & exiting_bit) != 0) {
      end_foreign_event();
      return false;
    }
    return true;
  }
  /// The process's thread has delivered `starting`.
  void starting_delivered() noexcept {
    foreign_.fetch_or(started_bit, std::memory_order_acq_rel);
    foreign_.notify_all();
  }
  void end_foreign_event() noexcept {
    if (foreign_.fetch_sub(1, std::memory_order_acq_rel) == (exiting_bit | started_bit | 1U)) {
      foreign_.notify_all();
    }
  }
  /// Called by the process's own thread before its last event: waits until every foreign event
  /// in flight has been delivered, and refuses later ones.
  void close_foreign_events() noexcept {
    std::uint32_t seen = foreign_.fetch_or(exiting_bit, std::memory_order_acq_rel) | exiting_bit;
    while ((seen & ~started_bit) != exiting_bit) {
      foreign_.wait(seen, std::memory_order_acquire);
      seen = foreign_.load(std::memory_order_acquire);
    }
  }

 private:
  void on_start() noexcept override { owner_.process_starting(*this); }

  bool owner_forces_all() const noexcept override { return owner_.forcing_all_.load(); }

  ExecutorRef owner_executor() const noexcept override { return owner_.coroutines_.executor(); }
  std::chrono::nanoseconds owner_handoff_spin() const noexcept override {
    return owner_.handoff_spin();
  }

  void before_ready() noexcept override { owner_.process_becoming_ready(*this); }

  typename Core::SettleHook settle_hook() const noexcept override {
    return {[](void* owner) noexcept { static_cast<Owner*>(owner)->process_settled(); }, &owner_};
  }

  void on_ready() noexcept override {
    finish_tracked_start();
    owner_.process_ready(*this);
  }

  // The watchdog, on the process's own thread, before `done` is visible. Calls no user code but
  // the error hook, allocates only to describe an error, and reports what it cannot allocate.
  void on_exit(bool became_ready, const std::exception_ptr& failure) noexcept override {
    if (!became_ready) {
      finish_tracked_start();
    }
    const bool own = claim(Claim::own_exit);
    // Its last events and its history, before the key is free for the next process.
    owner_.process_exiting(*this, own ? Claim::own_exit : claimed_by(), became_ready, failure);
    // The key is held until the runnable has returned, whoever stopped it: at most one live
    // runnable per key, ever.
    owner_.forget(*this);
    owner_.process_gone();
    if (own) {
      // A startup cut short by `run`'s cancellation, without an error of its own, is expected.
      const bool canceled = !failure && owner_.ending();
      if (!became_ready && origin_ == Origin::pass && !canceled) {
        owner_.report(ErrorSource::start, &key_, failure ? failure : exited_before_ready());
      } else if (became_ready && failure) {
        owner_.report(ErrorSource::exit, &key_, failure);
      }
    } else if (claimed_by() == Claim::shutdown && failure) {
      owner_.report(ErrorSource::shutdown, &key_, failure);
    } else if (claimed_by() == Claim::prune && failure) {
      owner_.report(ErrorSource::exit, &key_, failure);
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
    if ((counted_ || paced_) && !tracker_finished_.exchange(true)) {
      if (counted_) {
        tracker_->finish();
      }
      if (paced_) {
        owner_.start_settled();
      }
    }
  }

  static constexpr std::uint32_t exiting_bit = 1U << 31U;
  static constexpr std::uint32_t started_bit = 1U << 30U;

  Owner& owner_;
  Key key_;
  std::uint64_t hash_;
  PassTracker* tracker_ = nullptr;  // the initial pass's (which `run` keeps until its end), or null
};

}  // namespace supervisor::detail
