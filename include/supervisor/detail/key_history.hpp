#pragma once

/// \file
/// `KeyHistory`: what a supervisor remembers about a key between its processes: failures,
/// backoff, give-up and restarts. Kept only for keys that have exited or failed at least once.

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "supervisor/restart_policy.hpp"

namespace supervisor::detail {

/// The failure history of one key, under its own mutex. Every member is called with no lock of
/// the supervisor held and calls no user code except copies of `R` (kept to notice a changed
/// row after a give-up, when `R` can be compared).
template <class R>
class KeyHistory {
 public:
  using clock_time = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  /// What an exit did to the key.
  struct Verdict {
    bool failed = false;
    std::uint32_t consecutive_failures = 0;
    duration delay{};           // the backoff before the next automatic start
    bool given_up_now = false;  // this exit gave the key up
  };

  /// Whether an automatic start may go ahead now.
  enum class Gate : std::uint8_t { go, backing_off, given_up };

  KeyHistory(std::uint64_t hash, clock_time now) : hash_(hash), since_(now) {}

  [[nodiscard]] std::uint64_t hash() const noexcept { return hash_; }

  /// Records the exit of a process of this key. `ready_at` is when it became ready (none if it
  /// never did); `failure` its error (null for a clean exit after `ready`). `give_up` forces a
  /// give-up (the runnable said `do_not_restart`). `spread` in [-1, 1] draws the jitter.
  /// `row` is the runnable, copied as the row to compare against after a give-up.
  Verdict record_exit(const RestartPolicy& policy, clock_time now,
                      std::optional<clock_time> ready_at, bool failed,
                      const std::exception_ptr& failure, bool give_up, double spread,
                      const R* row) noexcept {
    // Copied before the lock: a copy of `R` is user code. Declared before the lock, what it
    // replaces dies after it (destructors of `R` and of exceptions are user code too).
    std::exception_ptr old_error;
    std::shared_ptr<const R> row_copy;
    if (give_up || policy.give_up_after != 0) {
      row_copy = copy_row(row);
    }
    std::lock_guard lock(mutex_);
    Verdict verdict;
    since_ = now;
    if (ready_at && now - *ready_at >= policy.reset_after) {
      consecutive_ = 0;  // it ran healthy: this exit starts a new count
      failure_count_ = 0;
      old_error = std::move(last_error_);
    }
    if (!failed) {
      next_start_ = now;
      return verdict;
    }
    verdict.failed = true;
    verdict.consecutive_failures = ++consecutive_;
    if (!old_error) {
      old_error = std::move(last_error_);
    }
    last_error_ = failure;
    verdict.delay = backoff_delay(policy, consecutive_, spread);
    // Saturates instead of wrapping. Before the clock's epoch (a custom clock), `max() - now`
    // itself would overflow, and `now + delay` cannot.
    const bool fits = now < clock_time{} || verdict.delay < clock_time::max() - now;
    next_start_ = fits ? now + verdict.delay : clock_time::max();
    if (!given_up_ && (give_up || exceeds_give_up(policy, now))) {
      given_up_ = true;
      verdict.given_up_now = true;
      std::swap(given_up_row_, row_copy);  // the old one, if any, dies after the lock
    }
    return verdict;
  }

  /// May an automatic start of the key go ahead at `now` with this row? A given-up key whose row
  /// has changed (when `R` can be compared) is no longer given up. Marks the key as seen by pass
  /// `pass`. Compares rows outside the lock (`operator==` is user code).
  Gate may_start(clock_time now, const R& row, std::uint64_t pass) {
    std::shared_ptr<const R> given_up_row;
    {
      std::lock_guard lock(mutex_);
      seen_pass_ = std::max(seen_pass_, pass);  // as `mark_seen`
      if (!given_up_) {
        return now < next_start_ ? Gate::backing_off : Gate::go;
      }
      given_up_row = given_up_row_;
    }
    if (!row_changed(given_up_row.get(), row)) {
      return Gate::given_up;
    }
    std::shared_ptr<const R> old_row;
    std::exception_ptr old_error;
    std::lock_guard lock(mutex_);
    if (given_up_ && given_up_row_ == given_up_row) {
      old_row = std::move(given_up_row_);
      old_error = std::move(last_error_);
      clear_locked();
    }
    return Gate::go;
  }

  /// An explicit `start`: gives the key back its automatic starts; keeps its count of failures.
  void lift_give_up() noexcept {
    std::shared_ptr<const R> row;  // destroyed after the lock: `R`'s destructor is user code
    std::lock_guard lock(mutex_);
    if (given_up_) {
      given_up_ = false;
      row = std::move(given_up_row_);
      failure_count_ = 0;
    }
  }

  /// A process for the key was launched again.
  void count_restart() noexcept {
    std::lock_guard lock(mutex_);
    ++restarts_;
  }

  /// The latest pass that saw the key's row.
  [[nodiscard]] std::uint64_t seen_pass() const noexcept {
    std::lock_guard lock(mutex_);
    return seen_pass_;
  }
  /// Never lowers the mark. Passes do not overlap, but an exit marks with the pass it read
  /// earlier, and a pass that began since may have marked the key already (as it found the
  /// exiting process in the map, `Supervisor::start_in_background`).
  void mark_seen(std::uint64_t pass) noexcept {
    std::lock_guard lock(mutex_);
    seen_pass_ = std::max(seen_pass_, pass);
  }

  /// When the backoff ends, if the key is backing off (and not given up).
  [[nodiscard]] std::optional<clock_time> backoff_end(clock_time now) const noexcept {
    std::lock_guard lock(mutex_);
    if (given_up_ || next_start_ <= now) {
      return std::nullopt;
    }
    return next_start_;
  }

  /// A consistent copy, for `Supervisor::snapshot`.
  struct View {
    std::uint32_t restarts = 0;
    std::uint32_t consecutive_failures = 0;
    std::exception_ptr last_error;
    clock_time since;
    clock_time next_start;
    bool given_up = false;
  };
  [[nodiscard]] View view() const noexcept {
    std::lock_guard lock(mutex_);
    return View{restarts_, consecutive_, last_error_, since_, next_start_, given_up_};
  }

 private:
  // Counts this failure in the window; whether there are now more than the limit.
  bool exceeds_give_up(const RestartPolicy& policy, clock_time now) noexcept {
    if (policy.give_up_after == 0) {
      return false;
    }
    if (failure_count_ == 0 || now - window_start_ > policy.give_up_window) {
      // A fixed window from the first failure in it: simple, allocation-free, and within a
      // factor of two of a sliding window's strictness.
      window_start_ = now;
      failure_count_ = 0;
    }
    return ++failure_count_ > policy.give_up_after;
  }

  static std::shared_ptr<const R> copy_row(const R* row) noexcept {
    if constexpr (std::equality_comparable<R>) {
      if (row != nullptr) {
        try {
          return std::make_shared<const R>(*row);
        } catch (...) {  // NOLINT(bugprone-empty-catch): without the copy only a reset revives it.
        }
      }
    }
    return nullptr;
  }

  static bool row_changed(const R* given_up_row, const R& row) {
    if constexpr (std::equality_comparable<R>) {
      return given_up_row != nullptr && !(*given_up_row == row);
    } else {
      (void)given_up_row;
      (void)row;
      return false;
    }
  }

  void clear_locked() noexcept {
    given_up_ = false;
    given_up_row_.reset();
    consecutive_ = 0;
    failure_count_ = 0;
    last_error_ = nullptr;
  }

  mutable std::mutex mutex_;
  std::uint64_t hash_;
  std::uint32_t restarts_ = 0;
  std::uint32_t consecutive_ = 0;
  std::uint32_t failure_count_ = 0;  // failures in the give-up window
  clock_time window_start_{};
  std::exception_ptr last_error_;
  clock_time since_;
  clock_time next_start_{};
  bool given_up_ = false;
  std::shared_ptr<const R> given_up_row_;  // the row when given up, if `R` can be compared
  std::uint64_t seen_pass_ = 0;
};

}  // namespace supervisor::detail
