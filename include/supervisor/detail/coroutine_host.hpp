#pragma once

/// \file
/// `CoroutineHost`: what a supervisor of coroutine processes keeps besides its map: the executor
/// they run on (the user's, or a `ThreadPool` of its own for the length of `run`), and the count
/// of those that have not yet finished with the supervisor, which `run` waits for before it
/// returns (no thread to join stands for them).

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <optional>

#include "supervisor/executor.hpp"
#include "supervisor/thread_pool.hpp"

namespace supervisor::detail {

class CoroutineHost {
 public:
  explicit CoroutineHost(ExecutorRef user) noexcept : user_(user) {}
  CoroutineHost(const CoroutineHost&) = delete;
  CoroutineHost& operator=(const CoroutineHost&) = delete;
  ~CoroutineHost() = default;

  /// At the start of `run`: without a user executor, starts the supervisor's own pool. Throws
  /// `std::system_error` if its threads cannot be started.
  void open() {
    if (!user_) {
      own_.emplace();
      own_view_.store(&*own_);
    }
  }

  /// At the end of `run`, after the shutdown: waits until every coroutine process has settled,
  /// then joins the pool of its own, if any.
  void close() noexcept {
    wait_settled();
    own_view_.store(nullptr);
    own_.reset();
  }

  [[nodiscard]] ExecutorRef executor() noexcept {
    if (user_) {
      return user_;
    }
    return own_ ? ExecutorRef(*own_) : ExecutorRef();
  }

  /// Whether the calling thread is a thread of the executor: a blocking call there would wait
  /// for work that may need this very thread.
  [[nodiscard]] bool on_executor_thread() const noexcept {
    if (user_) {
      return user_.running_in_this_thread();
    }
    const ThreadPool* pool = own_view_.load();  // any thread may ask while `run` opens it
    return pool != nullptr && pool->running_in_this_thread();
  }

  /// Before a coroutine process is scheduled.
  void launching() noexcept {
    const std::lock_guard lock(mutex_);
    ++unsettled_;
  }
  /// Once that process's last touch of the supervisor is over (or its launch failed). Under the
  /// lock, so that `wait_settled` cannot return, and the supervisor go, before this returns.
  void settled() noexcept {
    const std::lock_guard lock(mutex_);
    if (--unsettled_ == 0) {
      all_settled_.notify_all();
    }
  }
  void wait_settled() noexcept {
    std::unique_lock lock(mutex_);
    while (unsettled_ != 0) {
      all_settled_.wait(lock);
    }
  }

 private:
  ExecutorRef user_;
  std::optional<ThreadPool> own_;
  std::atomic<const ThreadPool*> own_view_{nullptr};
  std::mutex mutex_;
  std::condition_variable all_settled_;
  std::size_t unsettled_ = 0;
};

}  // namespace supervisor::detail
