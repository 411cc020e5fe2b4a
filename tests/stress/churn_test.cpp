// Many workers: random start / stop / get / keys and table churn on 32 keys under a running
// restart loop, and one more worker across the callback's return into run's shutdown.

#include "../catch_shim.hpp"
#include "rig.hpp"
#include "runnable.hpp"
#include "worker.hpp"

// Standard headers after the test support.
#include <cstdint>
#include <thread>
#include <vector>

using stress::check_invariants;
using stress::ErrorSource;
using stress::Key;
using stress::key_count;
using stress::random_runnable;
using stress::Rig;
using stress::Shared;
using stress::Worker;

TEST_CASE("stress: random start/stop/get/keys and table churn under a running restart loop",
          "[stress]") {
  constexpr int workers = 4;
  constexpr int operations_per_worker = 30000;
  constexpr std::uint32_t seed = 0x5EED2024;
  INFO("seeds: table " << seed << ", workers " << seed + 1 << ".." << seed + workers
                       << ", late worker " << seed + workers + 1 << ", clock driver "
                       << seed + 100);

  Rig rig;
  std::mt19937 table_rng(seed);
  for (Key key = 0; key < key_count; ++key) {
    rig.table->insert_or_assign(key, random_runnable(rig.shared, key, table_rng));
  }

  // One more thread keeps calling start / stop / get / keys across the callback's return and
  // into `run`'s shutdown, until `start` reports `not_running`; joined once `run` has returned.
  std::thread late;
  rig.run(
      seed + 100,
      [&] {
        late = std::thread([&rig] { Worker(rig, seed + workers + 1).until_not_running(); });
        std::vector<std::thread> pool;
        pool.reserve(workers);
        for (int w = 0; w < workers; ++w) {
          pool.emplace_back([&rig, w] {
            Worker(rig, seed + 1 + static_cast<std::uint32_t>(w)).operations(operations_per_worker);
          });
        }
        for (auto& thread : pool) {
          thread.join();
        }
      },
      [&] {
        if (late.joinable()) {
          late.join();
        }
      });

  const Shared::Totals s = rig.shared->totals();
  INFO("runnables entered " << s.entries << ", exited " << s.exits << ", not ready " << s.not_ready
                            << ", threw after ready " << s.threw_after_ready
                            << ", erased themselves " << s.erased_self << "; restart passes "
                            << rig.passes);
  INFO(rig.summary());

  check_invariants(rig, s);
  // 5. Nothing absurd from the error hook: no more reports than failures.
  CHECK(rig.reported(ErrorSource::start) <= s.not_ready);
  CHECK(rig.reported(ErrorSource::exit) <= s.threw_after_ready);
  CHECK(rig.reported(ErrorSource::start) + rig.reported(ErrorSource::exit) +
            rig.reported(ErrorSource::shutdown) <=
        s.not_ready + s.threw_after_ready);
  // The stress did stress: work happened, and the restart loop kept passing.
  CHECK(s.entries > 0);
  CHECK(rig.passes > 1);
}
