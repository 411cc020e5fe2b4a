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
/// while, then sleeps; `schedule` to the shared queue wakes a sleeper only when no worker spins.
/// At most half of the workers (at least one) spin at a time; the others sleep at once, and a
/// worker that takes queued work wakes one of them while more waits. So a pool between bursts
/// (`spin` after each) burns half the cores it would; on 2 cores the bench's cycles and shutdown
/// did not move beyond their noise (alternate runs with both workers spinning, 2026-12-06).
///
/// A coroutine that schedules another and then suspends (a wake-up; a start or a stop from a
/// caller that does not resume the process itself, supervisor_async.hpp) hands it to the same
/// thread, which resumes it next: no lock, no wake-up, and no other thread touching the
/// cache lines involved. So a slot is left to its owner while the owner goes on: a worker looking
/// for work steals it only once the owner has resumed nothing new for `steal_after`. Sleepers
/// are not woken for each hand-off: one of them is woken once to watch the slots of the busy
/// workers. It wakes once per watch period (a constructor argument) while any of them goes on,
/// takes a slot whose owner has stayed inside one coroutine for the whole period, and goes back
/// to plain sleep once they all rest. So a coroutine that keeps its worker (a blocking call, a
/// long computation) delays what it scheduled last by at most about two periods, never forever.
///
/// Thread-safety: every member may be called from any thread. The destructor runs what is still
/// queued (and whatever that schedules) to the end, then joins every worker.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include "supervisor/detail/fault_injection.hpp"
#include "supervisor/detail/mpmc_ring.hpp"
#include "supervisor/detail/spin.hpp"
#include "supervisor/detail/word_lock.hpp"

namespace supervisor {

class ThreadPool {
 public:
  /// How many threads a pool has by default: one per hardware thread, at least one.
  static unsigned default_threads() noexcept {
    return std::max(1U, std::thread::hardware_concurrency());
  }

  /// Starts `threads` workers (at least one). `spin` bounds how long an idle worker looks for
  /// work before it sleeps (a worker beyond the spinners' limit sleeps at once). `watch` is the
  /// watcher's period: about the longest a coroutine that keeps its worker delays the handle it
  /// scheduled last, when every other worker sleeps (capped at a year). Throws `std::system_error`
  /// if a thread cannot be started (the others are joined first).
  explicit ThreadPool(unsigned threads = default_threads(),
                      std::chrono::nanoseconds spin = std::chrono::microseconds(50),
                      std::chrono::nanoseconds watch = std::chrono::milliseconds(1))
      : count_(std::max(1U, threads)),
        spin_(spin),
        watch_period_(std::min<std::chrono::nanoseconds>(watch, std::chrono::hours(24 * 365))),
        workers_(new Worker[count_]),
        watch_marks_(new std::uint64_t[count_]) {
    for (unsigned i = 0; i < count_; ++i) {
      workers_[i].eyes = std::make_unique<Eye[]>(count_);
    }
    unsigned started = 0;
    try {
      for (; started < count_; ++started) {
        detail::fault_point(detail::FaultPoint::thread_create);  // the fault tests' seam
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
        // Its owner resumes it next. Wake a sleeper only to watch the slots, if none does and
        // none spins (a spinner looks at them, and when it stops spinning it watches them or,
        // busy, wakes a sleeper to).
        // Sequentially consistent, as the watcher's retire-then-look: one sees the other.
        if (watcher_.load() == nullptr && spinning_.load() == 0 && sleeping_.load() != 0) {
          std::lock_guard lock(mutex_);
          wake_.notify_one();
        }
        return;
      }
    }
    // Counted first: a worker that sees the count and not yet the handle looks again, instead
    // of sleeping past it.
    queued_.fetch_add(1);
    if (overflowed_.load() != 0 || !ring_.try_push(h.address())) {
      try {
        std::lock_guard lock(overflow_lock_);
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
  /// When a thief first saw a slot full, and its owner's `resumes` then.
  struct Eye {
    std::uint64_t resumes = 0;
    std::chrono::steady_clock::time_point since{};
    bool open = false;
  };
  struct alignas(64) Worker {
    std::atomic<void*> slot{nullptr};
    std::atomic<std::uint64_t> resumes{0};  // written by the worker only: it has moved on
    std::thread thread;
    // This worker's view of each other worker's slot, as a thief (see `steal_aged`).
    std::unique_ptr<Eye[]> eyes;
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

  /// Called by a worker that took a handle from the shared queue: if more is queued and nobody
  /// spins, wakes a sleeper for it. (A spinner that takes one does so as it stops spinning.) A
  /// woken worker takes one handle; without this, the rest would wait for a busy worker to come
  /// free, forever if each busy one waits for what is queued.
  void pass_on_queued() {
    if (queued_.load() != 0) {
      wake_one_if_idle();
    }
  }

  /// The next handle for `self`, or null. Steals from other slots only if `look_at_slots`.
  std::coroutine_handle<> take(Worker& self, bool look_at_slots = true) {
    if (void* own = self.slot.exchange(nullptr)) {
      return std::coroutine_handle<>::from_address(own);
    }
    if (queued_.load() != 0) {
      // The ring first: while the overflow list holds anything, every newer handle goes there.
      if (void* queued = ring_.try_pop()) {
        queued_.fetch_sub(1);
        pass_on_queued();
        return std::coroutine_handle<>::from_address(queued);
      }
      if (overflowed_.load() != 0) {
        std::coroutine_handle<> h;
        {
          std::lock_guard lock(overflow_lock_);
          if (!overflow_.empty()) {
            h = overflow_.front();
            overflow_.pop_front();
            overflowed_.fetch_sub(1);
            queued_.fetch_sub(1);
          }
        }
        if (h) {
          pass_on_queued();
          return h;
        }
      }
    }
    return look_at_slots ? steal_aged(self) : std::coroutine_handle<>{};
  }

  /// Takes a handle from another worker's slot once that worker has resumed nothing new for
  /// `steal_after` since `self` first saw the slot full: before that its owner is about to
  /// resume it itself. Each slot is timed on its own, so several full slots are all taken.
  std::coroutine_handle<> steal_aged(Worker& self) {
    for (unsigned i = 0; i < count_; ++i) {
      Worker& owner = workers_[i];
      if (&owner == &self || owner.slot.load(std::memory_order_relaxed) == nullptr) {
        continue;
      }
      const std::uint64_t resumes = owner.resumes.load(std::memory_order_relaxed);
      const auto now = std::chrono::steady_clock::now();
      Eye& eye = self.eyes[i];
      if (!eye.open || eye.resumes != resumes) {
        eye = Eye{resumes, now, true};
        continue;
      }
      if (now - eye.since >= steal_after) {
        eye.open = false;
        if (void* stolen = owner.slot.exchange(nullptr)) {
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

  void run(Worker& self, std::coroutine_handle<> h) noexcept {
    self.resumes.store(self.resumes.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    resume(h);
  }

  void work(Worker& self) noexcept {
    current_worker() = Current{this, &self};
    for (;;) {
      if (const std::coroutine_handle<> h = take(self)) {
        run(self, h);
        continue;
      }
      std::coroutine_handle<> found;
      if (claim_spin()) {
        // Other slots are looked at now and then only: they are stolen only once aged, and each
        // look pulls a cache line that their owner is writing.
        unsigned looks = 0;
        detail::spin_until(
            [&] {
              found = take(self, ++looks % 32 == 0);
              return found || stopping_.load(std::memory_order_relaxed);
            },
            spin_);
        // The last spinner to find work wakes a sleeper if more is queued, or if a slot is full
        // and nobody watches it: schedules that saw it spinning woke nobody, and it is about to
        // be busy (maybe blocked by what waits in that slot).
        if (spinning_.fetch_sub(1) == 1 && found && sleeping_.load() != 0 &&
            (queued_.load() != 0 || (watcher_.load() == nullptr && other_slot_full(self)))) {
          std::lock_guard lock(mutex_);
          wake_.notify_one();
        }
      }
      if (!found) {
        std::unique_lock lock(mutex_);
        const Woke woke = sleep(self, lock);
        if (woke.exit) {
          return;
        }
        found = woke.stolen;
        if (!found && !woke.slept) {
          // Work arrived after the spin, or is counted but not takeable yet: a `schedule`
          // between its count and its push, maybe preempted there. Give it the core first.
          lock.unlock();
          std::this_thread::yield();
        }
      }
      if (found) {
        run(self, found);
      }
    }
  }

  struct Woke {
    std::coroutine_handle<> stolen;  // from the slot of a worker held by one coroutine
    bool slept = false;
    bool exit = false;
  };

  /// Sleeps until the shared queue has work or the pool stops. While another worker's slot
  /// holds a handle, one sleeper is the watcher (`watcher_`): it wakes every `watch_period_`,
  /// takes a slot whose owner has resumed nothing in the whole period, and retires once no
  /// other worker has moved on in a period.
  Woke sleep(Worker& self, std::unique_lock<std::mutex>& lock) {
    Woke woke;
    sleeping_.fetch_add(1);
    bool marked = false;  // the period's marks are taken; it ends at `period_end`
    std::chrono::steady_clock::time_point period_end;
    for (;;) {
      if (queued_.load() != 0) {
        break;
      }
      if (stopping_) {
        woke.exit = !has_work();
        break;
      }
      if (watcher_.load() != &self && !(other_slot_full(self) && claim_watch(self))) {
        wake_.wait(lock);
        woke.slept = true;
        marked = false;
        continue;
      }
      if (!marked) {
        for (unsigned i = 0; i < count_; ++i) {
          watch_marks_[i] = workers_[i].resumes.load();
        }
        period_end = std::chrono::steady_clock::now() + watch_period_;
        marked = true;
      }
      const bool timed_out = wake_.wait_until(lock, period_end) == std::cv_status::timeout;
      woke.slept = true;
      if (!timed_out) {
        continue;  // notified (or spuriously): look again; the period goes on
      }
      marked = false;
      bool moved_on = false;
      for (unsigned i = 0; i < count_ && !woke.stolen; ++i) {
        if (&workers_[i] == &self) {
          continue;
        }
        if (workers_[i].resumes.load() != watch_marks_[i]) {
          moved_on = true;
        } else if (void* stuck = workers_[i].slot.exchange(nullptr)) {
          woke.stolen = std::coroutine_handle<>::from_address(stuck);
        }
      }
      if (woke.stolen) {
        break;
      }
      if (!moved_on) {
        // Retire, then look at the slots again (in the loop): a slot filled by a `schedule`
        // that still saw this watcher is seen here.
        watcher_.store(nullptr);
      }
    }
    sleeping_.fetch_sub(1);
    if (watcher_.load() == &self) {
      // Busy from now on (or gone): hand the watch to a sleeper if a slot still needs one.
      watcher_.store(nullptr);
      if (other_slot_full(self)) {
        wake_.notify_one();
      }
    }
    return woke;
  }

  bool other_slot_full(const Worker& self) const noexcept {
    for (unsigned i = 0; i < count_; ++i) {
      if (&workers_[i] != &self && workers_[i].slot.load() != nullptr) {
        return true;
      }
    }
    return false;
  }

  /// Counts `self` among the spinners unless `max_spinners_` already spin.
  bool claim_spin() noexcept {
    unsigned spinning = spinning_.load();
    while (spinning < max_spinners_) {
      if (spinning_.compare_exchange_weak(spinning, spinning + 1)) {
        return true;
      }
    }
    return false;
  }

  bool claim_watch(Worker& self) noexcept {
    Worker* none = nullptr;
    return watcher_.compare_exchange_strong(none, &self);
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

  /// How long a worker looking for work leaves a handle in the slot of a worker that goes on.
  static constexpr std::chrono::microseconds steal_after{3};
  const unsigned count_;
  const unsigned max_spinners_ = std::max(1U, count_ / 2);
  const std::chrono::nanoseconds spin_;
  const std::chrono::nanoseconds watch_period_;  // how often the watcher looks at busy slots
  std::unique_ptr<Worker[]> workers_;
  std::unique_ptr<std::uint64_t[]> watch_marks_;  // each worker's `resumes`; under `mutex_`
  std::atomic<Worker*> watcher_{nullptr};
  std::mutex mutex_;
  std::condition_variable wake_;
  detail::MpmcRing ring_{ring_capacity};
  // Not `mutex_`: a thread scheduling faster than the workers take (a shutdown of a million
  // processes) pushes while they pop, and a `std::mutex` sleeps at each meeting (290,000 futex
  // calls in such a shutdown, 2026-12-06); a `WordLock`'s brief spin outlasts a push or pop.
  detail::WordLock overflow_lock_;
  std::deque<std::coroutine_handle<>> overflow_;  // under `overflow_lock_`
  std::atomic<bool> stopping_{false};             // set under `mutex_`; read by spinners too
  std::atomic<std::size_t> queued_{0};            // handles in the ring and the overflow list
  std::atomic<std::size_t> overflowed_{0};        // handles in the overflow list
  std::atomic<unsigned> spinning_{0};
  std::atomic<unsigned> sleeping_{0};
};

}  // namespace supervisor
