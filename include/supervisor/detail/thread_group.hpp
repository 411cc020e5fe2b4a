#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace supervisor::detail {

/// The one place where the library starts threads. Every thread it launches is joined by
/// `join_all`, so an owner that calls `join_all` before it returns leaves no thread behind.
///
/// A finished thread parks its `std::thread` handle in a list that the next `launch` reaps, so
/// a long-lived group holds at most the handles of threads that are still running, plus those
/// that finished since the last launch.
class ThreadGroup {
 public:
  ThreadGroup() = default;
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;
  ~ThreadGroup() { join_all(); }

  /// Runs `body` on a new thread. `body` must not throw (the library wraps user code before it
  /// gets here). Throws `std::system_error` if no thread can be created; `body` is not run then.
  void launch(std::function<void()> body) {
    reap();
    std::lock_guard lock(mutex_);
    auto slot = running_.emplace(running_.end());
    try {
      // The thread's epilogue takes `mutex_`, so it cannot move `*slot` before it is assigned.
      *slot = std::thread([this, slot, body = std::move(body)]() mutable {
        current_ = this;
        body();
        body = nullptr;  // Release what the body captured before the group is told we are done.
        std::lock_guard epilogue(mutex_);
        finished_.push_back(std::move(*slot));
        running_.erase(slot);
        if (running_.empty()) {
          idle_.notify_all();
        }
      });
    } catch (...) {
      running_.erase(slot);
      throw;
    }
  }

  /// Blocks until every launched thread has returned from its body and been joined. Must not be
  /// called from one of the group's own threads.
  void join_all() {
    std::vector<std::thread> finished;
    {
      std::unique_lock lock(mutex_);
      idle_.wait(lock, [&] { return running_.empty(); });
      finished.swap(finished_);
    }
    for (auto& thread : finished) {
      thread.join();
    }
  }

  /// Whether the calling thread is one this group launched.
  [[nodiscard]] bool owns_this_thread() const noexcept { return current_ == this; }

  /// How many threads have been launched and have not yet finished their body.
  [[nodiscard]] std::size_t running() const {
    std::lock_guard lock(mutex_);
    return running_.size();
  }

 private:
  void reap() {
    std::vector<std::thread> finished;
    {
      std::lock_guard lock(mutex_);
      finished.swap(finished_);
    }
    for (auto& thread : finished) {
      thread.join();
    }
  }

  inline static thread_local const ThreadGroup* current_ = nullptr;

  mutable std::mutex mutex_;
  std::condition_variable idle_;
  std::list<std::thread> running_;
  std::vector<std::thread> finished_;
};

}  // namespace supervisor::detail
