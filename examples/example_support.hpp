#pragma once

// What every example needs around the supervisor, and none of it is the supervisor: time-stamped
// output, waits that end early on a stop request, and SIGINT/SIGTERM turned into stop requests.
// Copy this file along with the example you start from.
//
// Linux/POSIX only because of the signal handling (sigwait); the supervisor itself is portable.

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <sstream>
#include <stop_token>
#include <string_view>
#include <thread>

namespace example {

// ---- Output ------------------------------------------------------------------------------------

inline const auto program_start = std::chrono::steady_clock::now();
inline std::mutex output_mutex;  // One for all `say` instantiations, so lines never interleave.

// Prints one line, stamped with the time since start. Safe from any thread.
template <class... Args>
void say(const Args&... args) {
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - program_start;
  std::ostringstream line;
  line << '[' << std::fixed << std::setprecision(3) << elapsed.count() << "s] ";
  (line << ... << args);
  line << '\n';
  const std::lock_guard lock(output_mutex);
  std::cout << line.str() << std::flush;  // Flushed: progress shows even when piped.
}

// Waits for `duration`, or less if `token` is requested. Returns whether it waited it all.
// A condition variable, not sleep_for: the wait ends as soon as a stop is requested.
inline bool wait_for(std::chrono::milliseconds duration, const std::stop_token& token) {
  std::mutex mutex;
  std::condition_variable_any cv;
  std::unique_lock lock(mutex);
  cv.wait_for(lock, token, duration, [] { return false; });
  return !token.stop_requested();
}

// Blocks until `token` is requested.
inline void wait_for_stop(const std::stop_token& token) {
  std::mutex mutex;
  std::condition_variable_any cv;
  std::unique_lock lock(mutex);
  cv.wait(lock, token, [] { return false; });
}

// ---- Signals -----------------------------------------------------------------------------------

// Turns SIGINT and SIGTERM into stop requests: the first asks for a graceful stop, the second
// forces it. A signal handler may only do async-signal-safe things, and std::stop_source is not
// one of them (it takes locks and runs callbacks). So the signals are blocked in every thread and
// accepted by sigwait on a thread of our own, where any code may run.
class SignalStop {
 public:
  // Construct before any other thread exists: threads inherit their creator's signal mask, and a
  // thread that does not block the signals would have them delivered to it the default way.
  SignalStop() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    thread_ = std::thread([this] { accept_signals(); });
  }

  SignalStop(const SignalStop&) = delete;
  SignalStop& operator=(const SignalStop&) = delete;

  ~SignalStop() {
    closing_ = true;
    // Wakes sigwait: SIGTERM is blocked in every thread, so it kills nothing. The flag says why.
    pthread_kill(thread_.native_handle(), SIGTERM);  // NOLINT(bugprone-bad-signal-to-kill-thread)
    thread_.join();
  }

  [[nodiscard]] std::stop_token graceful() const { return graceful_.get_token(); }
  [[nodiscard]] std::stop_token force() const { return force_.get_token(); }

  // What the first signal does; the demo calls it when its script is over.
  void request_graceful() { graceful_.request_stop(); }

 private:
  void accept_signals() {
    for (int received = 0;;) {
      int signal = 0;
      if (sigwait(&signals_, &signal) != 0) {
        continue;
      }
      if (closing_) {
        return;
      }
      const std::string_view name = signal == SIGINT ? "SIGINT" : "SIGTERM";
      if (++received == 1) {
        say("got ", name, ": stopping gracefully (send it again to force)");
        graceful_.request_stop();
      } else {
        say("got ", name, " again: forcing the stop");
        force_.request_stop();
      }
    }
  }

  sigset_t signals_{};
  std::stop_source graceful_;
  std::stop_source force_;
  std::atomic<bool> closing_{false};
  std::thread thread_;
};

}  // namespace example
