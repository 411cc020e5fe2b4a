#pragma once

// The allocation sweep several fault tests share (SQLite's method): a dry run counts the
// allocations a scenario makes, then each of them fails in turn, and three runs past the count
// fail none.

#include "../catch_shim.hpp"

namespace fault {

/// Runs `scenario(0)`, which only counts and returns the allocations it met, then `scenario(n)`
/// for n = 1 ... count + 3, the nth allocation failing in each; `check(n, count)` follows each.
template <class Scenario, class Check>
void each_allocation_in_turn(Scenario&& scenario, Check&& check) {
  const long opportunities = scenario(0L);
#if defined(FAULT_NO_NEW_REPLACEMENT)
  WARN("allocation faults are compiled out of this build: none injected");
#else
  REQUIRE(opportunities > 0);
#endif
  for (long n = 1; n <= opportunities + 3; ++n) {
    INFO("allocation " << n << " of " << opportunities);
    (void)scenario(n);
    check(n, opportunities);
  }
}

template <class Scenario>
void each_allocation_in_turn(Scenario&& scenario) {
  each_allocation_in_turn(scenario, [](long /*n*/, long /*opportunities*/) {});
}

}  // namespace fault
