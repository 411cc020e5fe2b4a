#pragma once

/// \file
/// `RestartLoop`: the thread of a supervisor's `run` that runs a restart pass every interval.

#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
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
/// for `run` (`work`), so a hook it calls cannot wait for `run` itself. `pass` must not throw;
/// a throwing clock ends the loop, and `on_clock_error` (noexcept) hears of it.
class RestartLoop {
 public:
  template <class Pass, class OnClockError>
  RestartLoop(AnyClock& clock, std::chrono::steady_clock::duration interval,
              const WorkContext* work, Pass pass, OnClockError on_clock_error)
      : thread_(start_jthread(
            [this, &clock, interval, work, pass = std::move(pass),
             on_clock_error = std::move(on_clock_error)](const std::stop_token& over) mutable {
              const WorkScope working(work);
              if (!wait_for_begin(over)) {
                return;
              }
              try {
                while (clock.wait_until(clock.now() + interval, over)) {
                  pass();
                }
              } catch (...) {
                on_clock_error(std::current_exception());
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

  std::mutex mutex_;
  std::condition_variable changed_;
  bool begun_ = false;
  std::jthread thread_;  // last: its thread uses the members above
};

}  // namespace supervisor::detail
