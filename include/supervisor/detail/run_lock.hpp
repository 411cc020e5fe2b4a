#pragma once

/// \file
/// `RunLock`: at most one `Supervisor::run` at a time, with a wait that a `Cancel` can cut short.

#include <condition_variable>
#include <mutex>
#include <system_error>

#include "supervisor/cancel.hpp"

namespace supervisor::detail {

/// A lock whose acquisition can be cut short by a `Cancel`: at most one `Supervisor::run` at a
/// time, and a second caller can give up waiting.
class RunLock {
 public:
  /// Blocks until the lock is free or `cancel` fires (`errc::canceled` /
  /// `errc::deadline_exceeded`, lock not taken).
  std::error_code acquire(const Cancel& cancel) {
    bool taken = false;
    std::error_code ec = wait(released_, mutex_, cancel, [&] {
      // Runs under `mutex_`: the first waiter to see the lock free takes it.
      if (!held_) {
        held_ = true;
        taken = true;
      }
      return taken;
    });
    return taken ? std::error_code{} : ec;
  }

  void release() {
    {
      std::lock_guard lock(mutex_);
      held_ = false;
    }
    released_.notify_one();
  }

  [[nodiscard]] bool held() const {
    std::lock_guard lock(mutex_);
    return held_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable released_;
  bool held_ = false;
};

}  // namespace supervisor::detail
