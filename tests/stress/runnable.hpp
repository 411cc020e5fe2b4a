#pragma once

// The runnable of the stress tests: it counts itself in and out of its key, so that two live
// runnables of one key show, and misbehaves as told (slow, failing, exiting early, erasing its own
// row). See rig.hpp for what the tests check.

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <random>
#include <stop_token>
#include <vector>

#include "../support.hpp"

namespace stress {

using Key = int;
constexpr int key_count = 32;

/// The runnables' own failures, so that the test tells them from anything the library throws.
///
/// Told apart by type, never by reading them: under ThreadSanitizer, reading an exception on one
/// thread while another drops the last `std::exception_ptr` to it is a false report, because the
/// reference count lives in the uninstrumented libstdc++ (`exception_ptr::_M_release`). Catching
/// by type happens inside libstdc++ too, so TSan sees no access; and no string member (as in
/// `std::runtime_error`) is freed with the exception.
struct StressError : std::exception {};
struct InitFailed final : StressError {
  [[nodiscard]] const char* what() const noexcept override { return "init failed"; }
};
struct ShutdownFailed final : StressError {
  [[nodiscard]] const char* what() const noexcept override { return "shutdown failed"; }
};

/// Blocks until one of three tokens is requested.
inline void wait_any(const std::stop_token& a, const std::stop_token& b, const std::stop_token& c) {
  std::mutex mutex;
  std::condition_variable_any cv;
  auto wake = [&]() noexcept {
    std::lock_guard lock(mutex);
    cv.notify_all();
  };
  // Registered before the lock is taken: on an already-requested token they run at once.
  std::stop_callback on_a(a, wake);
  std::stop_callback on_b(b, wake);
  std::stop_callback on_c(c, wake);
  std::unique_lock lock(mutex);
  cv.wait(lock, [&] { return a.stop_requested() || b.stop_requested() || c.stop_requested(); });
}

struct StressRunnable;
using Table = supervisor::MapTable<Key, StressRunnable>;

/// What every runnable of one test shares: per-key live counters and global counts.
struct Shared {
  struct Slot {
    std::atomic<int> live{0};
    std::mutex mutex;
    /// The slow phases under way for this key; requested to end them. Never more than one, but
    /// a list all the same, so that a broken invariant fails the test instead of hanging it.
    std::vector<std::shared_ptr<std::stop_source>> releases;
  };

  std::array<Slot, key_count> slots;
  std::atomic<long> violations{0};  // a runnable entered while its key had a live one
  std::atomic<long> entries{0};
  std::atomic<long> exits{0};
  std::atomic<long> not_ready{0};          // returned without calling ready
  std::atomic<long> threw_at_init{0};      // threw before ready (counted in not_ready too)
  std::atomic<long> threw_after_ready{0};  // threw after ready had returned
  std::atomic<long> erased_self{0};
  /// Requested when the workers are done: slow phases end at once from then on, so that a
  /// graceful shutdown never waits for a release that nobody will give.
  std::stop_source wind_down;
  /// Not owning: the table owns runnables that point here.
  Table* table = nullptr;

  /// The counts, read once, as plain numbers for the assertions.
  struct Totals {
    long entries, exits, not_ready, threw_after_ready, erased_self, violations, live;
  };
  [[nodiscard]] Totals totals() const {
    long live = 0;
    for (const auto& slot : slots) {
      live += slot.live.load();
    }
    return {entries.load(),
            exits.load(),
            not_ready.load(),
            threw_after_ready.load(),
            erased_self.load(),
            violations.load(),
            live};
  }

  /// Ends the slow phase of the runnable of `key`, if it is in one.
  void release(Key key) {
    Slot& slot = slots.at(static_cast<std::size_t>(key));
    std::lock_guard lock(slot.mutex);
    for (const auto& release : slot.releases) {
      release->request_stop();
    }
  }

  /// Blocks until released (by a worker's `get` or the clock driver), forced, or wound down.
  void slow_phase(Key key, const std::stop_token& force) {
    Slot& slot = slots.at(static_cast<std::size_t>(key));
    auto release = std::make_shared<std::stop_source>();
    {
      std::lock_guard lock(slot.mutex);
      slot.releases.push_back(release);
    }
    wait_any(release->get_token(), force, wind_down.get_token());
    std::lock_guard lock(slot.mutex);
    std::erase(slot.releases, release);
  }
};

enum class Start : std::uint8_t { ready, slow, throw_init, exit_early };
enum class Wait : std::uint8_t { until_stopped, early, early_erase };
enum class Finish : std::uint8_t { clean, slow, throw_error };

/// A runnable that counts itself in and out of its key, and misbehaves as told. Copies share one
/// `Shared`; a table row may be started many times (each pass restarts it once it has exited).
struct StressRunnable {
  std::shared_ptr<Shared> shared;
  Key key = 0;
  Start start = Start::ready;
  Wait wait = Wait::until_stopped;
  Finish finish = Finish::clean;

  void run(std::stop_token force, supervisor::Ready& ready) const {
    Shared& s = *shared;
    Shared::Slot& slot = s.slots.at(static_cast<std::size_t>(key));
    s.entries.fetch_add(1);
    if (slot.live.fetch_add(1) + 1 > 1) {
      s.violations.fetch_add(1);
    }
    struct Leave {
      Shared& s;
      Shared::Slot& slot;
      ~Leave() {
        slot.live.fetch_sub(1);
        s.exits.fetch_add(1);
      }
    } leave{s, slot};

    switch (start) {
      case Start::ready:
        break;
      case Start::slow:
        s.slow_phase(key, force);
        if (force.stop_requested()) {
          s.not_ready.fetch_add(1);
          return;
        }
        break;
      case Start::throw_init:
        s.not_ready.fetch_add(1);
        s.threw_at_init.fetch_add(1);
        throw InitFailed{};
      case Start::exit_early:
        s.not_ready.fetch_add(1);
        return;
    }

    if (wait == Wait::until_stopped) {
      ready();
    } else {
      // Return early on its own: `ready` with a token already requested returns at once.
      if (wait == Wait::early_erase) {
        s.table->erase(key);  // Removes itself for good (until a worker re-inserts the key).
        s.erased_self.fetch_add(1);
      }
      std::stop_source finished;
      finished.request_stop();
      ready(finished.get_token());
    }

    switch (finish) {
      case Finish::clean:
        return;
      case Finish::slow:
        s.slow_phase(key, force);
        return;
      case Finish::throw_error:
        s.threw_after_ready.fetch_add(1);
        throw ShutdownFailed{};
    }
  }
};

using Sup = supervisor::Supervisor<Key, StressRunnable>;

inline StressRunnable random_runnable(const std::shared_ptr<Shared>& shared, Key key,
                                      std::mt19937& rng) {
  StressRunnable r{shared, key};
  // Plain `%` on mt19937's output, whose sequence the standard fixes: the same seed gives the same
  // choices with every standard library (uniform_int_distribution does not promise that).
  const auto start_dice = rng() % 100;
  r.start = start_dice < 55   ? Start::ready
            : start_dice < 75 ? Start::slow
            : start_dice < 88 ? Start::throw_init
                              : Start::exit_early;
  const auto wait_dice = rng() % 100;
  r.wait = wait_dice < 60 ? Wait::until_stopped : wait_dice < 85 ? Wait::early : Wait::early_erase;
  const auto finish_dice = rng() % 100;
  r.finish = finish_dice < 55   ? Finish::clean
             : finish_dice < 75 ? Finish::slow
                                : Finish::throw_error;
  return r;
}

}  // namespace stress
