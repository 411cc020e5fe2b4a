#pragma once

// What the tests of detail::ShardedMap (sharded_map_test.cpp, and epoch_fork_test.cpp, which
// uses the map across fork()) share: a value that counts its destructions, the map of them, and
// a lookup through `visit`.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <supervisor/detail/sharded_map.hpp>

namespace test {

/// A value that counts its destructions and checks that nobody reads it afterwards (a freed
/// value read by a lookup is a use after free: ASan reports it, and `alive` catches the rest).
struct Tracked {
  explicit Tracked(std::uint64_t k, std::atomic<int>* destroyed = nullptr)
      : key(k), destroyed_(destroyed) {}
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;
  ~Tracked() {
    alive = false;
    if (destroyed_ != nullptr) {
      destroyed_->fetch_add(1);
    }
  }

  std::uint64_t key;
  std::atomic<bool> alive{true};

 private:
  std::atomic<int>* destroyed_;
};

using TrackedValue = std::shared_ptr<Tracked>;
using TrackedMap =
    supervisor::detail::ShardedMap<std::uint64_t, TrackedValue, std::hash<std::uint64_t>,
                                   std::equal_to<std::uint64_t>>;

/// The key found under `key` (0 when absent or reserved), read through `visit`.
inline std::uint64_t lookup(const TrackedMap& map, std::uint64_t key) {
  return map.visit(key, [](const TrackedValue* value) -> std::uint64_t {
    return value != nullptr && *value ? (*value)->key : 0;
  });
}

}  // namespace test
