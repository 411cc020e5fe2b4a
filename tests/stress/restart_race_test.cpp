// One key that fails as soon as it is ready, restarted by every pass, while stop races the
// restarts.

#include "../catch_shim.hpp"
#include "rig.hpp"
#include "runnable.hpp"
#include "worker.hpp"

// Standard headers after the test support.
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

using stress::check_invariants;
using stress::ErrorSource;
using stress::Finish;
using stress::Key;
using stress::Rig;
using stress::Shared;
using stress::Start;
using stress::StressRunnable;
using stress::Wait;
using stress::Worker;

TEST_CASE("stress: stop races the restarts of a process that keeps failing", "[stress]") {
  // One key whose runnable fails as soon as it is ready: every restart pass starts it again,
  // while one thread keeps stopping it and another keeps starting and getting it. Each stop
  // lands on a process that is starting, running, exiting on its own, or gone.
  constexpr long restarts = 3000;
  constexpr std::uint32_t seed = 0x5EED0001;
  INFO("seeds: stopper " << seed << ", starter " << seed + 1 << ", clock driver " << seed + 100);

  Rig rig;
  const Key key = 0;
  rig.table->insert_or_assign(
      key, StressRunnable{rig.shared, key, Start::ready, Wait::early, Finish::throw_error});

  long stops_won = 0;
  bool reached = false;
  rig.run(seed + 100, [&] {
    const Shared& s = *rig.shared;
    const auto limit = std::chrono::steady_clock::now() + test::patience;
    auto more = [&] { return s.entries < restarts && std::chrono::steady_clock::now() < limit; };
    std::thread stopper([&] {
      Worker worker(rig, seed);
      while (more()) {
        worker.stop(key);
        std::this_thread::yield();
      }
      stops_won = worker.count("stop: success") + worker.count("stop: runnable's exception");
      worker.flush();
    });
    std::thread starter([&] {
      Worker worker(rig, seed + 1);
      while (more()) {
        worker.start(key);
        worker.get(key);
        std::this_thread::yield();
      }
      worker.flush();
    });
    stopper.join();
    starter.join();
    reached = s.entries >= restarts;
  });

  const Shared::Totals s = rig.shared->totals();
  INFO("runnables entered " << s.entries << ", exited " << s.exits << "; restart passes "
                            << rig.passes << "; stops that won " << stops_won);
  INFO(rig.summary());

  check_invariants(rig, s);
  CHECK(reached);
  CHECK(stops_won > 0);                          // Stop did race the restarts...
  CHECK(rig.reported(ErrorSource::exit) > 0);    // ...and so did the process's own exits.
  CHECK(rig.reported(ErrorSource::start) == 0);  // It always becomes ready.
  CHECK(rig.reported(ErrorSource::exit) + rig.reported(ErrorSource::shutdown) <=
        s.threw_after_ready);
}
