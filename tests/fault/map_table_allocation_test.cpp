// MapTable under allocation faults, SQLite's way: a script of inserts (through two growths of the
// index and of its array of rows), replaces, erases, lookups and iterations, with the Nth
// allocation failing, for every N the script makes. An operation that meets the fault throws
// `std::bad_alloc` and leaves the table as it was; every other one does what it says. After each
// operation the table is compared, row by row, with a `std::map` that did the same.

#include <cstddef>
#include <map>
#include <new>
#include <optional>
#include <string>
#include <utility>

#include "../catch_shim.hpp"
#include "each_in_turn.hpp"
#include "inject.hpp"
#include "supervisor/map_table.hpp"

namespace {

using Table = supervisor::MapTable<int, std::string>;
using Model = std::map<int, std::string>;

/// A value long enough that its copy allocates (no small-string buffer).
std::string value_of(int key, int round) {
  return "value of row " + std::to_string(key) + " in round " + std::to_string(round);
}

/// Whether `table` holds exactly `model`'s rows. Quiet: the comparison itself is not under test.
bool same(const Table& table, const Model& model) {
  const fault::Quiet quiet;
  if (table.size() != model.size()) {
    return false;
  }
  Model listed;
  auto cursor = table.iterate();
  while (cursor.next()) {
    if (!listed.insert(cursor.get()).second) {
      return false;
    }
  }
  if (listed != model) {
    return false;
  }
  for (const auto& [key, value] : model) {
    if (table.get(key) != std::optional<std::string>(value)) {
      return false;
    }
  }
  return true;
}

/// The script with allocation fault `n` armed (0: counts only). Returns how many allocations it
/// met; `failed` counts the operations that threw.
long run_script(long n, int& failed) {
  const fault::Quiet quiet;
  Table table;
  Model model;
  failed = 0;
  fault::arm(fault::Kind::alloc, n);
  // One operation: `apply` on the table (loud), `also` on the model only if it returned.
  const auto step = [&](auto apply, auto also) {
    bool threw = false;
    try {
      const fault::Loud loud;
      apply();
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    if (threw) {
      ++failed;
    } else {
      const fault::Quiet quiet_model;
      also();
    }
    CHECK(same(table, model));
  };
  for (int round = 0; round < 2; ++round) {
    for (int key = 0; key < 40; ++key) {  // new rows, then replaced ones in round 1
      const std::string value = value_of(key, round);
      step([&] { table.insert_or_assign(key, value); },
           [&] { model.insert_or_assign(key, value); });
    }
    for (int key = 0; key < 40; key += 3) {
      step([&] { (void)table.erase(key); }, [&] { model.erase(key); });
    }
    step([&] { (void)table.get(1); }, [] {});
    step([&] { (void)table.iterate(); }, [] {});
  }
  fault::disarm();
  return fault::count();
}

}  // namespace

TEST_CASE("MapTable: each allocation fails in turn, and the table stays as it was",
          "[fault][map_table]") {
  int failed = 0;
  fault::each_allocation_in_turn(
      [&](long n) {
        const long met = run_script(n, failed);
        if (n == 0) {
          CHECK(failed == 0);
        }
        return met;
      },
      [&](long n, long opportunities) { CHECK(failed == (n <= opportunities ? 1 : 0)); });
}
