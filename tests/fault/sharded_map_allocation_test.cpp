// `ShardedMap` under allocation faults while it is made (64 shards, a table each): whichever
// allocation fails, the construction throws `std::bad_alloc` and frees what it had made. The
// sanitizer builds (LeakSanitizer) tell a leak; here each run also checks what it met.

#include <functional>
#include <memory>
#include <new>

#include "../catch_shim.hpp"
#include "each_in_turn.hpp"
#include "inject.hpp"
#include "supervisor/detail/sharded_map.hpp"

namespace {

using Map =
    supervisor::detail::ShardedMap<int, std::shared_ptr<int>, std::hash<int>, std::equal_to<int>>;

/// Makes a map with allocation fault `n` armed (0: counts only), then uses it if it was made.
/// Returns how many allocations the construction met.
long make_with_fault(long n) {
  const fault::Quiet quiet;
  fault::arm(fault::Kind::alloc, n);
  std::unique_ptr<Map> map;
  bool threw = false;
  try {
    const fault::Loud loud;
    map = std::make_unique<Map>();
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  fault::disarm();
  const long met = fault::count();
  CHECK(threw == (fault::fired() != 0));
  if (map) {
    CHECK(map->try_emplace(7, std::make_shared<int>(7)));
    CHECK(map->visit(7, [](const std::shared_ptr<int>* found) { return found != nullptr; }));
  }
  return met;
}

}  // namespace

TEST_CASE("ShardedMap: each allocation of its construction fails in turn, leaving nothing",
          "[fault][sharded_map_allocation]") {
  fault::each_allocation_in_turn(make_with_fault);
}
