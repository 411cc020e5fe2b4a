#pragma once

/// \file
/// `ShardedMap`: the supervisor's map from keys to process records, with lock-free lookups.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <utility>

#include "supervisor/detail/bucket_chains.hpp"
#include "supervisor/detail/epoch.hpp"
#include "supervisor/detail/prefetch.hpp"
#include "supervisor/detail/word_lock.hpp"  // the shards' lock

namespace supervisor::detail {

/// A hash map whose lookups write no shared memory, for the supervisor's process table.
///
/// Readers (`visit`) take no lock: they pin the epoch domain (a store to their own thread's
/// record) and walk bucket chains of atomic pointers, so two threads looking up the same keys
/// never pass a cache line back and forth. Writers lock one of 64 shards, link or unlink nodes
/// with atomic stores, and retire what they unlinked; it is freed once no pinned reader can
/// still hold it (see `EpochDomain`), outside the shard lock, by a later write or `reclaim`.
///
/// `Value` is a handle (`std::shared_ptr`), immutable once published: `assign` links a new node.
/// The walks that touch every entry (`for_each_unlocked`, and freeing what was retired) ask the
/// CPU for the entries ahead (prefetch.hpp): at a million entries each visit would otherwise
/// wait for two cache misses, the node and what its value points at.
///
/// A shard's buckets (bucket_chains.hpp) keep a counting filter each, so that an insert of a
/// key that is not there seldom walks a chain of cold nodes.
///
/// A shard's lock is a `WordLock`: it spins briefly before it sleeps, since most holds are a few
/// instructions and a sleep costs a futex call on each side. (At a shutdown, the pool threads
/// that erase the stopped processes all erase in the shard being walked.)
///
/// User code: `Hash` runs before any lock (`hash_of`), and the callers that keep the hash (the
/// supervisor's records do) erase by value with no user call at all, so a throwing hash or
/// equality can never leave an entry behind. `KeyEqual` runs under the shard lock during
/// inserts; an insert copies its key before taking it, but a growth (`grow`, and so `reserve`)
/// copies each key of the shard under it. Inserts never free anything (what a write frees
/// may run user destructors, which must not run inside a caller's critical section); erases and
/// `reclaim` do, after unlocking.
template <class Key, class Value, class Hash, class KeyEqual>
class ShardedMap {
 public:
  static constexpr std::size_t shard_count = 64;
  /// The most entries `reserve` makes room for (2^28 buckets of 12 bytes, three gigabytes): a
  /// hint beyond it is taken as this, so that a wrong one cannot take all the machine's memory.
  static constexpr std::size_t max_reserve = std::size_t{1} << 27U;

  ShardedMap() = default;
  ShardedMap(const ShardedMap&) = delete;
  ShardedMap& operator=(const ShardedMap&) = delete;

  /// Precondition: no call is in flight, on any thread. (Each shard frees its own.)
  ~ShardedMap() = default;

  /// The hash that every other call of the map derives from `key`: the user's `Hash`, mixed.
  /// Throws what `Hash` throws.
  [[nodiscard]] static std::uint64_t hash_of(const Key& key) { return mix(key); }

  /// Inserts `value` under `key` unless the key is present. Returns whether it inserted. Frees
  /// nothing (see the class comment); throws what `Hash`, `KeyEqual`, the key's copy or the
  /// allocation throws, and then inserts nothing.
  bool try_emplace(const Key& key, Value value) {
    return try_emplace(mix(key), key, std::move(value));
  }

  /// As above, with `hash == hash_of(key)`.
  bool try_emplace(std::uint64_t hash, const Key& key, Value value) {
    auto node = std::make_unique<Node>(hash, key, std::move(value));  // copies before locking
    Shard& shard = shard_for(hash);
    {
      std::lock_guard lock(shard.mutex);
      Table* table = shard.table.load(std::memory_order_relaxed);
      if (table->find(hash, key) == nullptr) {
        table->link_head(node.release());
        if (++shard.size > table->mask + 1) {
          grow(shard);
        }
        return true;
      }
    }
    return false;  // `node` (and its copy of `value`) is destroyed after unlocking
  }

  /// Replaces the value under `key`, or inserts it.
  void assign(const Key& key, Value value) {
    const std::uint64_t hash = mix(key);
    Shard& shard = shard_for(hash);
    std::unique_lock lock(shard.mutex);
    Table* table = shard.table.load(std::memory_order_relaxed);
    std::atomic<Node*>* link = table->find_link(hash, key);
    auto* node = new Node(hash, key, std::move(value));
    Node* old = link != nullptr ? link->load(std::memory_order_relaxed) : nullptr;
    if (old == nullptr) {
      table->link_head(node);
      insert_done(shard, lock);
      return;
    }
    // Readers already on `old` go on from its successor, which stays linked.
    node->next.store(old->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
    link->store(node);
    retire(shard, old);
    collect(shard, lock);
  }

  /// Erases `key` only if `matches(value)` holds, so a late eraser never removes an entry that
  /// someone else has put there since. Returns whether it erased.
  template <class Matches>
  bool erase_if(const Key& key, Matches&& matches) {
    const std::uint64_t hash = mix(key);
    Shard& shard = shard_for(hash);
    std::unique_lock lock(shard.mutex);
    Table& table = *shard.table.load(std::memory_order_relaxed);
    std::atomic<Node*>* link = table.find_link(hash, key);
    Node* node = link != nullptr ? link->load(std::memory_order_relaxed) : nullptr;
    if (node == nullptr || !std::forward<Matches>(matches)(std::as_const(node->value))) {
      return false;
    }
    table.unlink(*link, *node);
    --shard.size;
    retire(shard, node);
    collect(shard, lock);
    return true;
  }

  /// Erases the entry whose value `matches`, in the bucket of `hash`, without calling `Hash` or
  /// `KeyEqual`: for owners that remember their hash and identify their entry by its value.
  /// Returns whether it erased. Never throws, never allocates.
  template <class Matches>
  bool erase_value(std::uint64_t hash, Matches&& matches) noexcept {
    Shard& shard = shard_for(hash);
    std::unique_lock lock(shard.mutex);
    Table* table = shard.table.load(std::memory_order_relaxed);
    std::atomic<Node*>* link = &table->buckets[hash & table->mask].head;
    for (Node* node = link->load(std::memory_order_relaxed); node != nullptr;
         node = link->load(std::memory_order_relaxed)) {
      if (node->hash == hash && matches(std::as_const(node->value))) {
        table->unlink(*link, *node);
        --shard.size;
        retire(shard, node);
        collect(shard, lock);
        return true;
      }
      link = &node->next;
    }
    return false;
  }

  /// Calls `visit(const Value*)`: null when `key` is absent. Takes no lock and writes only this
  /// thread's epoch record; the value stays valid while `visit` runs, even if erased meanwhile.
  /// `visit` may call back into the map.
  template <class Visit>
  decltype(auto) visit(const Key& key, Visit&& visit) const {
    return this->visit(mix(key), key, std::forward<Visit>(visit));
  }

  /// As above, with `hash == hash_of(key)`.
  template <class Visit>
  decltype(auto) visit(std::uint64_t hash, const Key& key, Visit&& visit) const {
    const EpochDomain::Pin pin;
    const Table* table = shard_for(hash).table.load();
    for (const Node* node = table->buckets[hash & table->mask].head.load(); node != nullptr;
         node = node->next.load()) {
      if (node->hash == hash && KeyEqual{}(node->key, key)) {
        return std::forward<Visit>(visit)(&node->value);
      }
    }
    return std::forward<Visit>(visit)(static_cast<const Value*>(nullptr));
  }

  /// Asks the CPU to fetch what `visit`s and inserts of `hashes[0..n)` will read first: each
  /// bucket and its filter, then the node it points at. A hint only: changes nothing, allocates
  /// nothing, never throws (on a thread that has never pinned, where a pin would allocate, it does
  /// nothing).
  void prefetch(const std::uint64_t* hashes, std::size_t n) const noexcept {
    if (n == 0 || !EpochDomain::thread_has_record()) {
      return;
    }
    const EpochDomain::Pin pin;  // the tables read here stay allocated
    for (std::size_t i = 0; i < n; ++i) {
      const Table* table = shard_for(hashes[i]).table.load();
      detail::prefetch(&table->buckets[hashes[i] & table->mask]);  // its head and filter
    }
    for (std::size_t i = 0; i < n; ++i) {  // the buckets asked for first have had time to land
      const Table* table = shard_for(hashes[i]).table.load();
      detail::prefetch(table->buckets[hashes[i] & table->mask].head.load());
    }
  }

  /// Calls `visit(const Key&, const Value&)` for every entry, without a lock and without
  /// allocating: for a shutdown that must reach every entry even when memory has run out, and
  /// for listings that must not run user code under a lock. `visit` may write to the map. An
  /// entry inserted or erased meanwhile may be missed or visited; entries that are neither (nor
  /// moved by a growing shard) are visited once.
  template <class Visit>
  void for_each_unlocked(Visit&& visit) const {
    const EpochDomain::Pin pin;
    for (std::size_t i = 0; i < shard_count; ++i) {
      const Table* table = shards_[i].table.load();
      const std::size_t buckets = table->mask + 1;
      for (std::size_t b = 0; b < buckets; ++b) {
        // The buckets lie in order, their nodes and what the values point at do not: ask for
        // the node `node_lead` buckets on, and for the value of one whose node has had time to
        // land, so that the visits of the entries ahead do not each wait for memory in turn.
        if (b + node_lead < buckets) {
          detail::prefetch(table->buckets[b + node_lead].head.load());
        }
        if (b + value_lead < buckets) {
          if (const Node* ahead = table->buckets[b + value_lead].head.load()) {
            prefetch_pointee(ahead->value);
          }
        }
        for (const Node* node = table->buckets[b].head.load(); node != nullptr;
             node = node->next.load()) {
          visit(node->key, std::as_const(node->value));
        }
      }
    }
  }

  /// Frees, in every shard, what no pinned reader can still hold. Writes do this for their own
  /// shard; call it when writes stop (a supervisor's `run` ending) so no value outlives its use
  /// for longer than the reads in flight.
  void reclaim() {
    for (std::size_t i = 0; i < shard_count; ++i) {
      std::unique_lock lock(shards_[i].mutex);
      collect(shards_[i], lock, /*always_advance=*/true);
    }
  }

  /// Gives each shard buckets for its share of `entries` (at most `max_reserve`), so that
  /// inserting that many copies no node (each growth copies every node of its shard, see
  /// `grow`). The buckets are kept for the map's life. Best effort: a shard whose bigger table
  /// cannot be allocated stays as it is. Never throws.
  void reserve(std::size_t entries) noexcept {
    if (entries <= shard_count * initial_buckets) {
      return;  // every shard starts with that many buckets
    }
    entries = std::min(entries, max_reserve);
    // A shard's share varies by about its square root: four times that is room enough.
    const std::size_t mean = entries / shard_count;
    const auto spread = static_cast<std::size_t>(4 * std::sqrt(static_cast<double>(mean)));
    const std::size_t share = mean + spread + 1;
    for (std::size_t i = 0; i < shard_count; ++i) {
      std::unique_lock lock(shards_[i].mutex);
      std::size_t buckets = shards_[i].table.load(std::memory_order_relaxed)->mask + 1;
      if (buckets >= share) {
        continue;
      }
      while (buckets < share) {
        buckets *= 2;
      }
      grow(shards_[i], buckets);
      collect(shards_[i], lock);
    }
  }

 private:
  using Node = ChainNode<Key, Value>;
  using Table = BucketChains<Key, Value, KeyEqual>;

  struct alignas(64) Shard {
    Shard() : table(new Table(initial_buckets)) {}
    // Its own destructor, not the map's loop: a shard array whose construction fails midway
    // destroys the shards already made, and their tables with them.
    ~Shard() {
      Table::destroy(table.load(std::memory_order_relaxed));
      destroy(retired_nodes, retired_tables);
    }
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;

    mutable WordLock mutex;  // writers only (see the class comment)
    std::atomic<Table*> table;
    std::size_t size = 0;
    std::size_t retired_since_advance = 0;
    RetiredList<Node> retired_nodes;
    RetiredList<Table> retired_tables;
  };

  static constexpr std::size_t initial_buckets = 8;
  // How far ahead `for_each_unlocked` asks for nodes, and for what their values point at.
  static constexpr std::size_t node_lead = 8;
  static constexpr std::size_t value_lead = 4;
  // A write tries to advance the epoch once per records() / advance_batch retirements in its
  // shard: an advance reads every thread's record.
  static constexpr std::size_t advance_batch = 64;

  /// Mixes every bit of the user's hash into every bit (std::hash of an integer is often the
  /// identity): the top bits pick the shard, the bottom bits the bucket.
  static std::uint64_t mix(const Key& key) {
    auto h = static_cast<std::uint64_t>(Hash{}(key));
    h ^= h >> 33U;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33U;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33U;
    return h;
  }
  Shard& shard_for(std::uint64_t hash) { return shards_[hash >> 58U]; }  // 64: the top 6 bits
  const Shard& shard_for(std::uint64_t hash) const { return shards_[hash >> 58U]; }

  /// Counts a linked node and grows the table past one node per bucket.
  static void insert_done(Shard& shard, std::unique_lock<WordLock>& lock) noexcept {
    if (++shard.size > shard.table.load(std::memory_order_relaxed)->mask + 1) {
      grow(shard);
    }
    collect(shard, lock);
  }

  /// Doubles the bucket count (or sets it to `buckets`, a larger power of two). Readers may be
  /// walking the old table, so its nodes stay as they are: the new table gets copies, and the
  /// old one is retired whole.
  static void grow(Shard& shard, std::size_t buckets = 0) noexcept {
    Table* old = shard.table.load(std::memory_order_relaxed);
    Table* bigger = nullptr;
    try {
      bigger = new Table(buckets != 0 ? buckets : (old->mask + 1) * 2);
      for (std::size_t b = 0; b <= old->mask; ++b) {
        for (Node* node = old->buckets[b].head.load(std::memory_order_relaxed); node != nullptr;
             node = node->next.load(std::memory_order_relaxed)) {
          bigger->link_head(new Node(node->hash, node->key, node->value));
        }
      }
    } catch (...) {
      // Out of memory (or a throwing key copy): keep the old table, whose chains just grow.
      Table::destroy(bigger);
      return;
    }
    shard.table.store(bigger);
    shard.retired_tables.push(old, EpochDomain::instance().epoch());
    ++shard.retired_since_advance;
  }

  static void retire(Shard& shard, Node* node) noexcept {
    shard.retired_nodes.push(node, EpochDomain::instance().epoch());
    ++shard.retired_since_advance;
  }

  /// Frees what readers can no longer hold, advancing the epoch if need be (two steps make all
  /// that is retired so far free when no reader is pinned). Frees after releasing `lock`: a
  /// value's destructor may call back into the map.
  static void collect(Shard& shard, std::unique_lock<WordLock>& lock,
                      bool always_advance = false) noexcept {
    if (shard.retired_nodes.empty() && shard.retired_tables.empty()) {
      return;
    }
    EpochDomain& domain = EpochDomain::instance();
    // An advance reads every thread's record: with many threads that have looked keys up, try
    // only once per so many retirements, so a write costs O(1) amortised. Until then (or until
    // another shard advances the epoch, or `reclaim`) the retired values wait, which only
    // delays their destructors.
    bool all = false;
    if (always_advance || shard.retired_since_advance * advance_batch >= domain.records()) {
      shard.retired_since_advance = 0;
      // The usual case, a write while no thread looks a key up: everything retired so far goes
      // now, without the two locked updates of the shared epoch that an advance costs. (Every
      // unlink is a sequentially consistent store, as `EpochDomain::none_pinned` needs.)
      all = domain.none_pinned();
      std::uint64_t newest = 0;
      if (!shard.retired_nodes.empty()) {
        newest = shard.retired_nodes.newest();
      }
      if (!shard.retired_tables.empty() && shard.retired_tables.newest() > newest) {
        newest = shard.retired_tables.newest();
      }
      for (int step = 0; step < 2 && !all && !domain.reclaimable(newest); ++step) {
        if (!domain.try_advance()) {
          break;
        }
      }
    }
    Node* nodes =
        all ? shard.retired_nodes.take_all() : shard.retired_nodes.take_reclaimable(domain);
    Table* tables =
        all ? shard.retired_tables.take_all() : shard.retired_tables.take_reclaimable(domain);
    lock.unlock();
    destroy(nodes, tables);
  }

  static void destroy(Node* nodes, Table* tables) noexcept {
    delete_retired(nodes);
    while (tables != nullptr) {
      Table::destroy(std::exchange(tables, tables->next_retired));
    }
  }
  static void destroy(RetiredList<Node>& nodes, RetiredList<Table>& tables) noexcept {
    destroy(std::exchange(nodes.head, nullptr), std::exchange(tables.head, nullptr));
    nodes.tail = nullptr;
    tables.tail = nullptr;
  }

  std::unique_ptr<Shard[]> shards_ = std::make_unique<Shard[]>(shard_count);
};

}  // namespace supervisor::detail
