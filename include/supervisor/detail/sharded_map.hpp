#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <unordered_map>
#include <utility>

namespace supervisor::detail {

/// A hash map split into independently locked shards, so that operations on different keys
/// rarely contend on one mutex or share a cache line. Readers of a shard take its lock shared.
///
/// `Value` is a nullable handle (`std::shared_ptr`); a null value marks a key reserved by an
/// operation still in flight.
template <class Key, class Value, class Hash, class KeyEqual>
class ShardedMap {
 public:
  static constexpr std::size_t shard_count = 64;

  /// Inserts `value` under `key` unless the key is present. Returns whether it inserted.
  bool try_emplace(const Key& key, Value value) {
    Shard& shard = shard_for(key);
    std::unique_lock lock(shard.mutex);
    return shard.map.try_emplace(key, std::move(value)).second;
  }

  /// Replaces the value under a present `key`.
  void assign(const Key& key, Value value) {
    Shard& shard = shard_for(key);
    std::unique_lock lock(shard.mutex);
    shard.map.insert_or_assign(key, std::move(value));
  }

  /// Erases `key` only if `matches(value)` holds, so a late eraser never removes an entry that
  /// someone else has put there since. Returns whether it erased.
  template <class Matches>
  bool erase_if(const Key& key, Matches&& matches) {
    Shard& shard = shard_for(key);
    std::unique_lock lock(shard.mutex);
    auto it = shard.map.find(key);
    if (it == shard.map.end() || !std::forward<Matches>(matches)(it->second)) {
      return false;
    }
    shard.map.erase(it);
    return true;
  }

  /// Calls `visit(const Value*)` under the shard's shared lock: null when `key` is absent.
  template <class Visit>
  decltype(auto) visit(const Key& key, Visit&& visit) const {
    const Shard& shard = shard_for(key);
    std::shared_lock lock(shard.mutex);
    auto it = shard.map.find(key);
    return std::forward<Visit>(visit)(it == shard.map.end() ? nullptr : &it->second);
  }

  /// Calls `visit(const Key&, const Value&)` for every entry, one shard at a time under its
  /// shared lock. `visit` must not call back into the map.
  template <class Visit>
  void for_each(Visit&& visit) const {
    for (std::size_t i = 0; i < shard_count; ++i) {
      std::shared_lock lock(shards_[i].mutex);
      for (const auto& [key, value] : shards_[i].map) {
        visit(key, value);
      }
    }
  }

 private:
  struct alignas(64) Shard {
    mutable std::shared_mutex mutex;
    std::unordered_map<Key, Value, Hash, KeyEqual> map;
  };

  [[nodiscard]] std::size_t index(const Key& key) const {
    // std::hash of an integer is often the identity: mix before taking the top bits.
    const auto h = static_cast<std::uint64_t>(Hash{}(key)) * 0x9E3779B97F4A7C15ULL;
    return static_cast<std::size_t>(h >> 58U);  // 64 shards: the top 6 bits.
  }
  Shard& shard_for(const Key& key) { return shards_[index(key)]; }
  const Shard& shard_for(const Key& key) const { return shards_[index(key)]; }

  std::unique_ptr<Shard[]> shards_ = std::make_unique<Shard[]>(shard_count);
};

}  // namespace supervisor::detail
