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

  /// Between `open` and `close`: from `run`'s starts, and from a coroutine process that has not
  /// settled (which `close` waits for). Not from any thread at any time, as `on_executor_thread`.
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

  /// Before a coroutine process is scheduled. Lock-free: it runs once per process.
  void launching() noexcept { unsettled_.fetch_add(1); }
  /// Once that process's last touch of the supervisor is over (or its launch failed).
  /// A decrement that leaves others unsettled is lock-free. One that may be the last happens
  /// under the lock: `wait_settled` sees zero only under it, so it cannot return, and the
  /// supervisor go, before this is done with the lock and the condition.
  void settled() noexcept {
    for (std::size_t seen = unsettled_.load(); seen > 1;) {
      if (unsettled_.compare_exchange_weak(seen, seen - 1)) {
        return;
      }
    }
    const std::lock_guard lock(mutex_);
    if (unsettled_.fetch_sub(1) == 1) {
      all_settled_.notify_all();
    }
  }
  void wait_settled() noexcept {
    std::unique_lock lock(mutex_);
    while (unsettled_.load() != 0) {
      all_settled_.wait(lock);
    }
  }

 private:
  ExecutorRef user_;
  std::optional<ThreadPool> own_;
  std::atomic<const ThreadPool*> own_view_{nullptr};
  std::mutex mutex_;
  std::condition_variable all_settled_;
  // Only a decrement from 1 makes it zero, and that one holds `mutex_`.
  std::atomic<std::size_t> unsettled_{0};
};

}  // namespace supervisor::detail
