// detail::RetiredList and detail::delete_retired (epoch.hpp): what a map unlinked waits there
// until no reader can hold it, and is then taken and deleted in one pass.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <supervisor/detail/epoch.hpp>
#include <utility>
#include <vector>

#include "catch_shim.hpp"

namespace {

using supervisor::detail::EpochDomain;
using supervisor::detail::RetiredList;

/// An item as a map's node is: a retirement epoch, a link, and a value that is a handle.
struct Item {
  explicit Item(std::vector<int>* deleted_log, int id, std::shared_ptr<int> v = nullptr)
      : log(deleted_log), number(id), value(std::move(v)) {}
  Item(const Item&) = delete;
  Item& operator=(const Item&) = delete;
  ~Item() { log->push_back(number); }

  std::vector<int>* log;
  int number;
  std::shared_ptr<int> value;
  std::uint64_t retired_at = 0;
  Item* next_retired = nullptr;
};

/// As a map's table is: no value.
struct Bare {
  explicit Bare(std::vector<int>* deleted_log, int id) : log(deleted_log), number(id) {}
  Bare(const Bare&) = delete;
  Bare& operator=(const Bare&) = delete;
  ~Bare() { log->push_back(number); }

  std::vector<int>* log;
  int number;
  std::uint64_t retired_at = 0;
  Bare* next_retired = nullptr;
};

/// Advances the global epoch until it is at least `at_least` (nothing else in this test binary
/// holds a pin while it runs, so each advance succeeds).
std::uint64_t advance_to(std::uint64_t at_least) {
  EpochDomain& domain = EpochDomain::instance();
  while (domain.epoch() < at_least) {
    REQUIRE(domain.try_advance());
  }
  return domain.epoch();
}

template <class T>
std::size_t length(const T* item) {
  std::size_t n = 0;
  for (; item != nullptr; item = item->next_retired) {
    ++n;
  }
  return n;
}

template <class T>
T* make_list(std::vector<int>& log, int n) {
  T* head = nullptr;
  for (int i = n; i > 0; --i) {
    T* item = nullptr;
    if constexpr (requires { item->value; }) {
      // Every third value is null: `delete_retired` asks for what values point at, if anything.
      item = new T(&log, i, i % 3 == 0 ? nullptr : std::make_shared<int>(i));
    } else {
      item = new T(&log, i);
    }
    item->next_retired = head;
    head = item;
  }
  return head;
}

/// Three items on a list, retired at the epochs given (oldest first).
struct ThreeRetired {
  ThreeRetired(std::uint64_t first, std::uint64_t second, std::uint64_t third) {
    list.push(&a, first);
    list.push(&b, second);
    list.push(&c, third);
  }
  std::vector<int> log;  // before the items, which write to it as they go
  Item a{&log, 1};
  Item b{&log, 2};
  Item c{&log, 3};
  RetiredList<Item> list;
};

}  // namespace

TEST_CASE("RetiredList: takes the reclaimable oldest items and leaves the rest in order",
          "[epoch]") {
  const std::uint64_t now = advance_to(10);
  ThreeRetired three(now - 3, now - 2, now);  // `c` not reclaimable until two more advances
  auto& [log, a, b, c, list] = three;
  Item* taken = list.take_reclaimable(EpochDomain::instance());
  CHECK(taken == &a);
  CHECK(length(taken) == 2);
  CHECK_FALSE(list.empty());
  CHECK(list.head == &c);
  CHECK(list.newest() == now);
  CHECK(list.take_reclaimable(EpochDomain::instance()) == nullptr);
  advance_to(now + 2);
  CHECK(list.take_reclaimable(EpochDomain::instance()) == &c);
  CHECK(list.empty());
  CHECK(list.tail == nullptr);
  CHECK(log.empty());  // taking deletes nothing
}

TEST_CASE("RetiredList: a list whose newest item is reclaimable is taken whole without a walk",
          "[epoch]") {
  const std::uint64_t now = advance_to(10);
  ThreeRetired three(now - 2, now - 2, now - 2);
  auto& [log, a, b, c, list] = three;
  // Epochs only grow along a list. Break that in the middle: were the list walked, the walk
  // would stop at `b`; taken whole on the newest's word, as it should be, it is not read.
  b.retired_at = now;
  Item* taken = list.take_reclaimable(EpochDomain::instance());
  CHECK(taken == &a);
  CHECK(length(taken) == 3);
  CHECK(list.empty());
  CHECK(list.tail == nullptr);
}

TEST_CASE("delete_retired: deletes every item of a list once and in order, at any length",
          "[epoch]") {
  // Lengths around the look-ahead (8 items, values at 4): shorter, equal, and past it.
  for (const int n : {0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 100}) {
    std::vector<int> log;
    supervisor::detail::delete_retired(make_list<Item>(log, n));
    REQUIRE(log.size() == static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      CHECK(log[static_cast<std::size_t>(i)] == i + 1);
    }
    std::vector<int> bare_log;
    supervisor::detail::delete_retired(make_list<Bare>(bare_log, n));
    CHECK(bare_log == log);
  }
}

TEST_CASE("delete_retired: releases each value, so the last owner's object goes with it",
          "[epoch]") {
  std::vector<int> log;
  Item* head = make_list<Item>(log, 20);
  std::vector<std::weak_ptr<int>> watched;
  for (const Item* item = head; item != nullptr; item = item->next_retired) {
    watched.emplace_back(item->value);
  }
  supervisor::detail::delete_retired(head);
  for (const auto& w : watched) {
    CHECK(w.expired());
  }
}
