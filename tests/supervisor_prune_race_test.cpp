// A pruning pass and a `start` of a key the pass did not read: the pass must not prune the
// process that `start` made, however their steps interleave. The start is held at each copy of
// its key in turn (the key's copies are the only user code between its first step and its
// insert into the map), a pass begins meanwhile and is held before it prunes, and only then does
// the start go on, find its row and launch. Likewise `reconcile(key)` with a start in flight
// that reads its row after reconcile read none; and `reconcile(key)` finding, with the pass
// number it read earlier, a process that a later pass has marked. (A `reconcile()` pass cannot
// outlive its run and overlap the next run's: `run` waits for it, see
// tests/fault/reconcile_in_flight_test.cpp.)

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
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

using Sup = supervisor::Supervisor<HeldKey, Probe, HeldKeyHash>;

/// Prunes, on `clock`, with a pass a minute; counts in `late_stops` the stops asked of "late".
supervisor::Options<HeldKey> pruning_options(std::shared_ptr<supervisor::ManualClock> clock,
                                             std::shared_ptr<std::atomic<int>> late_stops) {
  supervisor::Options<HeldKey> options;
  options.clock = std::move(clock);
  options.restart_interval = std::chrono::minutes(1);
  options.prune = true;
  options.on_event = [late_stops = std::move(late_stops)](const supervisor::Event<HeldKey>& e) {
    if (e.kind == supervisor::EventKind::stop_requested && e.key.name == "late") {
      ++*late_stops;
    }
  };
  return options;
}

/// Which of the test's threads calls the table's `get`.
enum class Role { other, starter, reconciler };
thread_local Role t_role = Role::other;

}  // namespace

TEST_CASE("a pruning pass does not prune a process that a start made while the pass ran",
          "[supervisor][prune]") {
  const HeldKey late("late");
  int held_in_start = 0;
  for (int hold_at = 1; hold_at <= 6; ++hold_at) {
    CAPTURE(hold_at);
    test::KeyHold hold;
    auto table = std::make_shared<HookTable>();
    table->rows->insert_or_assign(HeldKey("early"), Probe::with(Startup::ready));
    test::Event pass_at_end;
    test::Event pass_go;
    std::atomic<bool> hold_pass{false};
    table->on_next = [&](std::size_t position) {
      if (position == 1 && hold_pass.exchange(false)) {  // the last `next`: every row read
        pass_at_end.notify();
        (void)pass_go.wait();
      }
    };
    auto clock = std::make_shared<supervisor::ManualClock>();
    auto late_stops = std::make_shared<std::atomic<int>>(0);
    const supervisor::Options<HeldKey> options = pruning_options(clock, late_stops);
    Sup sup(table, options);
    std::error_code started = supervisor::errc::not_running;
    std::vector<std::string> after;
    int stops_in_pass = -1;
    bool held_here = false;
    sup.run([&] {
      REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over
      test::KeyHold::arm(hold_at);
      test::Event start_over;
      test::Background starter([&] {
        test::t_may_hold = true;
        (void)sup.start(late, started);
        start_over.notify();
        hold.held.notify();  // no copy held: let the test go on
      });
      REQUIRE(hold.held.wait());
      held_here = start_over.count() == 0;
      const auto arms = clock->arms();
      if (held_here) {
        // The start is held before its insert. A pass begins and reads every row (not `late`),
        // then waits before it prunes; the row appears, and the start goes on and launches.
        hold_pass = true;
        clock->advance(options.restart_interval);
        REQUIRE(pass_at_end.wait());
        table->rows->insert_or_assign(late, Probe::with(Startup::ready));
        hold.release.notify();
        REQUIRE(starter.wait());
        pass_go.notify();
      } else {
        hold.release.notify();
        REQUIRE(starter.wait());
        clock->advance(options.restart_interval);
      }
      REQUIRE(clock->wait_for_arms(arms + 1));  // that pass is over, prune included
      for (const HeldKey& key : sup.keys()) {
        after.push_back(key.name);
      }
      stops_in_pass = late_stops->load();
    });
    if (!held_here) {
      continue;  // past the start's copies of its key: nothing held
    }
    ++held_in_start;
    CHECK(started == std::error_code());
    std::sort(after.begin(), after.end());
    CHECK(after == std::vector<std::string>{"early", "late"});
    CHECK(stops_in_pass == 0);  // the pass did not ask the new process to stop
  }
  CHECK(held_in_start >= 2);  // the start was held at more than one of its steps
}

TEST_CASE("reconcile(key) does not prune a start in flight that reads its row after reconcile did",
          "[supervisor][prune]") {
  // The start has its record in the map and is about to read its row; reconcile(key) finds the
  // record, reads no row, and is held there; the row appears, the start reads it and launches;
  // only then does reconcile go on. The row is in the table: the process must not be stopped.
  auto table = std::make_shared<HookTable>();
  table->rows->insert_or_assign(HeldKey("early"), Probe::with(Startup::ready));
  test::Event start_in_get;
  test::Event start_go;
  test::Event reconcile_read;
  test::Event reconcile_go;
  table->before_get = [&] {
    if (t_role == Role::starter) {
      start_in_get.notify();
      (void)start_go.wait();
    }
  };
  table->after_get = [&](bool found) {
    if (t_role == Role::reconciler && !found) {
      reconcile_read.notify();
      (void)reconcile_go.wait();
    }
  };
  auto clock = std::make_shared<supervisor::ManualClock>();
  auto late_stops = std::make_shared<std::atomic<int>>(0);
  const supervisor::Options<HeldKey> options = pruning_options(clock, late_stops);
  Sup sup(table, options);
  const HeldKey late("late");
  std::error_code started = supervisor::errc::not_running;
  std::error_code reconciled = supervisor::errc::not_running;
  std::vector<std::string> after;
  int stops = -1;
  sup.run([&] {
    REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over
    test::Background starter([&] {
      t_role = Role::starter;
      (void)sup.start(late, started);
    });
    REQUIRE(start_in_get.wait());
    test::Background reconciler([&] {
      t_role = Role::reconciler;
      reconciled = sup.reconcile(late);
    });
    REQUIRE(reconcile_read.wait());
    table->rows->insert_or_assign(late, Probe::with(Startup::ready));
    start_go.notify();
    REQUIRE(starter.wait());  // launched and ready
    reconcile_go.notify();
    REQUIRE(reconciler.wait());
    stops = late_stops->load();
    for (const HeldKey& key : sup.keys()) {
      after.push_back(key.name);
    }
  });
  CHECK(started == std::error_code());
  CHECK(reconciled == std::error_code());
  CHECK(stops == 0);  // reconcile did not ask the new process to stop
  std::sort(after.begin(), after.end());
  CHECK(after == std::vector<std::string>{"early", "late"});
}

TEST_CASE("reconcile(key) that finds a process a later pass marked does not undo that mark",
          "[supervisor][prune]") {
  // reconcile(late) reads the row while `late` has no process; a pass starts it; reconcile reads
  // that pass's number and is held as it probes the map (in its comparison of keys). A later
  // pass marks `late` and is held before it prunes; reconcile goes on and marks `late` with its
  // older number. The later pass must still find its own mark, and not prune `late`.
  auto table = std::make_shared<HookTable>();
  table->rows->insert_or_assign(HeldKey("early"), Probe::with(Startup::ready));
  const HeldKey late("late");
  Probe late_probe = Probe::with(Startup::ready);
  test::Event reconcile_read;
  test::Event reconcile_go;
  test::Event compared;
  test::Event compare_go;
  test::Event pass_at_end;
  test::Event pass_go;
  std::atomic<bool> hold_pass{false};
  test::g_compared = &compared;
  test::g_compare_go = &compare_go;
  struct LetGo {  // whatever fails, nothing stays held past the run
    test::Event& a;
    test::Event& b;
    test::Event& c;
    ~LetGo() {
      a.notify();
      b.notify();
      c.notify();
    }
  } let_go{reconcile_go, compare_go, pass_go};
  table->after_get = [&](bool found) {
    if (t_role == Role::reconciler && found) {
      reconcile_read.notify();
      (void)reconcile_go.wait();
      test::t_hold_compare = true;  // its next comparison of keys is its probe of the map
    }
  };
  table->on_close = [&] {
    if (hold_pass.exchange(false)) {
      pass_at_end.notify();
      (void)pass_go.wait();
    }
  };
  auto clock = std::make_shared<supervisor::ManualClock>();
  auto late_stops = std::make_shared<std::atomic<int>>(0);
  const supervisor::Options<HeldKey> options = pruning_options(clock, late_stops);
  Sup sup(table, options);
  std::error_code reconciled = supervisor::errc::not_running;
  std::vector<std::string> after;
  int stops = -1;
  sup.run([&] {
    REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over
    table->rows->insert_or_assign(late, late_probe);
    test::Background reconciler([&] {
      t_role = Role::reconciler;
      reconciled = sup.reconcile(late);
    });
    REQUIRE(reconcile_read.wait());
    auto arms = clock->arms();
    clock->advance(options.restart_interval);  // a pass starts `late`
    REQUIRE(late_probe.state->readied.wait());
    REQUIRE(clock->wait_for_arms(arms + 1));
    reconcile_go.notify();
    REQUIRE(compared.wait());  // reconcile has read the pass number, and probes
    arms = clock->arms();
    hold_pass = true;
    clock->advance(options.restart_interval);  // the next pass marks `late`
    REQUIRE(pass_at_end.wait());
    compare_go.notify();
    REQUIRE(reconciler.wait());
    pass_go.notify();
    REQUIRE(clock->wait_for_arms(arms + 1));  // that pass is over, prune included
    stops = late_stops->load();
    for (const HeldKey& key : sup.keys()) {
      after.push_back(key.name);
    }
  });
  test::g_compared = nullptr;
  test::g_compare_go = nullptr;
  CHECK(reconciled == std::error_code());
  CHECK(stops == 0);  // the later pass did not prune `late`
  std::sort(after.begin(), after.end());
  CHECK(after == std::vector<std::string>{"early", "late"});
}
