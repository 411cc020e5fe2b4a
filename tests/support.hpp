#pragma once

// Test helpers: events to wait on (bounded, never sleeping), a scriptable runnable, and a
// recording error hook. Assertions stay on the test's main thread: helpers only record.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <supervisor/supervisor.hpp>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace test {

/// A generous bound on every wait, so that a broken test fails instead of hanging the suite.
inline constexpr std::chrono::seconds patience{60};

/// Spins (never sleeps) until `condition` holds; false if `patience` ran out. Only for effects
/// that have no signal of their own, like a key leaving the map after its process returned on
/// its own, or a thread parking after its body returned.
template <class Condition>
bool eventually(Condition condition) {
  const auto limit = std::chrono::steady_clock::now() + patience;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > limit) {
      return false;
    }
    std::this_thread::yield();
  }
  return true;
}

/// A counter that threads bump and the test waits on.
class Event {
 public:
  void notify() {
    {
      std::lock_guard lock(mutex_);
      ++count_;
    }
    cv_.notify_all();
  }

  /// Waits until notified at least `n` times in all. False only if `patience` ran out.
  bool wait(int n = 1) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, patience, [&] { return count_ >= n; });
  }

  /// Waits until notified once, or until `token` is requested. Returns whether notified.
  bool wait_or(const std::stop_token& token) {
    std::unique_lock lock(mutex_);
    return cv_.wait(lock, token, [&] { return count_ >= 1; });
  }

  [[nodiscard]] int count() const {
    std::lock_guard lock(mutex_);
    return count_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable_any cv_;
  int count_ = 0;
};

/// What a `Probe` does before it calls `ready`.
enum class Startup {
  ready,            // call ready at once
  hang,             // block until force is requested, then return without ready
  hang_then_ready,  // block until `release` is notified, then call ready
  throw_error,      // throw std::runtime_error("init failed")
  exit_early,       // return without ready and without an error
};

/// What a `Probe` does once `ready` has returned.
enum class Shutdown {
  clean,        // return
  throw_error,  // throw std::runtime_error("shutdown failed")
  ignore_stop,  // ignore the graceful stop: block until force is requested, then return
};

struct ProbeState {
  Startup startup = Startup::ready;
  Shutdown shutdown = Shutdown::clean;
  /// When set, `ready` is called with this token, so the test can end `ready` early.
  std::stop_source early;
  bool use_early = false;

  Event entered;  // run was called
  Event readied;  // ready was called
  Event ready_returned;
  Event returned;  // run is about to return
  Event release;   // lets a hang_then_ready startup go on

  std::atomic<int> live{0};
  std::atomic<bool> force_seen{false};
  std::atomic<std::thread::id> thread{};
  /// Runs on the runnable's thread after ready returned, before shutdown (for self-calls).
  std::function<void()> after_ready;
  /// Runs on the runnable's thread right after `entered`, before ready.
  std::function<void()> on_enter;
};

/// A scriptable runnable; copies share one `ProbeState`.
struct Probe {
  std::shared_ptr<ProbeState> state = std::make_shared<ProbeState>();

  static Probe with(Startup startup, Shutdown shutdown = Shutdown::clean) {
    Probe probe;
    probe.state->startup = startup;
    probe.state->shutdown = shutdown;
    return probe;
  }

  void run(std::stop_token force, supervisor::Ready& ready) const {
    ProbeState& s = *state;
    s.thread = std::this_thread::get_id();
    ++s.live;
    struct Leave {
      ProbeState& s;
      ~Leave() {
        --s.live;
        s.returned.notify();
      }
    } leave{s};
    s.entered.notify();
    if (s.on_enter) {
      s.on_enter();
    }
    switch (s.startup) {
      case Startup::ready:
        break;
      case Startup::hang:
        wait_for(force);
        s.force_seen = true;
        return;
      case Startup::hang_then_ready:
        if (!s.release.wait_or(force)) {
          s.force_seen = true;
          return;
        }
        break;
      case Startup::throw_error:
        throw std::runtime_error("init failed");
      case Startup::exit_early:
        return;
    }
    s.readied.notify();
    if (s.use_early) {
      ready(s.early.get_token());
    } else {
      ready();
    }
    s.ready_returned.notify();
    s.force_seen = force.stop_requested();
    if (s.after_ready) {
      s.after_ready();
    }
    switch (s.shutdown) {
      case Shutdown::clean:
        return;
      case Shutdown::throw_error:
        throw std::runtime_error("shutdown failed");
      case Shutdown::ignore_stop:
        wait_for(force);
        s.force_seen = true;
        return;
    }
  }

  static void wait_for(const std::stop_token& token) {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    cv.wait(lock, token, [] { return false; });
  }
};

/// Blocks until `stopping` or `finish` is requested: the body of a `run` callback that lasts
/// until `run` is canceled or the test says it is done.
inline void wait_until_either(const std::stop_token& stopping, const std::stop_token& finish) {
  std::mutex m;
  std::condition_variable_any cv;
  // Registered before the lock is taken: on a requested token it runs at once.
  std::stop_callback wake(stopping, [&] {
    std::lock_guard l(m);
    cv.notify_all();
  });
  std::unique_lock lock(m);
  cv.wait(lock, finish, [&] { return stopping.stop_requested(); });
}

/// The message of an exception, or "" if none.
inline std::string what(const std::exception_ptr& error) {
  if (!error) {
    return "";
  }
  return supervisor::describe(error);
}

/// The `std::error_code` an exception carries (a `std::system_error`'s), or none.
inline std::error_code code_in(const std::exception_ptr& error) {
  if (!error) {
    return {};
  }
  try {
    std::rethrow_exception(error);
  } catch (const std::system_error& e) {
    return e.code();
  } catch (...) {
    return {};
  }
}

/// Collects every report the supervisor's error hook receives.
template <class Key>
class Reports {
 public:
  struct Entry {
    supervisor::ErrorSource source;
    bool has_key;
    Key key;
    std::string message;
    std::exception_ptr error;
  };

  std::function<void(const supervisor::ErrorReport<Key>&)> hook() {
    return [this](const supervisor::ErrorReport<Key>& report) {
      {
        std::lock_guard lock(mutex_);
        entries_.push_back(Entry{report.source, report.key != nullptr,
                                 report.key != nullptr ? *report.key : Key{}, what(report.error),
                                 report.error});
      }
      event_.notify();
    };
  }

  /// Waits until at least `n` reports arrived in all.
  bool wait(int n = 1) { return event_.wait(n); }

  std::vector<Entry> entries() const {
    std::lock_guard lock(mutex_);
    return entries_;
  }

  std::size_t count(supervisor::ErrorSource source) const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& e : entries_) {
      n += e.source == source ? 1 : 0;
    }
    return n;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
  Event event_;
};

/// Runs `body` on a thread of its own and joins it on destruction: for calls that block, like
/// `Supervisor::run`, so that the test's main thread stays free to assert.
class Background {
 public:
  template <class F>
  explicit Background(F body)
      : thread_([this, body = std::move(body)]() mutable {
          try {
            body();
          } catch (...) {
            failure_ = std::current_exception();
          }
          finished_.notify();
        }) {}

  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  ~Background() {
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  /// Waits for the body to return; true unless `patience` ran out.
  bool wait() { return finished_.wait(); }
  [[nodiscard]] bool finished() const { return finished_.count() > 0; }

  /// Joins; then the body's exception, if any.
  std::exception_ptr join() {
    if (thread_.joinable()) {
      thread_.join();
    }
    return failure_;
  }

 private:
  std::exception_ptr failure_;
  Event finished_;
  std::thread thread_;
};

/// The code of a `std::system_error`, or of nothing.
template <class F>
std::error_code code_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

}  // namespace test
