#pragma once

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
    std::unique_lock lock(mutex_);
    std::error_code ec = wait(released_, lock, cancel, [&] { return !held_; });
    if (!ec) {
      held_ = true;
    }
    return ec;
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
  std::condition_variable_any released_;
  bool held_ = false;
};

}  // namespace supervisor::detail
