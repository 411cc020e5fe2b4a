#pragma once

// A recording `Options::on_event` hook for the operations tests: every event, copied, in the
// order the hook calls took its lock. Only records; the test asserts on its main thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "support.hpp"

namespace test {

template <class Key>
class EventLog {
 public:
  struct Entry {
    supervisor::EventKind kind;
    Key key;
    std::chrono::steady_clock::time_point at;
    std::chrono::steady_clock::duration elapsed;
    std::chrono::steady_clock::duration delay;
    std::uint32_t consecutive_failures;
    std::exception_ptr error;
  };

  std::function<void(const supervisor::Event<Key>&)> hook() {
    return [this](const supervisor::Event<Key>& e) { record(e); };
  }

  void record(const supervisor::Event<Key>& e) {
    {
      std::lock_guard lock(mutex_);
      entries_.push_back(
          Entry{e.kind, e.key, e.at, e.elapsed, e.delay, e.consecutive_failures, e.error});
    }
    recorded_.notify();
  }

  /// Waits until at least `n` events were recorded in all.
  bool wait(int n) { return recorded_.wait(n); }

  std::vector<Entry> entries() const {
    std::lock_guard lock(mutex_);
    return entries_;
  }

  /// The events of `key`, in order.
  std::vector<Entry> of(const Key& key) const {
    std::lock_guard lock(mutex_);
    std::vector<Entry> result;
    for (const auto& e : entries_) {
      if (e.key == key) {
        result.push_back(e);
      }
    }
    return result;
  }

  /// Waits, on the log's own signal, until `key` has had `n` events of `kind`. False only if
  /// `patience` ran out.
  bool wait_for(const Key& key, supervisor::EventKind kind, int n) {
    for (;;) {
      const std::vector<Entry> all = entries();
      int seen = 0;
      for (const auto& e : all) {
        seen += e.key == key && e.kind == kind ? 1 : 0;
      }
      if (seen >= n) {
        return true;
      }
      if (!wait(static_cast<int>(all.size()) + 1)) {
        return false;
      }
    }
  }

  /// The kinds of `key`'s events, in order, as one string ("starting ready ...").
  std::string kinds(const Key& key) const {
    std::string result;
    for (const auto& e : of(key)) {
      if (!result.empty()) {
        result += ' ';
      }
      result += supervisor::to_string(e.kind);
    }
    return result;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
  Event recorded_;
};

}  // namespace test
