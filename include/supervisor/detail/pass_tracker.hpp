#pragma once

/// \file
/// `PassTracker`: how the initial pass of `run` knows that every start it began has finished.

#include <atomic>
#include <cstddef>
#include <stop_token>

namespace supervisor::detail {

/// Counts the background starts of one pass, so that `run` can wait until every start the
/// initial pass began has finished (the process became ready, or it returned first).
///
/// Owned by `run` until its shutdown has ended every process; the processes of its pass hold a
/// plain pointer (a start may finish long after `run` stopped waiting for it).
class PassTracker {
 public:
  void add() noexcept { count_.fetch_add(1, std::memory_order_relaxed); }

  /// One start finished.
  void finish() noexcept { release_one(); }

  /// The pass has begun every start it will begin.
  void end_iteration() noexcept { release_one(); }

  /// Requested once the iteration has ended and every start has finished.
  [[nodiscard]] std::stop_source& settled() noexcept { return settled_; }

 private:
  // Lock-free: the pass counts every start and each process uncounts its own, from the
  // executor's threads, so a lock here was taken twice per process by threads that race.
  void release_one() noexcept {
    // Acquire-release: whoever brings it to zero sees every other finish before it settles.
    if (count_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      // Requesting runs the callbacks on the token, and the clock's among them is the user's:
      // no lock of ours is held here.
      settled_.request_stop();
    }
  }

  // The starts not yet finished, plus one while the pass still iterates: it reaches zero once,
  // when both are over.
  std::atomic<std::size_t> count_{1};
  std::stop_source settled_;
};

}  // namespace supervisor::detail
