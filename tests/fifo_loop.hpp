// `FifoLoop`: an executor of one thread, first in first out, like one io_context thread.

#pragma once

#include <condition_variable>
#include <coroutine>
#include <deque>
#include <mutex>
#include <thread>

#include "supervisor/executor.hpp"

namespace test {

/// One thread, first in first out, like one io_context thread.
class FifoLoop {
 public:
  FifoLoop() : thread_([this] { work(); }) {}
  FifoLoop(const FifoLoop&) = delete;
  FifoLoop& operator=(const FifoLoop&) = delete;
  ~FifoLoop() {
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  void schedule(std::coroutine_handle<> h) {
    {
      const std::lock_guard lock(mutex_);
      queue_.push_back(h);
    }
    wake_.notify_all();
  }
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return std::this_thread::get_id() == thread_.get_id();
  }
  /// Runs what is queued on the calling thread: unblocks a test that failed.
  void drain_here() {
    for (;;) {
      std::coroutine_handle<> h;
      {
        const std::lock_guard lock(mutex_);
        if (queue_.empty()) {
          return;
        }
        h = queue_.front();
        queue_.pop_front();
      }
      h.resume();
    }
  }

 private:
  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        return;
      }
      const std::coroutine_handle<> h = queue_.front();
      queue_.pop_front();
      lock.unlock();
      h.resume();
      lock.lock();
    }
  }
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::coroutine_handle<>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};
static_assert(supervisor::Executor<FifoLoop>);

}  // namespace test
