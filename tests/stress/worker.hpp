#pragma once

// A worker of the stress tests: random start / stop / get / keys and table changes on random
// keys, each outcome checked against what the docs allow (invariant 4 of rig.hpp).

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <thread>

#include "../support.hpp"
#include "rig.hpp"
#include "runnable.hpp"

namespace stress {

/// One worker's view: random operations on random keys, checking each outcome.
class Worker {
 public:
  Worker(Rig& rig, std::uint32_t seed) : rig_(rig), rng_(seed) {}

  void operations(int count) {
    for (int i = 0; i < count; ++i) {
      const Key key = static_cast<Key>(rng_() % key_count);
      const auto dice = rng_() % 100;
      try {
        if (dice < 24) {
          start(key);
        } else if (dice < 36) {
          stop(key);
        } else if (dice < 44) {
          rig_.table->erase(key);  // Stop for good: erase first, then stop.
          stop(key);
        } else if (dice < 60) {
          get(key);
        } else if (dice < 65) {
          keys();
        } else if (dice < 92) {
          rig_.table->insert_or_assign(key, random_runnable(rig_.shared, key, rng_));
          ++counts_["table insert"];
        } else {
          rig_.table->erase(key);
          ++counts_["table erase"];
        }
      } catch (...) {
        rig_.problems.add("unexpected exception escaped an operation: " +
                          test::what(std::current_exception()));
      }
    }
    flush();
  }

  /// Adds this worker's outcome counts to the rig's tally.
  void flush() {
    rig_.tally.merge(counts_);
    counts_.clear();
  }

  [[nodiscard]] long count(const std::string& outcome) const {
    auto it = counts_.find(outcome);
    return it == counts_.end() ? 0 : it->second;
  }

  /// Returns the outcome code (success also when the runnable threw).
  std::error_code start(Key key) {
    std::error_code ec;
    std::optional<StressRunnable> runnable;
    try {
      runnable = rig_.sup->start(key, ec);
    } catch (const InitFailed&) {
      ++counts_["start: runnable's exception"];
      return {};
    } catch (const ShutdownFailed&) {
      rig_.problems.add("start rethrew the runnable's shutdown failure, which comes after ready");
      return {};
    } catch (...) {
      rig_.problems.add("start threw " + test::what(std::current_exception()));
      return {};
    }
    ++counts_["start: " + (ec ? ec.message() : std::string("success"))];
    if (!ec) {
      expect(runnable.has_value() && runnable->key == key, "start", "returned a foreign runnable");
      return ec;
    }
    const bool allowed = ec == errc::process_exists || ec == errc::not_in_table ||
                         ec == errc::exited_before_ready ||
                         ec == errc::invalid_state ||  // a concurrent stop found it initial
                         (ec == errc::not_running && rig_.returning.load());
    expect(allowed, "start", describe(ec));
    return ec;
  }

  /// Random start / stop / get / keys (no table changes) until `start` reports `not_running`:
  /// across the callback's return and into `run`'s shutdown.
  void until_not_running() {
    for (;;) {
      const Key key = static_cast<Key>(rng_() % key_count);
      const auto dice = rng_() % 100;
      if (dice < 40) {
        if (start(key) == errc::not_running) {
          break;
        }
      } else if (dice < 70) {
        stop(key);
      } else if (dice < 95) {
        get(key);
      } else {
        keys();
      }
      std::this_thread::yield();
    }
    flush();
  }

  void stop(Key key) {
    std::error_code ec;
    try {
      rig_.sup->stop(key, ec);
    } catch (const StressError&) {  // Either: it may have been stopped while starting.
      ++counts_["stop: runnable's exception"];
      return;
    } catch (...) {
      rig_.problems.add("stop threw " + test::what(std::current_exception()));
      return;
    }
    ++counts_["stop: " + (ec ? ec.message() : std::string("success"))];
    expect(!ec || ec == errc::process_not_found, "stop", describe(ec));
  }

  void get(Key key) {
    std::error_code ec;
    std::optional<StressRunnable> runnable;
    const bool by_visit = rng_() % 2 == 0;  // the copy-free lookup, whose result is the same
    try {
      if (by_visit) {
        ec = rig_.sup->visit(key, [&](const StressRunnable& found) { runnable = found; });
      } else {
        runnable = rig_.sup->get(key, ec);
      }
    } catch (...) {
      rig_.problems.add("get threw " + test::what(std::current_exception()));
      return;
    }
    ++counts_[(by_visit ? "visit: " : "get: ") + (ec ? ec.message() : std::string("success"))];
    if (by_visit && ec == errc::process_not_running) {
      expect(!runnable.has_value(), "visit", "called back for a process not running");
      return;
    }
    if (!ec || ec == errc::process_not_running) {
      expect(runnable.has_value() && runnable->key == key, "get", "returned a foreign runnable");
    } else if (ec == errc::process_not_found) {
      expect(!runnable.has_value(), "get", "process_not_found with a runnable");
    } else {
      expect(false, "get", describe(ec));
    }
    if (rng_() % 2 == 0) {
      rig_.shared->release(key);  // Helps a slow start or a slow shutdown along.
    }
  }

  void keys() {
    auto keys = rig_.sup->keys();
    ++counts_["keys"];
    std::sort(keys.begin(), keys.end());
    expect(std::adjacent_find(keys.begin(), keys.end()) == keys.end(), "keys", "a duplicate key");
    expect(std::all_of(keys.begin(), keys.end(), [](Key k) { return k >= 0 && k < key_count; }),
           "keys", "a key out of range");
  }

 private:
  void expect(bool ok, const std::string& what, const std::string& detail) {
    if (!ok) {
      rig_.problems.add("unexpected outcome of " + what + ": " + detail);
    }
  }

  Rig& rig_;
  std::mt19937 rng_;
  std::map<std::string, long> counts_;
};

}  // namespace stress
