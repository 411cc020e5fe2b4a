// The bucket filters of the process map (bucket_chains.hpp): an insert of a key whose bit is
// clear skips the chain, and no sequence of inserts and erases lets a present key's bit go.
#include <atomic>
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
// filter bit `bit` (hash bits 48..51) and `serial` telling apart keys that share it.
std::uint64_t hash_with(unsigned bit, std::uint64_t serial) {
  return (std::uint64_t{bit} << 48U) | (serial << 16U);
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
  CHECK(chains.filters[0] == Chains::filter_bit(a));
  // With the bit cleared by hand, the key reads as absent: the chain was not walked.
  chains.filters[0] = 0;
  CHECK(chains.find(a, a) == nullptr);
  delete chains.heads[0].exchange(nullptr);
}

TEST_CASE("BucketChains: walks and erases of a chain's last node make its filter exact",
          "[sharded_map]") {
  auto* chains = new Chains(1);
  const std::uint64_t a = hash_with(1, 1);
  const std::uint64_t b = hash_with(2, 1);
  const std::uint64_t c = hash_with(3, 1);
  for (const std::uint64_t h : {a, b, c}) {
    chains->link_head(new Chains::Node(h, h, 0));  // the chain: c, b, a
  }
  const auto bits = [](std::initializer_list<std::uint64_t> hashes) {
    std::uint16_t all = 0;
    for (const std::uint64_t h : hashes) {
      all = static_cast<std::uint16_t>(all | Chains::filter_bit(h));
    }
    return all;
  };
  REQUIRE(chains->filters[0] == bits({a, b, c}));

  // Erasing `b` (not last): its bit stays, as a superset.
  std::atomic<Chains::Node*>* link = chains->find_link(b, b);
  REQUIRE(link != nullptr);
  Chains::Node* node = link->load();
  chains->unlink(*link, *node, chains->filters[0]);
  delete node;
  CHECK(chains->filters[0] == bits({a, b, c}));

  // A walk for an absent key whose bit is set (b's, left over) finds it absent and drops it.
  const std::uint64_t d = hash_with(2, 2);
  CHECK(chains->find(d, d) == nullptr);
  CHECK(chains->filters[0] == bits({a, c}));
  CHECK(chains->find(a, a) != nullptr);
  CHECK(chains->find(c, c) != nullptr);

  // Erasing `a`, the last node, with the bits of the nodes ahead (c's): exact at once.
  link = chains->find_link(a, a);
  REQUIRE(link != nullptr);
  node = link->load();
  chains->unlink(*link, *node, bits({c}));
  delete node;
  CHECK(chains->filters[0] == bits({c}));
  CHECK(chains->find(c, c) != nullptr);
  Chains::destroy(chains);
}

TEST_CASE("ShardedMap: inserts and erases in one crowded bucket agree with a plain map",
          "[sharded_map]") {
  // 48 keys in one bucket of one shard, three to each filter bit; the table grows past its
  // first 8 buckets and copies them (the bucket stays the same: the low bits are clear).
  std::vector<std::uint64_t> keys;
  for (unsigned bit = 0; bit < 16; ++bit) {
    for (std::uint64_t serial = 1; serial <= 3; ++serial) {
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
