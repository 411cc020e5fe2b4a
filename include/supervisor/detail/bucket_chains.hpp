#pragma once

/// \file
/// `BucketChains`: one shard's buckets of `ShardedMap` (sharded_map.hpp), each a chain of nodes
/// under an atomic head, with a filter per bucket that spares an insert of a new key the walk.

#include <atomic>
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

/// A power of two of buckets. Readers walk `heads` with no lock (the map pins the epoch);
/// the member functions and `filters` are for writers, under the shard's lock.
///
/// The filter: per bucket, a bit (`filter_bit`) for each node in its chain, and maybe bits of
/// nodes erased since. An insert whose key's bit is clear knows the key is absent without
/// walking the chain, whose nodes are cold when the key is new: a restore's keys, and usually a
/// start's (at ten thousand processes that walk was a sixth of a start+stop cycle on a new key).
/// A walk that finds a key absent, and an erase of a chain's last node, make the filter exact
/// again, so bits left by erased nodes do not pile up.
template <class Key, class Value, class KeyEqual>
struct BucketChains {
  using Node = ChainNode<Key, Value>;

  explicit BucketChains(std::size_t buckets)
      : mask(buckets - 1),
        heads(std::make_unique<std::atomic<Node*>[]>(buckets)),
        filters(std::make_unique<std::uint16_t[]>(buckets)) {}

  /// Four hash bits that neither the shard (the top six) nor the bucket (the bottom ones: a
  /// shard would need 2^48 buckets to reach them) is chosen by.
  static std::uint16_t filter_bit(std::uint64_t hash) noexcept {
    return static_cast<std::uint16_t>(1U << ((hash >> 48U) & 15U));
  }

  /// The link that points at `key`'s node, or null if `key` is absent.
  std::atomic<Node*>* find_link(std::uint64_t hash, const Key& key) {
    std::uint16_t& filter = filters[hash & mask];
    if ((filter & filter_bit(hash)) == 0) {
      return nullptr;
    }
    std::uint16_t seen = 0;
    std::atomic<Node*>* link = &heads[hash & mask];
    for (Node* node = link->load(std::memory_order_relaxed); node != nullptr;
         node = link->load(std::memory_order_relaxed)) {
      if (node->hash == hash && KeyEqual{}(node->key, key)) {
        return link;
      }
      seen = static_cast<std::uint16_t>(seen | filter_bit(node->hash));
      link = &node->next;
    }
    filter = seen;
    return nullptr;
  }
  Node* find(std::uint64_t hash, const Key& key) {
    std::atomic<Node*>* link = find_link(hash, key);
    return link != nullptr ? link->load(std::memory_order_relaxed) : nullptr;
  }

  void link_head(Node* node) noexcept {
    const std::size_t bucket = node->hash & mask;
    filters[bucket] = static_cast<std::uint16_t>(filters[bucket] | filter_bit(node->hash));
    std::atomic<Node*>& head = heads[bucket];
    node->next.store(head.load(std::memory_order_relaxed), std::memory_order_relaxed);
    head.store(node);  // publishes the node's fields to readers
  }

  /// Unlinks `node` from `link`, which points at it; `before` holds the filter bits of the
  /// nodes ahead of it in its chain. A sequentially consistent store, as
  /// `EpochDomain::none_pinned` needs.
  void unlink(std::atomic<Node*>& link, Node& node, std::uint16_t before) noexcept {
    Node* const next = node.next.load(std::memory_order_relaxed);
    if (next == nullptr) {  // the chain is now the nodes ahead: its filter can be exact
      filters[node.hash & mask] = before;
    }
    link.store(next);
  }

  /// Frees `chains` and the nodes linked in it.
  static void destroy(BucketChains* chains) noexcept {
    if (chains == nullptr) {
      return;
    }
    for (std::size_t b = 0; b <= chains->mask; ++b) {
      for (Node* node = chains->heads[b].load(std::memory_order_relaxed); node != nullptr;) {
        delete std::exchange(node, node->next.load(std::memory_order_relaxed));
      }
    }
    delete chains;
  }

  const std::size_t mask;  // bucket count - 1, a power of two
  const std::unique_ptr<std::atomic<Node*>[]> heads;
  const std::unique_ptr<std::uint16_t[]> filters;  // writers only (`prefetch` takes addresses)
  // Writers only, under the shard lock: the shard's list of retired tables.
  std::uint64_t retired_at = 0;
  BucketChains* next_retired = nullptr;
};

}  // namespace supervisor::detail
