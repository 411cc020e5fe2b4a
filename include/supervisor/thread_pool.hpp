#pragma once

/// \file
/// `ThreadPool`: the library's own `Executor`, standard library only. A few threads resume the
/// coroutine processes of any number of supervisors.
///
/// Each worker takes, in order: the handle in its own slot (the last one it scheduled itself),
/// the shared queue (in about the order of scheduling), and the slots of other workers
/// (stealing). The shared queue is a lock-free ring of `ring_capacity` handles, so that a thread
/// scheduling many coroutines and the workers taking them never wait for each other; past that,
/// the handles wait in an overflow list under a lock. A worker that finds nothing spins for a
/// while, then sleeps; `schedule` wakes a sleeper only when no worker is spinning. A coroutine
/// that schedules another and then suspends (a start, a stop) hands it to the same thread, which
/// resumes it next, with no lock and no wake-up.
///
/// Thread-safety: every member may be called from any thread. The destructor runs what is still
/// queued (and whatever that schedules) to the end, then joins every worker.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include "supervisor/detail/mpmc_ring.hpp"
#include "supervisor/detail/spin.hpp"

namespace supervisor {

class ThreadPool {
 public:
  /// How many threads a pool has by default: one per hardware thread, at least one.
  static unsigned default_threads() noexcept {
    return std::max(1U, std::thread::hardware_concurrency());
  }

  /// Starts `threads` workers (at least one). `spin` bounds how long an idle worker looks for
  /// work before it sleeps. Throws `std::system_error` if a thread cannot be started (the others
  /// are joined first).
  explicit ThreadPool(unsigned threads = default_threads(),
                      std::chrono::nanoseconds spin = std::chrono::microseconds(50))
      : count_(std::max(1U, threads)), spin_(spin), workers_(new Worker[count_]) {
    unsigned started = 0;
    try {
      for (; started < count_; ++started) {
        workers_[started].thread = std::thread([this, started] { work(workers_[started]); });
      }
    } catch (...) {
      stop_and_join();
      throw;
    }
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() { stop_and_join(); }

  /// Resumes `h` later on a worker (a null `h` is ignored). From a worker of this pool the handle
  /// goes to that worker's slot if it is free, else to the shared queue. Does not wait for any
  /// worker: the ring takes it without a lock; only past the ring's capacity does it take the
  /// overflow list's short lock, and may throw `std::bad_alloc` there (then nothing was
  /// scheduled). Happens-before: what the caller did before `schedule` is visible to `h`.
  void schedule(std::coroutine_handle<> h) {
    if (!h) {
      return;  // nothing to resume (a null handle in the ring would read as "empty")
    }
    const Current& current = current_worker();
    if (current.pool == this) {
      void* expected = nullptr;
      if (current.worker->slot.compare_exchange_strong(expected, h.address())) {
        wake_one_if_idle();
        return;
      }
    }
    // Counted first: a worker that sees the count and not yet the handle looks again, instead
    // of sleeping past it.
    queued_.fetch_add(1);
    if (overflowed_.load() != 0 || !ring_.try_push(h.address())) {
      try {
        std::lock_guard lock(mutex_);
        overflow_.push_back(h);
        overflowed_.fetch_add(1);
      } catch (...) {
        queued_.fetch_sub(1);
        throw;
      }
    }
    wake_one_if_idle();
  }

  /// How many handles the lock-free part of the shared queue holds.
  static constexpr std::size_t ring_capacity = 4096;

  /// Whether the calling thread is one of this pool's workers.
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return current_worker().pool == this;
  }

  [[nodiscard]] unsigned size() const noexcept { return count_; }

 private:
  struct alignas(64) Worker {
    std::atomic<void*> slot{nullptr};
    std::thread thread;
  };
  struct Current {
    const ThreadPool* pool = nullptr;
    Worker* worker = nullptr;
  };
  static Current& current_worker() noexcept {
    thread_local Current current;
    return current;
  }

  void wake_one_if_idle() {
    // Sequentially consistent, as the sleeper's count-then-look: one of the two sees the other.
    if (spinning_.load() == 0 && sleeping_.load() != 0) {
      std::lock_guard lock(mutex_);
      wake_.notify_one();
    }
  }

  std::coroutine_handle<> take(Worker& self) {
    if (void* own = self.slot.exchange(nullptr)) {
      return std::coroutine_handle<>::from_address(own);
    }
    if (queued_.load() != 0) {
      // The ring first: while the overflow list holds anything, every newer handle goes there.
      if (void* queued = ring_.try_pop()) {
        queued_.fetch_sub(1);
        return std::coroutine_handle<>::from_address(queued);
      }
      if (overflowed_.load() != 0) {
        std::lock_guard lock(mutex_);
        if (!overflow_.empty()) {
          const std::coroutine_handle<> h = overflow_.front();
          overflow_.pop_front();
          overflowed_.fetch_sub(1);
          queued_.fetch_sub(1);
          return h;
        }
      }
    }
    for (unsigned i = 0; i < count_; ++i) {
      if (workers_[i].slot.load(std::memory_order_relaxed) != nullptr) {
        if (void* stolen = workers_[i].slot.exchange(nullptr)) {
          return std::coroutine_handle<>::from_address(stolen);
        }
      }
    }
    return {};
  }

  bool has_work() const noexcept {
    if (queued_.load() != 0) {
      return true;
    }
    for (unsigned i = 0; i < count_; ++i) {
      if (workers_[i].slot.load() != nullptr) {
        return true;
      }
    }
    return false;
  }

  static void resume(std::coroutine_handle<> h) noexcept {
    try {
      h.resume();
    } catch (...) {  // A coroutine that lets an exception out of `resume`: report, go on.
      try {
        std::clog << "supervisor: a coroutine resumed by ThreadPool threw\n";
      } catch (...) {  // NOLINT(bugprone-empty-catch): nowhere left to report to.
      }
    }
  }

  void work(Worker& self) noexcept {
    current_worker() = Current{this, &self};
    for (;;) {
      if (const std::coroutine_handle<> h = take(self)) {
        resume(h);
        continue;
      }
      spinning_.fetch_add(1);
      std::coroutine_handle<> found;
      detail::spin_until([&] { return static_cast<bool>(found = take(self)); }, spin_);
      // The last spinner to find work wakes a sleeper if more is waiting: schedules that saw it
      // spinning woke nobody, and it is about to be busy.
      if (spinning_.fetch_sub(1) == 1 && found && sleeping_.load() != 0 && has_work()) {
        std::lock_guard lock(mutex_);
        wake_.notify_one();
      }
      if (found) {
        resume(found);
        continue;
      }
      std::unique_lock lock(mutex_);
      sleeping_.fetch_add(1);
      bool slept = false;
      while (!stopping_ && !has_work()) {
        wake_.wait(lock);
        slept = true;
      }
      sleeping_.fetch_sub(1);
      if (stopping_ && !has_work()) {
        return;
      }
      if (!slept) {
        // Work arrived after the spin, or is counted but not takeable yet: a `schedule` between
        // its count and its push, maybe preempted there. Give it the core before looking again.
        lock.unlock();
        std::this_thread::yield();
      }
    }
  }

  void stop_and_join() noexcept {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (unsigned i = 0; i < count_; ++i) {
      if (workers_[i].thread.joinable()) {
        workers_[i].thread.join();
      }
    }
  }

  const unsigned count_;
  const std::chrono::nanoseconds spin_;
  std::unique_ptr<Worker[]> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  detail::MpmcRing ring_{ring_capacity};
  std::deque<std::coroutine_handle<>> overflow_;  // under `mutex_`
  bool stopping_ = false;                         // under `mutex_`
  std::atomic<std::size_t> queued_{0};            // handles in the ring and the overflow list
  std::atomic<std::size_t> overflowed_{0};        // handles in the overflow list
  std::atomic<unsigned> spinning_{0};
  std::atomic<unsigned> sleeping_{0};
};

}  // namespace supervisor
