#include "catch_shim.hpp"  // first: it picks the Catch2 v2 or v3 header
#include "support.hpp"

// Standard headers after the test support.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <new>
#include <optional>
#include <stdexcept>
#include <supervisor/map_table.hpp>
#include <thread>
#include <utility>
#include <vector>

// MapTable's index, against a std::map doing the same operations: long probe runs, runs that wrap
// around the index's end, removals from the middle of a run, growth, and every failure a user type
// can cause leaving the table as it was.

namespace {

/// A deterministic sequence (splitmix64), so that a failure replays.
class Sequence {
 public:
  explicit Sequence(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31U);
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }

 private:
  std::uint64_t state_;
};

/// Few distinct hashes: keys pile up in long probe runs that meet and wrap around.
struct CollidingHash {
  std::size_t operator()(int key) const { return static_cast<std::size_t>(key % 7); }
};

/// Whether `table` holds exactly `model`'s rows, by every reading member.
template <class Table>
bool same(const Table& table, const std::map<int, int>& model, int key_space) {
  if (table.size() != model.size()) {
    return false;
  }
  std::map<int, int> listed;
  auto cursor = table.iterate();
  while (cursor.next()) {
    if (!listed.insert(cursor.get()).second) {
      return false;  // a row listed twice
    }
  }
  cursor.close();
  if (listed != model) {
    return false;
  }
  for (int key = 0; key < key_space; ++key) {
    const auto it = model.find(key);
    const std::optional<int> expected =
        it == model.end() ? std::nullopt : std::optional<int>(it->second);
    if (table.get(key) != expected || table.contains(key) != expected.has_value()) {
      return false;
    }
  }
  return true;
}

template <class Hash>
void churn(std::uint64_t seed, int key_space, int operations) {
  supervisor::MapTable<int, int, Hash> table;
  std::map<int, int> model;
  Sequence random(seed);
  for (int op = 0; op < operations; ++op) {
    const int key = static_cast<int>(random.below(static_cast<std::uint64_t>(key_space)));
    // More inserts than erases at first, then the other way round: the index grows, then empties.
    const bool insert = random.below(100) < (op < operations / 2 ? 70U : 30U);
    if (insert) {
      table.insert_or_assign(key, op);
      model.insert_or_assign(key, op);
    } else {
      REQUIRE(table.erase(key) == (model.erase(key) == 1));
    }
    const auto it = model.find(key);
    REQUIRE(table.get(key) == (it == model.end() ? std::nullopt : std::optional<int>(it->second)));
    if (op % 97 == 0) {
      REQUIRE(same(table, model, key_space));
    }
  }
  REQUIRE(same(table, model, key_space));
  for (int key = 0; key < key_space; ++key) {
    table.erase(key);
  }
  CHECK(table.size() == 0);
  CHECK_FALSE(table.iterate().next());
}

/// A key type whose hash, equality and copy each throw when told to.
struct Touchy {
  int value = 0;
  static inline bool throw_on_copy = false;
  static inline bool throw_on_equal = false;
  static inline bool throw_on_hash = false;
  explicit Touchy(int v) : value(v) {}
  Touchy(const Touchy& other) : value(other.value) {
    if (throw_on_copy) {
      throw std::runtime_error("copy");
    }
  }
  Touchy& operator=(const Touchy&) = default;
  ~Touchy() = default;
  friend bool operator==(const Touchy& a, const Touchy& b) {
    if (throw_on_equal) {
      throw std::runtime_error("equal");
    }
    return a.value == b.value;
  }
};
struct TouchyHash {
  std::size_t operator()(const Touchy& key) const {
    if (Touchy::throw_on_hash) {
      throw std::runtime_error("hash");
    }
    return static_cast<std::size_t>(key.value % 3);
  }
};
using TouchyTable = supervisor::MapTable<Touchy, int, TouchyHash>;

std::map<int, int> rows_of(const TouchyTable& table) {
  std::map<int, int> rows;
  auto cursor = table.iterate();
  while (cursor.next()) {
    auto row = cursor.get();
    rows.emplace(row.first.value, row.second);
  }
  return rows;
}

}  // namespace

TEST_CASE("MapTable agrees with a std::map through inserts, replaces and erases", "[table]") {
  SECTION("keys in long colliding probe runs") { churn<CollidingHash>(1, 200, 20'000); }
  SECTION("std::hash, growing to thousands of rows and back") {
    churn<std::hash<int>>(2, 5'000, 40'000);
  }
}

TEST_CASE("MapTable is as it was when a key's hash, equality or copy throws", "[table]") {
  TouchyTable table;
  std::map<int, int> model;
  for (int i = 0; i < 40; ++i) {  // 40 rows take the index through growths to 64 slots
    // A new row whose key's copy throws, at every size (so also as the index must grow first).
    Touchy::throw_on_copy = true;
    CHECK_THROWS(table.insert_or_assign(Touchy(i), i));
    Touchy::throw_on_copy = false;
    REQUIRE(rows_of(table) == model);
    table.insert_or_assign(Touchy(i), i);
    model.emplace(i, i);
  }
  REQUIRE(rows_of(table) == model);
  bool* const flags[] = {&Touchy::throw_on_hash, &Touchy::throw_on_equal, &Touchy::throw_on_copy};
  for (bool* flag : flags) {
    for (int key : {5, 40, 41}) {  // present, and absent (40 and 41 would be new rows)
      CAPTURE(key, flag == &Touchy::throw_on_hash, flag == &Touchy::throw_on_equal);
      *flag = true;
      const bool copy_only = flag == &Touchy::throw_on_copy;
      // A replace copies no key; an erase and a lookup copy none either.
      if (!copy_only || key >= 40) {
        CHECK_THROWS(table.insert_or_assign(Touchy(key), 100));
      }
      if (!copy_only) {
        CHECK_THROWS(table.erase(Touchy(key)));
        CHECK_THROWS((void)table.get(Touchy(key)));
        CHECK_THROWS((void)table.contains(Touchy(key)));
      }
      *flag = false;
      CHECK(rows_of(table) == model);
      CHECK(table.size() == model.size());
      for (const auto& [k, v] : model) {
        CHECK(table.get(Touchy(k)) == std::optional<int>(v));
      }
    }
  }
  // `iterate` copies every key: a copy that throws fails the iteration, and changes nothing.
  Touchy::throw_on_copy = true;
  CHECK_THROWS((void)table.iterate());
  Touchy::throw_on_copy = false;
  CHECK(rows_of(table) == model);
}

namespace {

/// A runnable whose copy and move each throw when told to.
struct TouchyRunnable {
  int value = 0;
  static inline bool throw_on_copy = false;
  static inline bool throw_on_move = false;
  explicit TouchyRunnable(int v) : value(v) {}
  TouchyRunnable(const TouchyRunnable& other) : value(other.value) {
    if (throw_on_copy) {
      throw std::runtime_error("copy");
    }
  }
  TouchyRunnable(TouchyRunnable&& other) : value(other.value) {  // NOLINT: throws on purpose
    if (throw_on_move) {
      throw std::runtime_error("move");
    }
  }
  TouchyRunnable& operator=(const TouchyRunnable&) = default;
  TouchyRunnable& operator=(TouchyRunnable&&) = default;  // NOLINT: as the move constructor
  ~TouchyRunnable() = default;
};

/// A hash that runs `on_hash` first, when set.
struct WatchedHash {
  static inline std::function<void()> on_hash;
  std::size_t operator()(int key) const {
    if (on_hash) {
      on_hash();
    }
    return std::hash<int>{}(key);
  }
};

/// A hash with state of its own: a table must value-initialize it.
struct SeededHash {
  std::size_t seed;
  std::size_t operator()(int key) const {
    if (seed != 0) {
      throw std::logic_error("a hash left uninitialized");
    }
    return std::hash<int>{}(key);
  }
};

}  // namespace

TEST_CASE("MapTable is as it was when a runnable's copy or move throws", "[table]") {
  supervisor::MapTable<int, TouchyRunnable> table;
  std::map<int, int> model;
  const auto rows = [&table] {
    std::map<int, int> listed;
    auto cursor = table.iterate();
    while (cursor.next()) {
      const auto row = cursor.get();
      listed.emplace(row.first, row.second.value);
    }
    return listed;
  };
  for (int i = 0; i < 40; ++i) {
    TouchyRunnable::throw_on_move = true;  // into a new row's node
    CHECK_THROWS(table.insert_or_assign(i, TouchyRunnable(i)));
    TouchyRunnable::throw_on_move = false;
    REQUIRE(rows() == model);
    table.insert_or_assign(i, TouchyRunnable(i));
    model.emplace(i, i);
  }
  TouchyRunnable::throw_on_copy = true;
  CHECK_THROWS((void)table.get(7));
  CHECK_THROWS((void)table.iterate());
  TouchyRunnable::throw_on_copy = false;
  CHECK(rows() == model);
  CHECK(table.size() == model.size());
}

TEST_CASE("MapTable calls Hash before it takes its lock", "[table]") {
  // While the hash runs, another thread reads the table's size: under the table's lock (a
  // writer's), that read would wait for the hash, which waits for it.
  supervisor::MapTable<int, int, WatchedHash> table;
  table.insert_or_assign(1, 1);
  std::atomic<bool> read{false};
  bool read_while_hashing = false;
  std::thread reader;
  WatchedHash::on_hash = [&] {
    read.store(false);
    reader = std::thread([&] {
      (void)table.size();
      read.store(true);
    });
    // Bounded: were the hash under the lock, this would give up after `test::patience`.
    read_while_hashing = test::eventually([&] { return read.load(); });
  };
  table.insert_or_assign(2, 2);
  reader.join();
  CHECK(read_while_hashing);
  table.erase(1);  // the same for an erase
  WatchedHash::on_hash = nullptr;
  reader.join();
  CHECK(read_while_hashing);
  CHECK(table.size() == 1);
}

TEST_CASE("MapTable value-initializes a Hash with state", "[table]") {
  // Built over bytes that are not zero: a member left default-initialized would keep them.
  using Seeded = supervisor::MapTable<int, int, SeededHash>;
  alignas(Seeded) std::array<unsigned char, sizeof(Seeded)> storage{};
  storage.fill(0xA5);
  auto* table = new (storage.data()) Seeded;
  CHECK_NOTHROW(table->insert_or_assign(1, 1));
  CHECK(table->get(1) == std::optional<int>(1));
  table->~Seeded();
}

TEST_CASE("MapTable keeps the first row of a key listed twice in its initializer", "[table]") {
  const supervisor::MapTable<int, int> table{{1, 10}, {2, 20}, {1, 11}};
  CHECK(table.size() == 2);
  CHECK(table.get(1) == std::optional<int>(10));
  CHECK(table.get(2) == std::optional<int>(20));
}

TEST_CASE("MapTable serves readers while writers insert, replace and erase", "[table]") {
  // Two writers over keys of their own, two readers over all of them: under ThreadSanitizer a
  // race in the index or its growth shows; here, the rows each writer leaves at the end.
  supervisor::MapTable<int, int> table;
  constexpr int writers = 2;
  constexpr int keys_each = 500;
  constexpr int rounds = 4;
  std::vector<std::thread> threads;
  threads.reserve(writers + 2);
  std::atomic<int> writing{writers};
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&table, &writing, w] {
      for (int round = 0; round < rounds; ++round) {
        for (int i = 0; i < keys_each; ++i) {
          table.insert_or_assign(w * keys_each + i, round);
        }
        for (int i = 0; i < keys_each; i += 2) {
          table.erase(w * keys_each + i);
        }
      }
      writing.fetch_sub(1);
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&table, &writing] {
      while (writing.load() != 0) {
        auto cursor = table.iterate();
        while (cursor.next()) {
          (void)table.get(cursor.get().first);  // maybe erased since: either answer is right
        }
        cursor.close();
        (void)table.contains(1);
        (void)table.size();
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  std::map<int, int> expected;
  for (int w = 0; w < writers; ++w) {
    for (int i = 1; i < keys_each; i += 2) {
      expected.emplace(w * keys_each + i, rounds - 1);
    }
  }
  CHECK(same(table, expected, writers * keys_each));
}
