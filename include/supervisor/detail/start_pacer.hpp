#pragma once

/// \file
/// `StartPacer`: the slots that bound how many background starts are in flight at once.

#include <condition_variable>
#include <cstddef>
#include <mutex>

namespace supervisor::detail {

/// At most `limit` slots are held at once (zero: no limit, and no cost). A pass takes a slot
/// before it launches a process and the process gives it back once it is ready or has returned.
/// `close` (at shutdown) wakes every waiter and refuses slots until `open`.
class StartPacer {
 public:
  explicit StartPacer(std::size_t limit) noexcept : limit_(limit) {}

  [[nodiscard]] bool limited() const noexcept { return limit_ != 0; }

  /// Takes a slot if one is free now.
  bool try_acquire() {
    if (!limited()) {
      return true;
    }
    std::lock_guard lock(mutex_);
    if (closed_ || held_ >= limit_) {
      return false;
    }
    ++held_;
    return true;
  }

  /// Waits for a slot; false if the pacer was closed first.
  bool acquire() {
    if (!limited()) {
      return true;
    }
    std::unique_lock lock(mutex_);
    freed_.wait(lock, [&] { return closed_ || held_ < limit_; });
    if (closed_) {
      return false;
    }
    ++held_;
    return true;
  }

  void release() noexcept {
    if (!limited()) {
      return;
    }
    {
      std::lock_guard lock(mutex_);
      --held_;
    }
    freed_.notify_one();
  }

  void open() noexcept {
    std::lock_guard lock(mutex_);
    closed_ = false;
  }

  void close() noexcept {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    freed_.notify_all();
  }

  /// The slots held now (for tests and the snapshot).
  [[nodiscard]] std::size_t held() const noexcept {
    std::lock_guard lock(mutex_);
    return held_;
  }

 private:
  const std::size_t limit_;
  mutable std::mutex mutex_;
  std::condition_variable freed_;
  std::size_t held_ = 0;
  bool closed_ = false;
};

}  // namespace supervisor::detail
