// The bucket filters of the process map (bucket_chains.hpp): an insert of a key whose counter
// is zero skips the chain, and inserts and erases never take a present key's counter to zero.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <random>
#include <supervisor/detail/bucket_chains.hpp>
#include <supervisor/detail/sharded_map.hpp>
#include <vector>

#include "catch_shim.hpp"

namespace {

using Chains = supervisor::detail::BucketChains<std::uint64_t, int, std::equal_to<std::uint64_t>>;

// Hashes in one bucket of any table (low bits clear) and one shard (top bits clear), with the
// filter counter `field` (hash bits 48..51) and `serial` telling apart keys that share it.
std::uint64_t hash_with(unsigned field, std::uint64_t serial) {
  return (std::uint64_t{field} << 48U) | (serial << 16U);
}

/// The inverse of `ShardedMap::mix`, so that a test's key is the hash the map works with.
struct Unmix {
  static std::uint64_t inverse(std::uint64_t odd) {
    std::uint64_t x = odd;  // Newton's iteration doubles the correct low bits each step
    for (int i = 0; i < 6; ++i) {
      x *= 2 - odd * x;
    }
    return x;
  }
  std::size_t operator()(std::uint64_t h) const {
    h ^= h >> 33U;
    h *= inverse(0xc4ceb9fe1a85ec53ULL);
    h ^= h >> 33U;
    h *= inverse(0xff51afd7ed558ccdULL);
    h ^= h >> 33U;
    return static_cast<std::size_t>(h);
  }
};

using Value = std::shared_ptr<const int>;
using Map =
    supervisor::detail::ShardedMap<std::uint64_t, Value, Unmix, std::equal_to<std::uint64_t>>;

}  // namespace

TEST_CASE("BucketChains: an insert consults the bucket's filter before its chain",
          "[sharded_map]") {
  Chains chains(1);
  const std::uint64_t a = hash_with(1, 1);
  chains.link_head(new Chains::Node(a, a, 1));
  REQUIRE(chains.find(a, a) != nullptr);
  CHECK(Chains::count_of(chains.buckets[0].filter, a) == 1);
  // With the counter cleared by hand, the key reads as absent: the chain was not walked.
  chains.buckets[0].filter = 0;
  CHECK(chains.find(a, a) == nullptr);
  delete chains.buckets[0].head.exchange(nullptr);
}

TEST_CASE("BucketChains: a bucket's head and filter share one cache line", "[sharded_map]") {
  // An insert of a new key reads both, and at a million entries each line is a miss: in two
  // arrays they cost two (the second was a sixth of an insert's samples, perf 2026-12-08).
  const Chains chains(64);
  const auto line = [](const void* at) { return reinterpret_cast<std::uintptr_t>(at) / 64; };
  for (std::size_t b = 0; b <= chains.mask; ++b) {
    CHECK(line(&chains.buckets[b].head) == line(&chains.buckets[b].filter));
  }
}

namespace {

void erase(Chains& chains, std::uint64_t hash) {
  std::atomic<Chains::Node*>* link = chains.find_link(hash, hash);
  REQUIRE(link != nullptr);
  Chains::Node* node = link->load();
  chains.unlink(*link, *node);
  delete node;
}

}  // namespace

TEST_CASE("BucketChains: erases count down; a full counter waits for a walk to recount",
          "[sharded_map]") {
  auto* chains = new Chains(1);
  const std::uint64_t a = hash_with(1, 1);
  const std::uint64_t b = hash_with(2, 1);
  const std::uint64_t c = hash_with(3, 1);
  for (const std::uint64_t h : {a, b, c}) {
    chains->link_head(new Chains::Node(h, h, 0));  // the chain: c, b, a
  }
  const auto count = [&](std::uint64_t hash) {
    return Chains::count_of(chains->buckets[0].filter, hash);
  };
  CHECK((count(a) == 1 && count(b) == 1 && count(c) == 1));
  erase(*chains, b);  // in the middle of the chain
  CHECK(count(b) == 0);
  CHECK((count(a) == 1 && count(c) == 1));
  CHECK(chains->find(a, a) != nullptr);
  CHECK(chains->find(c, c) != nullptr);

  // Four nodes on one counter: it stops at three, and the neighbours keep their counts.
  std::vector<std::uint64_t> same;
  for (std::uint64_t serial = 1; serial <= 4; ++serial) {
    same.push_back(hash_with(5, serial));
    chains->link_head(new Chains::Node(same.back(), same.back(), 0));
  }
  CHECK(count(same[0]) == Chains::counter_max);
  CHECK(Chains::count_of(chains->buckets[0].filter, hash_with(4, 1)) == 0);
  CHECK(Chains::count_of(chains->buckets[0].filter, hash_with(6, 1)) == 0);
  for (const std::uint64_t h : same) {
    erase(*chains, h);
  }
  CHECK(count(same[0]) == Chains::counter_max);  // it may count more than it knows
  CHECK(chains->find(hash_with(5, 9), hash_with(5, 9)) == nullptr);  // a walk: recounted
  CHECK(count(same[0]) == 0);
  CHECK((count(a) == 1 && count(c) == 1));
  Chains::destroy(chains);
}

TEST_CASE("ShardedMap: inserts and erases in one crowded bucket agree with a plain map",
          "[sharded_map]") {
  // 80 keys in one bucket of one shard, five to each filter counter (which stops at three);
  // past 8 live keys the table grows and copies them (into the same bucket: the low bits are
  // clear).
  std::vector<std::uint64_t> keys;
  for (unsigned bit = 0; bit < 16; ++bit) {
    for (std::uint64_t serial = 1; serial <= 5; ++serial) {
      keys.push_back(hash_with(bit, serial));
    }
  }
  REQUIRE(Map::hash_of(keys[5]) == keys[5]);  // `Unmix` undoes the map's mixing
  Map map;
  std::map<std::uint64_t, int> model;
  std::mt19937_64 random(12345);
  for (int step = 0; step < 20'000; ++step) {
    const std::uint64_t key = keys[random() % keys.size()];
    const int value = step;
    switch (random() % 4) {
      case 0:
        CHECK(map.try_emplace(key, std::make_shared<const int>(value)) ==
              model.emplace(key, value).second);
        break;
      case 1: {  // the supervisor's erase: by hash and value
        const bool present = model.count(key) != 0;
        CHECK(map.erase_value(key, [&](const Value& v) { return present && *v == model[key]; }) ==
              present);
        model.erase(key);
        break;
      }
      case 2:
        CHECK(map.erase_if(key, [](const Value&) { return true; }) == (model.erase(key) != 0));
        break;
      default:
        map.assign(key, std::make_shared<const int>(value));
        model[key] = value;
        break;
    }
    const std::uint64_t probe = keys[random() % keys.size()];
    const int found = map.visit(probe, [](const Value* v) { return v != nullptr ? **v : -1; });
    const auto it = model.find(probe);
    REQUIRE(found == (it != model.end() ? it->second : -1));
  }
}
