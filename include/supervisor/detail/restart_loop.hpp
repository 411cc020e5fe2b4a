#pragma once

/// \file
/// `RestartLoop`: the thread of a supervisor's `run` that runs a restart pass every interval,
/// sooner when asked to, or when a key's backoff ends.

#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <utility>

#include "supervisor/clock.hpp"
#include "supervisor/detail/thread_group.hpp"
#include "supervisor/detail/work_context.hpp"

namespace supervisor::detail {

/// Waits an interval on the supervisor's clock, runs a pass, and again, until stopped.
///
/// Its thread is created with the loop, which `run` does before it starts any process: a machine
/// out of threads then fails `run` at once, instead of after the initial pass has taken the last
/// threads. The first interval begins at `begin()` (after the initial pass). The thread works
/// for `run` (`work`), so a hook it calls cannot wait for `run` itself.
///
/// `request_pass` makes the loop run a pass at once (several requests before it gets to it make
/// one pass); `nudge` only makes it ask `next_due` again, which names the earliest time a pass
/// is due besides the interval (a key's backoff ending), or none. After each early wake the loop
/// allocates a fresh wake-up signal; if it cannot, `on_error(error, false)` hears of it and that
/// wait ends only at its time (the next one tries again). `pass` and `next_due` must not throw;
/// a throwing clock ends the loop, and `on_error(error, true)` (noexcept) hears of it.
class RestartLoop {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  template <class Pass, class NextDue, class OnError>
  RestartLoop(AnyClock& clock, std::chrono::steady_clock::duration interval,
              const WorkContext* work, Pass pass, NextDue next_due, OnError on_error)
      : wake_(std::in_place),  // made here, so that out of memory `run` fails before it starts
        thread_(start_jthread(
            [this, &clock, interval, work, pass = std::move(pass), next_due = std::move(next_due),
             on_error = std::move(on_error)](const std::stop_token& over) mutable {
              const WorkScope working(work);
              if (!wait_for_begin(over)) {
                return;
              }
              const std::stop_callback wake_on_stop(over, [this]() noexcept { nudge(); });
              try {
                time_point periodic = clock.now() + interval;
                while (!over.stop_requested()) {
                  std::stop_token wake;
                  try {
                    wake = fresh_wake(over);
                  } catch (...) {
                    on_error(std::current_exception(), false);
                    wake = over;
                  }
                  if (take_request()) {
                    pass();
                    periodic = clock.now() + interval;
                    continue;
                  }
                  time_point until = periodic;
                  if (const std::optional<time_point> due = next_due(); due && *due < until) {
                    until = *due;
                  }
                  if (clock.wait_until(until, wake) && !over.stop_requested()) {
                    pass();
                    if (clock.now() >= periodic) {
                      periodic = clock.now() + interval;
                    }
                  }
                }
              } catch (...) {
                on_error(std::current_exception(), true);
              }
            })) {}

  RestartLoop(const RestartLoop&) = delete;
  RestartLoop& operator=(const RestartLoop&) = delete;
  ~RestartLoop() { stop(); }

  /// Starts the first interval.
  void begin() {
    {
      std::lock_guard lock(mutex_);
      begun_ = true;
    }
    changed_.notify_all();
  }

  /// Ends the loop and joins its thread; a pass under way finishes first.
  void stop() noexcept {
    if (thread_.joinable()) {
      thread_.request_stop();
      thread_.join();
    }
  }

  /// Asks the loop to end without waiting (safe from a stop callback).
  void request_stop() noexcept { thread_.request_stop(); }

  /// Makes the loop run a pass as soon as it can.
  void request_pass() noexcept {
    {
      std::lock_guard lock(mutex_);
      requested_ = true;
    }
    nudge();
  }

  /// Makes the loop ask `next_due` again.
  void nudge() noexcept {
    std::stop_source wake(std::nostopstate);  // no state of its own: no allocation
    {
      std::lock_guard lock(mutex_);
      wake = *wake_;  // shares the state: no allocation
    }
    wake.request_stop();  // Outside the lock: it runs the clock's stop callbacks (user code).
  }

 private:
  bool wait_for_begin(const std::stop_token& over) {
    std::stop_callback wake(over, [this]() noexcept {
      std::lock_guard lock(mutex_);
      changed_.notify_all();
    });
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return begun_ || over.stop_requested(); });
    return !over.stop_requested();
  }

  // The signal the next wait ends on: a new one once the last has fired. Throws if none can be
  // made, leaving the fired one (the next call tries again).
  std::stop_token fresh_wake(const std::stop_token& over) {
    std::stop_source current(std::nostopstate);
    {
      std::lock_guard lock(mutex_);
      if (wake_->stop_requested()) {
        std::stop_source fresh;  // may throw: then nothing has changed
        wake_ = std::move(fresh);
      }
      current = *wake_;
    }
    if (over.stop_requested()) {
      current.request_stop();
    }
    return current.get_token();
  }

  bool take_request() noexcept {
    std::lock_guard lock(mutex_);
    return std::exchange(requested_, false);
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  bool begun_ = false;
  bool requested_ = false;
  std::optional<std::stop_source> wake_;
  std::jthread thread_;  // last: its thread uses the members above
};

}  // namespace supervisor::detail
