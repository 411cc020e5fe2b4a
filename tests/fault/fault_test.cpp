// One Catch2 case per scenario and injection kind: the dry run, then the fault at every N.

#include <cstdio>
#include <string>

#include "../catch_shim.hpp"
#include "driver.hpp"
#include "scenarios.hpp"

namespace {

void check_sweep(const fault::Scenario& scenario, fault::Kind kind, fault::Flavor flavor) {
  const fault::Sweep result = fault::sweep(scenario, kind, flavor);
  const char* prefix = flavor == fault::Flavor::coroutines ? "coroutine "
                       : flavor == fault::Flavor::own_pool ? "own pool "
                                                           : "";
  // A summary on stderr, for the log of a CI run.
  std::fprintf(stderr, "[fault] %s%s / %s: K=%ld, %ld runs, %zu finding(s)\n", prefix,
               scenario.name, std::string(fault::to_string(kind)).c_str(), result.opportunities,
               result.runs, result.findings.size());
  for (const auto& finding : result.findings) {
    std::fprintf(stderr, "[fault]   N=%ld: %s\n", finding.n, finding.problem.c_str());
  }
  CHECK(result.runs > 0);
  for (const auto& finding : result.findings) {
    FAIL_CHECK(prefix << scenario.name << " / " << fault::to_string(kind) << " at N=" << finding.n
                      << ": " << finding.problem);
  }
}

}  // namespace

#define FAULT_CASE(scenario, kind)                                                      \
  TEST_CASE("fault: " #scenario " / " #kind, "[fault][" #scenario "][" #kind "]") {     \
    check_sweep(fault::scenarios::scenario, fault::Kind::kind, fault::Flavor::threads); \
  }

// The same story with coroutine runnables (`CoWorker`) on a one-thread pool.
#define FAULT_CO_CASE(scenario, kind)                                                      \
  TEST_CASE("fault: coroutine " #scenario " / " #kind,                                     \
            "[fault][coroutine][" #scenario "][" #kind "]") {                              \
    check_sweep(fault::scenarios::scenario, fault::Kind::kind, fault::Flavor::coroutines); \
  }

// Coroutine runnables on the supervisor's own pool (no `Options::executor`), two threads or
// more: the default a user gets, with wake-ups across threads and the pool started and joined by
// every `run`.
#define FAULT_OWN_CASE(scenario, kind)                                                   \
  TEST_CASE("fault: own pool " #scenario " / " #kind,                                    \
            "[fault][own_pool][" #scenario "][" #kind "]") {                             \
    check_sweep(fault::scenarios::scenario, fault::Kind::kind, fault::Flavor::own_pool); \
  }

// Every scenario x kind x flavor.
#define FAULT_SCENARIO(scenario)          \
  FAULT_CASE(scenario, alloc)             \
  FAULT_CASE(scenario, thread)            \
  FAULT_CASE(scenario, key)               \
  FAULT_CASE(scenario, runnable_copy)     \
  FAULT_CASE(scenario, runnable_move)     \
  FAULT_CASE(scenario, table)             \
  FAULT_CASE(scenario, hook)              \
  FAULT_CO_CASE(scenario, alloc)          \
  FAULT_CO_CASE(scenario, thread)         \
  FAULT_CO_CASE(scenario, key)            \
  FAULT_CO_CASE(scenario, runnable_copy)  \
  FAULT_CO_CASE(scenario, runnable_move)  \
  FAULT_CO_CASE(scenario, table)          \
  FAULT_CO_CASE(scenario, hook)           \
  FAULT_OWN_CASE(scenario, alloc)         \
  FAULT_OWN_CASE(scenario, thread)        \
  FAULT_OWN_CASE(scenario, key)           \
  FAULT_OWN_CASE(scenario, runnable_copy) \
  FAULT_OWN_CASE(scenario, runnable_move) \
  FAULT_OWN_CASE(scenario, table)         \
  FAULT_OWN_CASE(scenario, hook)

FAULT_SCENARIO(start)
FAULT_SCENARIO(stop)
FAULT_SCENARIO(restart_pass)
FAULT_SCENARIO(restore)
FAULT_SCENARIO(process_exit)
FAULT_SCENARIO(shutdown)
FAULT_SCENARIO(churn)
