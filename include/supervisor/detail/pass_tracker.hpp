#pragma once

/// \file
/// `PassTracker`: how the initial pass of `run` knows that every start it began has finished.

#include <cstddef>
#include <mutex>
#include <stop_token>

namespace supervisor::detail {

/// Counts the background starts of one pass, so that `run` can wait until every start the
/// initial pass began has finished (the process became ready, or it returned first).
///
/// Shared by the pass and its processes: a start may finish long after `run` stopped waiting.
class PassTracker {
 public:
  void add() {
    std::lock_guard lock(mutex_);
    ++pending_;
  }

  /// One start finished.
  void finish() {
    bool now_settled = false;
    {
      std::lock_guard lock(mutex_);
      --pending_;
      now_settled = settled_now();
    }
    settle(now_settled);
  }

  /// The pass has begun every start it will begin.
  void end_iteration() {
    bool now_settled = false;
    {
      std::lock_guard lock(mutex_);
      iterating_ = false;
      now_settled = settled_now();
    }
    settle(now_settled);
  }

  /// Requested once the iteration has ended and every start has finished.
  [[nodiscard]] std::stop_source& settled() noexcept { return settled_; }

 private:
  [[nodiscard]] bool settled_now() const noexcept { return !iterating_ && pending_ == 0; }

  // Outside the lock: requesting runs the callbacks on the token, and the clock's among them is
  // the user's.
  void settle(bool now_settled) noexcept {
    if (now_settled) {
      settled_.request_stop();
    }
  }

  std::mutex mutex_;
  std::size_t pending_ = 0;
  bool iterating_ = true;
  std::stop_source settled_;
};

}  // namespace supervisor::detail
