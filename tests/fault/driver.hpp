#pragma once

// Runs a scenario once per injection opportunity: a dry run counts them (K), then N = 1..K+slack
// each arm the fault at N. Each run happens in a forked child unless the binary is under
// ThreadSanitizer (which does not support fork in a threaded program well), so that one
// std::terminate or one hang does not hide the rest: the parent reads the child's verdict through
// a pipe and kills it if it outlives its time.

#include <string>
#include <vector>

#include "inject.hpp"
#include "rig.hpp"

namespace fault {

struct Scenario {
  const char* name;
  /// Fills the table, before the fault is armed.
  void (*setup)(Rig&);
  /// The story, armed; it starts `run` itself.
  void (*story)(Rig&);
};

/// One run, in this process: set-up, story armed at `n` (0: count only), then every check.
Verdict run_once(const Scenario& scenario, Kind kind, long n, Flavor flavor);

struct Finding {
  long n;
  std::string problem;
};

struct Sweep {
  long opportunities = 0;
  long runs = 0;
  std::vector<Finding> findings;
};

/// The dry run and every N. FAULT_ONLY_N=<n> runs that N alone (after the dry run).
Sweep sweep(const Scenario& scenario, Kind kind, Flavor flavor);

/// Ends this process with `verdict` delivered (from a child, to the parent; else on stderr): for
/// a hang that leaves a thread no one can join.
[[noreturn]] void abandon(const Verdict& verdict);

}  // namespace fault
