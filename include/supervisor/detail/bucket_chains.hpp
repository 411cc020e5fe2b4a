#pragma once

/// \file
/// `BucketChains`: one shard's buckets of `ShardedMap` (sharded_map.hpp), each a chain of nodes
/// under an atomic head, with a filter per bucket that spares an insert of a new key the walk.

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

namespace supervisor::detail {

/// An entry of a `ShardedMap`, immutable once linked but for `next`.
template <class Key, class Value>
struct ChainNode {
  ChainNode(std::uint64_t h, const Key& k, Value v) : hash(h), key(k), value(std::move(v)) {}

  const std::uint64_t hash;
  const Key key;
  const Value value;
  std::atomic<ChainNode*> next{nullptr};
  // Writers only, under the shard lock: the shard's list of retired nodes.
  std::uint64_t retired_at = 0;
  ChainNode* next_retired = nullptr;
};

/// A power of two of buckets. Readers walk the chains from `buckets[b].head` with no lock (the
/// map pins the epoch); the member functions and the filters are for writers, under the shard's
/// lock.
///
/// The filter: per bucket, sixteen two-bit counters, one of them (`filter_field`) counting the
/// nodes of each hash in the chain. An insert whose key's counter is zero knows the key is
/// absent without walking the chain, whose nodes are cold when the key is new or has not run
/// for a while: a restore's keys, and usually a start's (at ten thousand processes that walk
/// was a sixth of a start+stop cycle on a new key). A counter that reached three stays there
/// (it may count more) until a walk that finds a key absent recounts the bucket (or a growth
/// copies the chain into a new table, counting afresh).
template <class Key, class Value, class KeyEqual>
struct BucketChains {
  using Node = ChainNode<Key, Value>;

  /// A chain's head and its filter side by side, so that an insert of a new key waits for one
  /// cache miss, not two (in two arrays, the second miss was a sixth of an insert's time on
  /// fresh keys at a million processes). 16 bytes with the padding, against 12.
  struct Bucket {
    std::atomic<Node*> head{nullptr};
    std::uint32_t filter = 0;  // writers only, under the shard's lock
  };

  explicit BucketChains(std::size_t count)
      : mask(count - 1), buckets(std::make_unique<Bucket[]>(count)) {}

  /// Where the counter of `hash` lies in its bucket's filter: chosen by four hash bits that
  /// neither the shard (the top six) nor the bucket (the bottom ones: a shard would need 2^49
  /// buckets to reach them) is chosen by.
  static unsigned filter_field(std::uint64_t hash) noexcept {
    return 2U * static_cast<unsigned>((hash >> 48U) & 15U);
  }
  static constexpr std::uint32_t counter_max = 3;  // and sticky: see the class comment
  static std::uint32_t count_of(std::uint32_t filter, std::uint64_t hash) noexcept {
    return (filter >> filter_field(hash)) & counter_max;
  }
  /// `filter` with one more node of `hash`'s counter (none past `counter_max`).
  static std::uint32_t counted(std::uint32_t filter, std::uint64_t hash) noexcept {
    return count_of(filter, hash) == counter_max ? filter : filter + (1U << filter_field(hash));
  }

  /// The link that points at `key`'s node, or null if `key` is absent.
  std::atomic<Node*>* find_link(std::uint64_t hash, const Key& key) {
    Bucket& bucket = buckets[hash & mask];
    if (count_of(bucket.filter, hash) == 0) {
      return nullptr;
    }
    std::uint32_t seen = 0;
    std::atomic<Node*>* link = &bucket.head;
    for (Node* node = link->load(std::memory_order_relaxed); node != nullptr;
         node = link->load(std::memory_order_relaxed)) {
      if (node->hash == hash && KeyEqual{}(node->key, key)) {
        return link;
      }
      seen = counted(seen, node->hash);
      link = &node->next;
    }
    bucket.filter = seen;
    return nullptr;
  }
  Node* find(std::uint64_t hash, const Key& key) {
    std::atomic<Node*>* link = find_link(hash, key);
    return link != nullptr ? link->load(std::memory_order_relaxed) : nullptr;
  }

  void link_head(Node* node) noexcept {
    Bucket& bucket = buckets[node->hash & mask];
    bucket.filter = counted(bucket.filter, node->hash);
    node->next.store(bucket.head.load(std::memory_order_relaxed), std::memory_order_relaxed);
    bucket.head.store(node);  // publishes the node's fields to readers
  }

  /// Unlinks `node` from `link`, which points at it, with a sequentially consistent store (as
  /// `EpochDomain::none_pinned` needs).
  void unlink(std::atomic<Node*>& link, Node& node) noexcept {
    std::uint32_t& filter = buckets[node.hash & mask].filter;
    assert(count_of(filter, node.hash) != 0 && "a linked node's counter is at least one");
    if (count_of(filter, node.hash) != counter_max) {
      filter -= 1U << filter_field(node.hash);
    }
    link.store(node.next.load(std::memory_order_relaxed));
  }

  /// Frees `chains` and the nodes linked in it.
  static void destroy(BucketChains* chains) noexcept {
    if (chains == nullptr) {
      return;
    }
    for (std::size_t b = 0; b <= chains->mask; ++b) {
      for (Node* node = chains->buckets[b].head.load(std::memory_order_relaxed); node != nullptr;) {
        delete std::exchange(node, node->next.load(std::memory_order_relaxed));
      }
    }
    delete chains;
  }

  const std::size_t mask;  // bucket count - 1, a power of two
  const std::unique_ptr<Bucket[]> buckets;
  // Writers only, under the shard lock: the shard's list of retired tables.
  std::uint64_t retired_at = 0;
  BucketChains* next_retired = nullptr;
};

}  // namespace supervisor::detail
