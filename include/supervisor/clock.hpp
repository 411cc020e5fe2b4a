#pragma once

/// \file
/// Time as the supervisor sees it: the `Clock` concept, the real `SteadyClock`, the type-erased
/// `AnyClock` that `Options` holds, and `ManualClock` for tests.
///
/// Only the waits the supervisor schedules itself (the initial wait and the restart interval) go
/// through this clock. Deadlines given to blocking calls (`Cancel`) are real time.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <ctime>
#include <memory>
#include <mutex>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace supervisor {

/// A source of time that can also do the waiting, so that a fake clock can wake its sleepers when
/// it is advanced (a real `condition_variable::wait_until` with a fake time point would wait in
/// real time).
///
/// - `now()` returns the current time as a `std::chrono::steady_clock::time_point`.
/// - `wait_until(t, token)` blocks the calling thread until `now() >= t` (returns `true`) or
///   until `token` is requested (returns `false`). It must return promptly once `token` is
///   requested, and must be safe to call from several threads at once.
/// - Optionally, `coarse_now()`: a cheaper reading of the same time that may lag `now()` (by a
///   few milliseconds for `SteadyClock`) and never runs ahead of it (`HasCoarseNow`). Without
///   it, `now()` serves. The supervisor stamps each process's start, readiness and stop with it.
template <class C>
concept Clock = requires(C& clock, std::chrono::steady_clock::time_point t, std::stop_token token) {
  { clock.now() } -> std::convertible_to<std::chrono::steady_clock::time_point>;
  { clock.wait_until(t, token) } -> std::convertible_to<bool>;
};

/// Whether a clock offers the cheaper, coarser reading (see `Clock`).
template <class C>
concept HasCoarseNow = requires(C& clock) {
  { clock.coarse_now() } -> std::convertible_to<std::chrono::steady_clock::time_point>;
};

/// The real clock: `std::chrono::steady_clock`. Stateless; the default in `Options`.
class SteadyClock {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  [[nodiscard]] time_point now() const noexcept { return std::chrono::steady_clock::now(); }

  /// The same clock as the kernel last updated it: on Linux `CLOCK_MONOTONIC_COARSE`, the base
  /// that `steady_clock` reads too, so it never leads `now()` and lags it by a few milliseconds
  /// (about two of the kernel's ticks: 3 to 7 ms measured on a 250 Hz kernel). It costs a few
  /// nanoseconds, where `now()` reads the CPU's time-stamp counter, 40 to 60 ns on a virtual
  /// machine. Elsewhere, `now()`.
  [[nodiscard]] time_point coarse_now() const noexcept {
#if defined(__linux__) && defined(CLOCK_MONOTONIC_COARSE)
    timespec at{};
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &at) == 0) {
      return time_point(std::chrono::duration_cast<time_point::duration>(
          std::chrono::seconds(at.tv_sec) + std::chrono::nanoseconds(at.tv_nsec)));
    }
#endif
    return now();
  }

  /// Blocks until `t` or until `token` is requested. Thread-safe. Allocates nothing (a
  /// `std::condition_variable_any` would), so a restart loop's wait cannot fail for memory.
  bool wait_until(time_point t, const std::stop_token& token) const {
    std::mutex mutex;
    std::condition_variable cv;
    std::stop_callback wake(token, [&]() noexcept {
      std::lock_guard lock(mutex);
      cv.notify_all();
    });
    std::unique_lock lock(mutex);
    (void)cv.wait_until(lock, t, [&] { return token.stop_requested(); });
    return !token.stop_requested();
  }
};

/// A `Clock` behind a shared handle, so that `Options` need not be a template on the clock type.
/// Copies share the same clock object.
class AnyClock {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  /// The real clock.
  AnyClock() : AnyClock(SteadyClock{}) {}

  /// Shares ownership of `clock` (typical for a `ManualClock` that a test also drives).
  template <Clock C>
  // NOLINTNEXTLINE(google-explicit-constructor): a clock converts to AnyClock on purpose.
  AnyClock(std::shared_ptr<C> clock) : impl_(std::make_shared<Model<C>>(std::move(clock))) {}

  /// Takes a copy of a copyable clock.
  template <Clock C>
  requires(!std::is_same_v<std::remove_cvref_t<C>, AnyClock> &&
           std::constructible_from<std::remove_cvref_t<C>, C>)
      // NOLINTNEXTLINE(google-explicit-constructor, bugprone-forwarding-reference-overload)
      AnyClock(C&& clock)
      : AnyClock(std::make_shared<std::remove_cvref_t<C>>(std::forward<C>(clock))) {}

  [[nodiscard]] time_point now() const { return impl_->now(); }
  /// The clock's `coarse_now()` if it has one (`HasCoarseNow`), else its `now()`.
  [[nodiscard]] time_point coarse_now() const { return impl_->coarse_now(); }
  bool wait_until(time_point t, const std::stop_token& token) const {
    return impl_->wait_until(t, token);
  }

 private:
  struct Concept {
    Concept() = default;
    Concept(const Concept&) = delete;
    Concept& operator=(const Concept&) = delete;
    virtual ~Concept() = default;
    [[nodiscard]] virtual time_point now() const = 0;
    [[nodiscard]] virtual time_point coarse_now() const = 0;
    virtual bool wait_until(time_point t, const std::stop_token& token) const = 0;
  };

  template <class C>
  struct Model final : Concept {
    explicit Model(std::shared_ptr<C> c) : clock(std::move(c)) {}
    [[nodiscard]] time_point now() const override { return clock->now(); }
    [[nodiscard]] time_point coarse_now() const override {
      if constexpr (HasCoarseNow<C>) {
        return clock->coarse_now();
      } else {
        return clock->now();
      }
    }
    bool wait_until(time_point t, const std::stop_token& token) const override {
      return clock->wait_until(t, token);
    }
    std::shared_ptr<C> clock;
  };

  std::shared_ptr<const Concept> impl_;
};

/// A clock that moves only when told to, for deterministic tests.
///
/// `wait_until` really blocks, and `advance` / `set` wake every sleeper whose time has come
/// before they return. A test can wait until the code under test is blocked on the clock with
/// `wait_for_sleepers(n)`, then advance time: no test needs to sleep.
///
/// Thread-safety: every member is safe to call from any thread. Lifetime: it must outlive every
/// sleeper; share it with `std::make_shared` and pass the `shared_ptr` to `Options::clock`.
class ManualClock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  /// Starts at `start` (the steady clock's epoch by default).
  explicit ManualClock(time_point start = time_point{})
      : now_(start), now_view_(start.time_since_epoch().count()) {}

  ManualClock(const ManualClock&) = delete;
  ManualClock& operator=(const ManualClock&) = delete;

  /// Lock-free: the code under test reads the time on every thread, often, and must not contend
  /// for the lock that `advance` and the sleepers use. A `now()` that happens after an `advance`
  /// or `set` returned sees its time, or a later one.
  [[nodiscard]] time_point now() const noexcept {
    return time_point(duration(now_view_.load(std::memory_order_acquire)));
  }

  /// Blocks until the clock is advanced to `t` or beyond (returns `true`) or `token` is requested
  /// (returns `false`). While blocked, the call counts as one sleeper.
  bool wait_until(time_point t, const std::stop_token& token) {
    std::unique_lock lock(mutex_);
    if (now_ >= t) {
      return true;
    }
    // On this thread's stack, linked into the list: a wait allocates nothing.
    Sleeper sleeper{t};
    link(sleeper);
    ++arms_;
    ++pending_;
    changed_.notify_all();
    changed_.wait(lock, token, [&] { return sleeper.woken; });
    const bool woken = sleeper.woken;
    if (!woken) {
      --pending_;  // Canceled: `wake_due` already uncounted the woken ones.
      changed_.notify_all();
    }
    unlink(sleeper);
    return woken;
  }

  /// Moves time forward by `d` and wakes every sleeper whose time has come. Once `advance`
  /// returns, those sleepers no longer count in `sleepers()`.
  void advance(duration d) {
    std::lock_guard lock(mutex_);
    now_ += d;
    publish_now();
    wake_due();
  }

  /// Sets the time to `t` (never backwards) and wakes the sleepers whose time has come.
  void set(time_point t) {
    std::lock_guard lock(mutex_);
    now_ = std::max(now_, t);
    publish_now();
    wake_due();
  }

  /// How many threads are blocked in `wait_until` right now (and not yet woken).
  [[nodiscard]] std::size_t sleepers() const {
    std::lock_guard lock(mutex_);
    return pending_;
  }

  /// How many sleeps have been armed since construction (each `wait_until` call that blocked).
  [[nodiscard]] std::size_t arms() const {
    std::lock_guard lock(mutex_);
    return arms_;
  }

  /// Blocks until at least `n` threads are blocked in `wait_until`, or `token` is requested.
  /// Returns whether the count was reached.
  bool wait_for_sleepers(std::size_t n, const std::stop_token& token = {}) {
    std::unique_lock lock(mutex_);
    return changed_.wait(lock, token, [&] { return pending_ >= n; });
  }

  /// Blocks until at least `n` sleeps have been armed in total, or `token` is requested.
  bool wait_for_arms(std::size_t n, const std::stop_token& token = {}) {
    std::unique_lock lock(mutex_);
    return changed_.wait(lock, token, [&] { return arms_ >= n; });
  }

 private:
  struct Sleeper {
    time_point until;
    bool woken = false;
    Sleeper* prev = nullptr;
    Sleeper* next = nullptr;
  };

  void link(Sleeper& sleeper) noexcept {
    sleeper.next = sleepers_;
    if (sleepers_ != nullptr) {
      sleepers_->prev = &sleeper;
    }
    sleepers_ = &sleeper;
  }
  void unlink(Sleeper& sleeper) noexcept {
    (sleeper.prev != nullptr ? sleeper.prev->next : sleepers_) = sleeper.next;
    if (sleeper.next != nullptr) {
      sleeper.next->prev = sleeper.prev;
    }
  }

  void publish_now() noexcept {
    now_view_.store(now_.time_since_epoch().count(), std::memory_order_release);
  }

  void wake_due() {
    for (Sleeper* sleeper = sleepers_; sleeper != nullptr; sleeper = sleeper->next) {
      if (!sleeper->woken && sleeper->until <= now_) {
        sleeper->woken = true;
        --pending_;
      }
    }
    changed_.notify_all();
  }

  mutable std::mutex mutex_;
  std::condition_variable_any changed_;
  time_point now_;                       // under `mutex_`, for the sleepers
  std::atomic<duration::rep> now_view_;  // the same, published for `now()`
  Sleeper* sleepers_ = nullptr;          // the blocked `wait_until` calls, newest first
  std::size_t pending_ = 0;              // Sleepers not yet woken by `advance` / `set`.
  std::size_t arms_ = 0;
};

}  // namespace supervisor
