#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <latch>
#include <memory>
#include <numeric>
#include <random>
#include <supervisor/detail/epoch.hpp>
#include <supervisor/detail/sharded_map.hpp>
#include <thread>
#include <vector>

#include "catch_shim.hpp"
#include "sharded_map_support.hpp"
#include "support.hpp"

namespace {

using test::lookup;
using test::Tracked;
using Value = test::TrackedValue;
using Map = test::TrackedMap;

std::size_t count(const Map& map) {
  std::size_t n = 0;
  map.for_each_unlocked([&](std::uint64_t, const Value&) { ++n; });
  return n;
}

}  // namespace

TEST_CASE("ShardedMap: insert, find, replace, erase", "[sharded_map]") {
  Map map;
  CHECK(map.visit(7, [](const Value* value) { return value == nullptr; }));
  CHECK(map.try_emplace(7, nullptr));  // A reservation.
  CHECK_FALSE(map.try_emplace(7, std::make_shared<Tracked>(70)));
  CHECK(map.visit(7, [](const Value* value) { return value != nullptr && !*value; }));

  map.assign(7, std::make_shared<Tracked>(7));
  CHECK(lookup(map, 7) == 7);
  CHECK(count(map) == 1);

  CHECK_FALSE(map.erase_if(7, [](const Value& value) { return value == nullptr; }));
  CHECK(lookup(map, 7) == 7);
  CHECK(map.erase_if(7, [](const Value& value) { return value != nullptr; }));
  CHECK(lookup(map, 7) == 0);
  CHECK_FALSE(map.erase_if(7, [](const Value&) { return true; }));
  CHECK(count(map) == 0);

  map.assign(8, std::make_shared<Tracked>(8));  // assign inserts an absent key
  CHECK(lookup(map, 8) == 8);
}

TEST_CASE("ShardedMap: grows past many keys and keeps every one", "[sharded_map]") {
  Map map;
  constexpr std::uint64_t n = 20'000;
  for (std::uint64_t k = 1; k <= n; ++k) {
    REQUIRE(map.try_emplace(k, std::make_shared<Tracked>(k)));
  }
  CHECK(count(map) == n);
  std::uint64_t found = 0;
  for (std::uint64_t k = 1; k <= n; ++k) {
    found += lookup(map, k) == k ? 1 : 0;
  }
  CHECK(found == n);
  CHECK(lookup(map, n + 1) == 0);
  for (std::uint64_t k = 1; k <= n; k += 2) {
    REQUIRE(map.erase_if(k, [](const Value&) { return true; }));
  }
  CHECK(count(map) == n / 2);
  std::uint64_t odd_found = 0;
  std::uint64_t even_found = 0;
  for (std::uint64_t k = 1; k <= n; ++k) {
    (k % 2 == 1 ? odd_found : even_found) += lookup(map, k) == k ? 1 : 0;
  }
  CHECK(odd_found == 0);
  CHECK(even_found == n / 2);
}

namespace {

/// A value that counts its copies: a shard's growth copies every node, values included.
struct CopyCounted {
  explicit CopyCounted(std::atomic<int>& copies) : copies_(&copies) {}
  CopyCounted(const CopyCounted& other) : copies_(other.copies_) { copies_->fetch_add(1); }
  CopyCounted(CopyCounted&&) noexcept = default;
  CopyCounted& operator=(const CopyCounted&) = delete;
  CopyCounted& operator=(CopyCounted&&) = delete;
  ~CopyCounted() = default;

 private:
  std::atomic<int>* copies_;
};

using CopyCountedMap =
    supervisor::detail::ShardedMap<std::uint64_t, CopyCounted, std::hash<std::uint64_t>,
                                   std::equal_to<std::uint64_t>>;

/// How many values inserting `n` keys copied, after `reserve(reserved)`.
int copies_inserting(std::uint64_t n, std::size_t reserved) {
  std::atomic<int> copies{0};
  CopyCountedMap map;
  map.reserve(reserved);
  for (std::uint64_t k = 1; k <= n; ++k) {
    REQUIRE(map.try_emplace(k, CopyCounted(copies)));
  }
  return copies.load();
}

}  // namespace

TEST_CASE("ShardedMap: a walk visits every entry once at every size", "[sharded_map]") {
  // From empty shards to shards of many buckets: the walk asks for the buckets ahead of it
  // (prefetch.hpp) up to each table's end. Every fourth entry is reserved (a null value).
  for (const std::uint64_t n : {0, 1, 5, 63, 64, 65, 500, 5'000}) {
    Map map;
    for (std::uint64_t k = 1; k <= n; ++k) {
      REQUIRE(map.try_emplace(k, k % 4 == 0 ? nullptr : std::make_shared<Tracked>(k)));
    }
    std::vector<std::uint64_t> seen;
    map.for_each_unlocked([&](std::uint64_t key, const Value& value) {
      seen.push_back(key);
      CHECK((value == nullptr) == (key % 4 == 0));
      CHECK((value == nullptr || value->key == key));
    });
    std::sort(seen.begin(), seen.end());
    std::vector<std::uint64_t> expected(n);
    std::iota(expected.begin(), expected.end(), std::uint64_t{1});
    CHECK(seen == expected);
  }
}

TEST_CASE("ShardedMap: reserved room takes its entries without a growth's copies",
          "[sharded_map]") {
  // 4,096 keys over 64 shards: about 64 a shard, never near the 256 buckets each gets from a
  // reserve for 8,192; without it, each shard grows from 8 buckets and copies its nodes.
  CHECK(copies_inserting(4'096, 0) > 0);
  CHECK(copies_inserting(4'096, 8'192) == 0);
  CHECK(copies_inserting(4'096, 100) > 0);  // too small to matter: the map stays as it was
}

TEST_CASE("ShardedMap: an unlinked value is freed at once when no lookup is in flight",
          "[sharded_map]") {
  std::atomic<int> destroyed{0};
  Map map;
  map.assign(1, std::make_shared<Tracked>(1, &destroyed));
  const auto& domain = supervisor::detail::EpochDomain::instance();
  const std::uint64_t epoch = domain.epoch();
  map.assign(1, std::make_shared<Tracked>(1, &destroyed));  // replaces the first
  CHECK(destroyed == 1);
  REQUIRE(map.erase_if(1, [](const Value&) { return true; }));
  CHECK(destroyed == 2);
  // With no thread pinned, without the two locked advances of the shared epoch each would cost.
  CHECK(domain.epoch() == epoch);
}

TEST_CASE("ShardedMap: a lookup in flight keeps what it found alive until it ends",
          "[sharded_map]") {
  std::atomic<int> destroyed{0};
  Map map;
  map.assign(1, std::make_shared<Tracked>(1, &destroyed));
  test::Event inside;
  test::Event erased;
  std::atomic<bool> alive_after_erase{false};
  std::uint64_t key_after_erase = 0;
  test::Background reader([&] {
    map.visit(1, [&](const Value* value) {
      inside.notify();
      erased.wait();
      // Erased and retired by now, but this lookup still holds it.
      alive_after_erase = (*value)->alive.load();
      key_after_erase = (*value)->key;
      return 0;
    });
  });
  REQUIRE(inside.wait());
  REQUIRE(map.erase_if(1, [](const Value&) { return true; }));
  CHECK(destroyed == 0);  // The reader is pinned: reclamation must wait.
  CHECK(lookup(map, 1) == 0);
  map.reclaim();
  CHECK(destroyed == 0);
  erased.notify();
  REQUIRE(reader.join() == nullptr);
  CHECK(alive_after_erase);
  CHECK(key_after_erase == 1);

  map.reclaim();  // Nobody is pinned now.
  CHECK(destroyed == 1);
}

TEST_CASE("ShardedMap: a lookup may write to the map and look up again", "[sharded_map]") {
  std::atomic<int> destroyed{0};
  Map map;
  map.assign(1, std::make_shared<Tracked>(1, &destroyed));
  map.assign(2, std::make_shared<Tracked>(2, &destroyed));
  bool still_alive = false;
  std::uint64_t nested = 0;
  const auto erased = map.visit(1, [&](const Value* value) {
    const bool ok = map.erase_if(1, [](const Value&) { return true; });
    nested = lookup(map, 2);  // A nested pin on the same thread.
    still_alive = (*value)->alive.load();
    return ok;
  });
  CHECK(erased);
  CHECK(nested == 2);
  CHECK(still_alive);
  CHECK(destroyed == 0);  // The write inside the lookup could not free it...
  map.reclaim();
  CHECK(destroyed == 1);  // ...but the next reclamation, with nobody pinned, does.
}

TEST_CASE("ShardedMap: lookups race with inserts, replacements, erasures and growth",
          "[sharded_map]") {
  Map map;
  constexpr std::uint64_t keys = 4'096;
  constexpr int rounds = 6;
  std::atomic<bool> writing{true};
  std::atomic<std::uint64_t> wrong{0};
  std::atomic<std::uint64_t> hits{0};
  auto read = [&](std::uint64_t seed) {
    std::mt19937_64 random(seed);
    do {
      for (int i = 0; i < 1'000; ++i) {
        const std::uint64_t key = random() % keys + 1;
        map.visit(key, [&](const Value* value) {
          if (value != nullptr && *value) {
            hits.fetch_add(1, std::memory_order_relaxed);
            if ((*value)->key != key || !(*value)->alive.load()) {
              wrong.fetch_add(1);
            }
          }
          return 0;
        });
      }
    } while (writing.load());
  };
  test::Background reader1([&] { read(1); });
  test::Background reader2([&] { read(2); });
  for (int round = 0; round < rounds; ++round) {
    for (std::uint64_t k = 1; k <= keys; ++k) {
      map.try_emplace(k, nullptr);
      map.assign(k, std::make_shared<Tracked>(k));
    }
    for (std::uint64_t k = 1; k <= keys; k += round % 2 + 1) {
      map.erase_if(k, [](const Value&) { return true; });
    }
  }
  writing = false;
  REQUIRE(reader1.join() == nullptr);
  REQUIRE(reader2.join() == nullptr);
  CHECK(wrong == 0);
  CHECK(hits > 0);
}

namespace {

/// Looks a key up from a thread-local destructor, so at a point of the thread's exit where the
/// epoch domain has already taken back the thread's record.
struct LookupAtExit {
  const Map* map = nullptr;
  std::atomic<std::uint64_t>* found = nullptr;
  ~LookupAtExit() {
    if (map != nullptr) {
      found->store(lookup(*map, 5));
    }
  }
};

}  // namespace

TEST_CASE("EpochDomain: exited threads give their records back; lookups work during exit",
          "[sharded_map]") {
  Map map;
  map.assign(5, std::make_shared<Tracked>(5));
  CHECK(lookup(map, 5) == 5);  // This thread holds a record from here on.
  auto& domain = supervisor::detail::EpochDomain::instance();
  const std::size_t before = domain.records();
  for (int i = 0; i < 20; ++i) {
    std::thread([&] { (void)lookup(map, 5); }).join();
  }
  // Each thread hands its record back as it exits, so the next one reuses it.
  CHECK(domain.records() <= before);

  std::atomic<std::uint64_t> found{0};
  std::thread([&] {
    // Constructed before the thread's first lookup, so destroyed after the record went back.
    thread_local LookupAtExit at_exit;
    at_exit.map = &map;
    at_exit.found = &found;
    (void)lookup(map, 5);
  }).join();
  CHECK(found == 5);
}

TEST_CASE("ShardedMap: with many threads' records, writes batch their epoch advances",
          "[sharded_map]") {
  std::atomic<int> destroyed{0};
  Map map;
  map.assign(1, std::make_shared<Tracked>(1, &destroyed));
  map.assign(2, std::make_shared<Tracked>(2, &destroyed));
  // More live threads that have looked a key up than one retirement pays a scan for.
  constexpr int threads = 130;
  std::latch looked(threads);
  test::Event release;
  std::vector<std::thread> lookers;
  lookers.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    lookers.emplace_back([&] {
      (void)lookup(map, 2);
      looked.count_down();
      release.wait();  // Alive (holding a record), but not pinned.
    });
  }
  looked.wait();
  auto& domain = supervisor::detail::EpochDomain::instance();
  CHECK(domain.records() >= threads);
  REQUIRE(map.erase_if(1, [](const Value&) { return true; }));
  CHECK(destroyed == 0);  // One retirement does not pay for reading 130 records...
  map.reclaim();
  CHECK(destroyed == 1);  // ...but an explicit reclamation always tries.
  release.notify();
  for (auto& t : lookers) {
    t.join();
  }
}
