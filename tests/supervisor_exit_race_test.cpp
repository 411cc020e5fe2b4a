// A process that exits on its own records its exit in its key's history (a give-up, a backoff,
// its failures), then stays in the map while its last events and error reports run, and only
// then frees its key. A pass that begins in that window finds the process, not the history; if
// the process leaves the map before the pass ends, the pass must still count the history as
// seen, or it forgets the give-up of a key whose row it read (and the key starts again).
// Likewise a process that a pass finds running and that `stop` then ends before the pass does:
// its key's history (its restarts, its failures) must outlive that pass, even when the process
// leaves the map while the pass, at its end, looks for it.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "catch_shim.hpp"
#include "held_key.hpp"
#include "hook_table.hpp"
#include "support.hpp"

using test::HeldKey;
using test::HeldKeyHash;
using test::HookTable;
using test::Probe;
using test::Startup;

namespace {

/// On `clock`, a pass a minute.
supervisor::Options<HeldKey> on_clock(const std::shared_ptr<supervisor::ManualClock>& clock) {
  supervisor::Options<HeldKey> options;
  options.clock = clock;
  options.restart_interval = std::chrono::minutes(1);
  return options;
}

/// A runnable whose first start fails; it runs from its second.
Probe fails_first() {
  Probe probe = Probe::with(Startup::ready);
  auto entries = std::make_shared<std::atomic<int>>(0);
  probe.state->on_enter = [entries] {
    if (++*entries == 1) {
      throw std::runtime_error("first start fails");
    }
  };
  return probe;
}

/// The pass that finds `hold` set waits in its cursor's `close()` (every row read and probed,
/// nothing pruned or forgotten yet), after notifying `at`, until `go`.
void hold_in_close(HookTable& table, std::atomic<bool>& hold, test::Event& at, test::Event& go) {
  table.on_close = [&hold, &at, &go] {
    if (hold.exchange(false)) {
      at.notify();
      (void)go.wait();
    }
  };
}

/// Each key of a snapshot as `name:state:restarts`, sorted.
template <class Sup>
std::vector<std::string> states_of(const Sup& sup) {
  std::vector<std::string> known;
  for (const auto& status : sup.snapshot().keys) {
    known.push_back(status.key.name + ":" + std::string(supervisor::to_string(status.state)) + ":" +
                    std::to_string(status.restarts));
  }
  std::sort(known.begin(), known.end());
  return known;
}

/// Lets go, whatever fails, of what a test holds, so that nothing stays held past its run.
struct LetGo {
  std::vector<test::Event*> events;
  LetGo(std::initializer_list<test::Event*> list) : events(list) {}
  LetGo(const LetGo&) = delete;
  LetGo& operator=(const LetGo&) = delete;
  ~LetGo() {
    for (test::Event* event : events) {
      event->notify();
    }
    test::t_hold_compare = false;
  }
};

/// Every key in one bucket, so that a lookup compares keys one by one, newest first.
struct OneBucket {
  std::size_t operator()(const HeldKey& /*key*/) const noexcept { return 0; }
};

}  // namespace

TEST_CASE("a pass that finds a given-up process before it leaves the map keeps its history",
          "[supervisor][history]") {
  for (const bool prune : {false, true}) {
    CAPTURE(prune);
    const HeldKey late("late");
    auto table = std::make_shared<HookTable>();
    Probe failing = Probe::with(Startup::ready);
    failing.state->on_enter = [] {
      throw std::system_error(supervisor::errc::do_not_restart, "not again");
    };
    table->rows->insert_or_assign(late, failing);

    test::Event exit_held;      // its history holds the give-up; the process is still in the map
    test::Event exit_go;        // lets the process go on and leave the map
    test::Event gone;           // it has left the map (its start's error is reported after)
    test::Event pass_at_close;  // the pass has read and probed every row, and not yet forgotten
    test::Event pass_go;
    std::atomic<bool> hold_pass{false};
    const LetGo let_go{&exit_go, &pass_go};
    hold_in_close(*table, hold_pass, pass_at_close, pass_go);
    auto clock = std::make_shared<supervisor::ManualClock>();
    supervisor::Options<HeldKey> options = on_clock(clock);
    options.prune = prune;
    options.on_event = [&](const supervisor::Event<HeldKey>& e) {
      if (e.kind == supervisor::EventKind::given_up && e.key.name == "late") {
        exit_held.notify();
        (void)exit_go.wait();
      }
    };
    options.on_error = [&](const supervisor::ErrorReport<HeldKey>& report) {
      if (report.source == supervisor::ErrorSource::start) {
        gone.notify();
      }
    };
    supervisor::Supervisor<HeldKey, Probe, HeldKeyHash> sup(table, options);
    std::vector<std::string> known;  // after the pass
    sup.run([&] {
      REQUIRE(exit_held.wait());
      REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over
      const auto arms = clock->arms();
      hold_pass = true;
      clock->advance(options.restart_interval);  // a loop pass finds `late` still in the map
      REQUIRE(pass_at_close.wait());
      exit_go.notify();
      REQUIRE(gone.wait());
      pass_go.notify();
      REQUIRE(clock->wait_for_arms(arms + 1));  // that pass is over, its forgetting included
      known = states_of(sup);
    });
    CHECK(known == std::vector<std::string>{"late:given_up:0"});
    CHECK(failing.state->entered.count() == 1);  // started once, never again
  }
}

TEST_CASE("a pass that finds a process stopped before the pass ends keeps its key's history",
          "[supervisor][history]") {
  const HeldKey late("late");
  auto table = std::make_shared<HookTable>();
  const Probe flaky = fails_first();
  table->rows->insert_or_assign(late, flaky);
  test::Event pass_at_close;  // the pass has probed `late`, running, and not yet forgotten
  test::Event pass_go;
  std::atomic<bool> hold_pass{false};
  const LetGo let_go{&pass_go};
  hold_in_close(*table, hold_pass, pass_at_close, pass_go);
  auto clock = std::make_shared<supervisor::ManualClock>();
  supervisor::Options<HeldKey> options = on_clock(clock);
  options.on_error = [](const supervisor::ErrorReport<HeldKey>& /*report*/) {};  // the first start
  supervisor::Supervisor<HeldKey, Probe, HeldKeyHash> sup(table, options);
  std::vector<std::string> known;  // after the pass
  sup.run([&] {
    REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over: `late` failed once
    // ... and its process has left the map (else the next pass finds it leaving, and skips it)
    REQUIRE(test::eventually([&] { return sup.keys().empty(); }));
    auto arms = clock->arms();
    clock->advance(options.restart_interval);  // the next pass starts it again
    REQUIRE(flaky.state->readied.wait());
    REQUIRE(clock->wait_for_arms(arms + 1));
    arms = clock->arms();
    hold_pass = true;
    clock->advance(options.restart_interval);  // this pass finds `late` running
    REQUIRE(pass_at_close.wait());
    sup.stop(late);  // once it returns, the key has left the map
    pass_go.notify();
    REQUIRE(clock->wait_for_arms(arms + 1));  // that pass is over, its forgetting included
    known = states_of(sup);
  });
  CHECK(known == std::vector<std::string>{"late:waiting:1"});
}

TEST_CASE("a pass that looks for a process as a stop ends it keeps its key's history",
          "[supervisor][history]") {
  // `late` fails once and runs again: it has a history. `other` starts after it, so a lookup of
  // `late` compares `other`'s key first. A pass reads both rows, then, at its end, finds the
  // history's mark older than itself and looks for a process of `late`: that lookup is held at
  // `other`'s key while `stop(late)` ends the process, which marks the history as it exits and
  // leaves the map. The lookup then finds no process; the pass must keep the history.
  const HeldKey late("late");
  const HeldKey other("other");
  auto table = std::make_shared<HookTable>();
  const Probe flaky = fails_first();
  table->rows->insert_or_assign(late, flaky);
  const Probe other_probe = Probe::with(Startup::ready);

  test::Event compared;  // the pass's lookup of `late` is held at `other`'s key
  test::Event compare_go;
  test::g_compared = &compared;
  test::g_compare_go = &compare_go;
  std::atomic<bool> hold_lookup{false};
  const LetGo let_go{&compare_go};
  table->on_close = [&] {
    if (hold_lookup.exchange(false)) {
      test::t_hold_compare = true;  // this thread's next comparison: the lookup at the pass's end
    }
  };
  auto clock = std::make_shared<supervisor::ManualClock>();
  supervisor::Options<HeldKey> options = on_clock(clock);
  options.on_error = [](const supervisor::ErrorReport<HeldKey>& /*report*/) {};  // the first start
  supervisor::Supervisor<HeldKey, Probe, OneBucket> sup(table, options);
  std::vector<std::string> known;  // after the pass
  sup.run([&] {
    REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over: `late` failed once
    // ... and its process has left the map (else the next pass finds it leaving, and skips it)
    REQUIRE(test::eventually([&] { return sup.keys().empty(); }));
    auto arms = clock->arms();
    clock->advance(options.restart_interval);  // `late` starts again
    REQUIRE(flaky.state->readied.wait());
    REQUIRE(clock->wait_for_arms(arms + 1));
    table->rows->insert_or_assign(other, other_probe);
    arms = clock->arms();
    clock->advance(options.restart_interval);  // `other` starts, after `late`
    REQUIRE(other_probe.state->readied.wait());
    // `readied` comes just before the probe's `ready()`: wait until the supervisor has heard it
    // (a probe held between the two would otherwise still read as starting below).
    REQUIRE(test::eventually([&] {
      const std::vector<std::string> now = states_of(sup);
      return std::find(now.begin(), now.end(), "other:running:0") != now.end();
    }));
    REQUIRE(clock->wait_for_arms(arms + 1));
    arms = clock->arms();
    hold_lookup = true;
    clock->advance(options.restart_interval);
    REQUIRE(compared.wait());
    sup.stop(late);  // once it returns, the key has left the map
    compare_go.notify();
    REQUIRE(clock->wait_for_arms(arms + 1));  // that pass is over, its forgetting included
    known = states_of(sup);
  });
  test::g_compared = nullptr;
  test::g_compare_go = nullptr;
  CHECK(known == std::vector<std::string>{"late:waiting:1", "other:running:0"});
}
