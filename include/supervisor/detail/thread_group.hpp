#pragma once

/// \file
/// `ThreadGroup`: the one place that starts the threads of processes, and joins them all.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "supervisor/detail/fault_injection.hpp"
#include "supervisor/detail/spin.hpp"

namespace supervisor::detail {

/// Starts a thread of the library's own (not a process's): the restart loop, a deadline timer.
/// Throws as `std::jthread` does (`std::system_error`, `std::bad_alloc`).
template <class F>
std::jthread start_jthread(F body) {
  fault_point(FaultPoint::thread_create);
  return std::jthread(std::move(body));
}

/// How a `ThreadGroup` treats a thread whose body has returned.
struct ThreadReuse {
  /// Keep the thread parked for the next `launch` instead of letting it exit.
  bool enabled = false;
  /// A parked thread exits after this long without work.
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(1);
  /// A parked thread busy-waits this long for new work before it sleeps.
  std::chrono::nanoseconds spin = std::chrono::nanoseconds::zero();
};

/// The one place where the library starts the threads of processes. Every thread it launches is
/// joined by `join_all`, so an owner that calls `join_all` before it returns leaves no thread
/// behind.
///
/// Without reuse, a thread runs one body and exits; its `std::thread` handle waits in a list that
/// the next `launch` (or `join_all`) joins, so a long-lived group holds few dead handles. With
/// reuse, a thread whose body returned parks for `idle_timeout` and takes the next body handed to
/// `launch`, which then costs a hand-off instead of a thread creation.
class ThreadGroup {
 public:
  explicit ThreadGroup(ThreadReuse reuse = {}) : reuse_(reuse) {}
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;
  ~ThreadGroup() { join_all(); }

  /// Runs `body` on a thread of the group: a parked one if reuse is on and one is idle, else a
  /// new one. `body` must not throw (the library wraps user code before it gets here). Throws
  /// `std::system_error` if no thread can be created (`std::bad_alloc` without memory); `body`
  /// is not run then.
  void launch(std::function<void()> body) {
    reap();
    std::lock_guard lock(mutex_);
    if (!idle_.empty()) {
      Worker* worker = idle_.back();
      idle_.pop_back();
      worker->body = std::move(body);
      worker->has_work.store(true, std::memory_order_release);
      ++busy_;
      worker->wake.notify_one();
      return;
    }
    fault_point(FaultPoint::thread_create);
    auto worker = workers_.emplace(workers_.end());
    worker->self = worker;
    try {
      // Room in the lists a finishing thread enters, so that it never allocates (nor throws).
      make_room(idle_, workers_.size());
      make_room(finished_, finished_.size() + workers_.size());
      // The body travels inside the closure: the new thread starts it without `mutex_` (which
      // this thread still holds), so it never wakes up only to block. Its epilogue does take
      // `mutex_`, so it cannot touch `worker->thread` before it is assigned.
      worker->thread = std::thread(
          [this, w = &*worker, first = std::move(body)]() mutable { work(*w, std::move(first)); });
    } catch (...) {
      workers_.erase(worker);
      throw;
    }
    ++busy_;
  }

  /// From now until `join_all` returns, a thread whose body returns exits instead of parking,
  /// and parked threads are told to exit: for an owner about to stop everything it runs.
  void close() {
    std::lock_guard lock(mutex_);
    closing_ = true;
    for (Worker* worker : idle_) {
      worker->wake.notify_one();
    }
  }

  /// Blocks until every thread of the group has exited and been joined (parked threads are told
  /// to exit). Must not be called from one of the group's own threads, nor concurrently with
  /// `launch`. The group can be used again afterwards.
  void join_all() {
    std::unique_lock lock(mutex_);
    closing_ = true;
    for (Worker* worker : idle_) {
      worker->wake.notify_one();
    }
    // Join each thread as it finishes, so that freeing its stack overlaps with the exits still
    // to come.
    for (;;) {
      if (!finished_.empty()) {
        std::thread finished = std::move(finished_.back());
        finished_.pop_back();
        lock.unlock();
        finished.join();
        lock.lock();
        continue;
      }
      if (workers_.empty()) {
        break;
      }
      gone_.wait(lock, [&] { return workers_.empty() || !finished_.empty(); });
    }
    closing_ = false;
  }

  /// Whether the calling thread is one this group launched.
  [[nodiscard]] bool owns_this_thread() const noexcept { return current_ == this; }

  /// How many threads of the group are running a body right now.
  [[nodiscard]] std::size_t busy() const {
    std::lock_guard lock(mutex_);
    return busy_;
  }

  /// How many threads of the group exist (busy or parked).
  [[nodiscard]] std::size_t threads() const {
    std::lock_guard lock(mutex_);
    return workers_.size();
  }

 private:
  struct Worker {
    std::thread thread;
    std::function<void()> body;
    std::atomic<bool> has_work{false};
    std::condition_variable wake;
    std::list<Worker>::iterator self;
  };

  void work(Worker& worker, std::function<void()> body) {
    current_ = this;
    for (;;) {
      body();
      body = nullptr;  // Release what the body captured before the group hears it is done.
      if (!park(worker, body)) {
        return;
      }
    }
  }

  /// Waits for the next body. Returns false when the thread should exit (then it has already
  /// left the group and must not touch it again).
  bool park(Worker& worker, std::function<void()>& body) {
    std::unique_lock lock(mutex_);
    --busy_;
    if (reuse_.enabled && !closing_) {
      idle_.push_back(&worker);
      lock.unlock();
      spin_until([&] { return worker.has_work.load(std::memory_order_acquire); }, reuse_.spin);
      lock.lock();
      worker.wake.wait_for(lock, reuse_.idle_timeout, [&] {
        return worker.has_work.load(std::memory_order_relaxed) || closing_;
      });
      if (worker.has_work.load(std::memory_order_relaxed)) {
        worker.has_work.store(false, std::memory_order_relaxed);
        body = std::move(worker.body);
        return true;
      }
      std::erase(idle_, &worker);
    }
    finished_.push_back(std::move(worker.thread));
    workers_.erase(worker.self);  // `worker` is gone from here on
    // Whoever is in `join_all` waits for the first finished thread, or for the last.
    const bool wake_joiner = finished_.size() == 1 || workers_.empty();
    lock.unlock();
    // The group outlives this call: `join_all` (or `launch`) joins this thread first.
    if (wake_joiner) {
      gone_.notify_all();
    }
    return false;
  }

  void reap() {
    for (;;) {
      std::thread finished;
      {
        std::lock_guard lock(mutex_);
        if (finished_.empty()) {
          return;
        }
        finished = std::move(finished_.back());
        finished_.pop_back();
      }
      finished.join();
    }
  }

  template <class T>
  static void make_room(std::vector<T>& list, std::size_t n) {
    if (list.capacity() < n) {
      list.reserve(std::max(n, 2 * list.capacity()));
    }
  }

  inline static thread_local const ThreadGroup* current_ = nullptr;

  ThreadReuse reuse_;
  mutable std::mutex mutex_;
  std::condition_variable gone_;
  std::list<Worker> workers_;
  std::vector<Worker*> idle_;
  std::vector<std::thread> finished_;
  std::size_t busy_ = 0;
  bool closing_ = false;
};

}  // namespace supervisor::detail
