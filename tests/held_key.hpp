#pragma once

// `HeldKey`: a key whose copies, on a thread that allows it, are counted, and the chosen one
// holds until released. The key's copies are the only user code between a `start`'s first step
// and its record's insert into the map, so holding each copy in turn puts the start at each of
// its steps, deterministically.

#include <atomic>
#include <cstddef>
#include <functional>
#include <string>
#include <utility>

#include "support.hpp"

namespace test {

/// Which copy of a `HeldKey`, made on a thread that allows it, holds: 0 for none.
inline std::atomic<int> g_hold_at{0};
inline std::atomic<int> g_copies{0};
inline thread_local bool t_may_hold = false;
inline Event* g_held = nullptr;     // notified when a copy holds
inline Event* g_release = nullptr;  // what the held copy waits for
/// Set on a thread, the next comparison of two keys there holds (once), signalling `g_compared`
/// and waiting for `g_compare_go`.
inline thread_local bool t_hold_compare = false;
inline Event* g_compared = nullptr;
inline Event* g_compare_go = nullptr;

struct HeldKey {
  std::string name;
  HeldKey() = default;
  explicit HeldKey(std::string n) : name(std::move(n)) {}
  HeldKey(const HeldKey& other) : name(other.name) {
    if (t_may_hold && ++g_copies == g_hold_at.load()) {
      g_held->notify();
      (void)g_release->wait();
    }
  }
  HeldKey(HeldKey&&) noexcept = default;
  HeldKey& operator=(const HeldKey&) = default;
  HeldKey& operator=(HeldKey&&) noexcept = default;
  ~HeldKey() = default;
  friend bool operator==(const HeldKey& a, const HeldKey& b) {
    if (t_hold_compare) {
      t_hold_compare = false;
      g_compared->notify();
      (void)g_compare_go->wait();
    }
    return a.name == b.name;
  }
};

/// One round of holding: the events a `HeldKey` copy signals and waits on, with no copy counted
/// and none held until `arm`. On destruction, holding is off and a held copy is let go.
struct KeyHold {
  Event held;     // notified when a copy holds
  Event release;  // what the held copy waits for
  KeyHold() {
    g_held = &held;
    g_release = &release;
    g_copies = 0;
    g_hold_at = 0;
  }
  KeyHold(const KeyHold&) = delete;
  KeyHold& operator=(const KeyHold&) = delete;
  ~KeyHold() {
    g_hold_at = 0;
    release.notify();
  }
  /// From here, the `at`-th copy made on a thread that allows it holds.
  static void arm(int at) { g_hold_at = at; }
};

struct HeldKeyHash {
  std::size_t operator()(const HeldKey& key) const noexcept {
    return std::hash<std::string>{}(key.name);
  }
};

}  // namespace test
