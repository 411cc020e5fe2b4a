// A pruning pass and a `start` of a key the pass did not read: the pass must not prune the
// process that `start` made, however their steps interleave. The start is held at each copy of
// its key in turn (the key's copies are the only user code between its first step and its
// insert into the map), a pass begins meanwhile and is held before it prunes, and only then does
// the start go on, find its row and launch. Likewise `reconcile(key)` with a start in flight
// that reads its row after reconcile read none; and a `reconcile()` pass that outlives its run,
// overlapping the next run's pass.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "catch_shim.hpp"
#include "held_key.hpp"
#include "support.hpp"

using test::HeldKey;
using test::HeldKeyHash;
using test::Probe;
using test::Startup;

namespace {

/// A `MapTable` whose cursor calls a hook before each `next()` (holds a pass before it prunes)
/// and one in `close()` (after the pass has marked every row it read, before it prunes), and
/// whose `get` calls hooks before and after it reads the row.
struct HookTable {
  using Rows = supervisor::MapTable<HeldKey, Probe, HeldKeyHash>;
  std::shared_ptr<Rows> rows = std::make_shared<Rows>();
  std::function<void(std::size_t position)> on_next;
  std::function<void()> on_close;
  std::function<void()> before_get;
  std::function<void(bool found)> after_get;

  struct Cursor {
    Rows::Cursor inner;
    HookTable* table;
    std::size_t position = 0;
    bool next() {
      if (table->on_next) {
        table->on_next(position);
      }
      ++position;
      return inner.next();
    }
    std::pair<HeldKey, Probe> get() { return inner.get(); }
    void close() {
      if (table->on_close) {
        table->on_close();
      }
      inner.close();
    }
  };

  std::optional<Probe> get(const HeldKey& key) {
    if (before_get) {
      before_get();
    }
    std::optional<Probe> row = rows->get(key);
    if (after_get) {
      after_get(row.has_value());
    }
    return row;
  }
  Cursor iterate() { return Cursor{rows->iterate(), this}; }
};

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

/// A `reconcile()` pass held before it reads a row and left running past its `run`; and, in the
/// next run, a loop pass held in `close()`, after it marked what it read and before it prunes.
/// Whatever fails, nothing stays held (a held pass would hold up the join of its thread).
struct StragglerRig {
  std::shared_ptr<HookTable> table = std::make_shared<HookTable>();
  test::Event straggler_held;
  test::Event straggler_go;
  test::Event loop_pass_at_end;
  test::Event loop_pass_go;
  std::atomic<bool> hold_loop_pass{false};
  std::error_code reconciled = supervisor::errc::not_running;
  std::optional<test::Background> straggler;

  StragglerRig() {
    table->on_next = [this](std::size_t position) {
      if (t_role == Role::reconciler && position == 0) {  // before it reads a row
        straggler_held.notify();
        (void)straggler_go.wait();
      }
    };
    table->on_close = [this] {
      if (t_role == Role::other && hold_loop_pass.exchange(false)) {
        loop_pass_at_end.notify();  // every row read and marked, not yet pruned
        (void)loop_pass_go.wait();
      }
    };
  }
  StragglerRig(const StragglerRig&) = delete;
  StragglerRig& operator=(const StragglerRig&) = delete;
  ~StragglerRig() {
    straggler_go.notify();  // before `straggler` is joined
    loop_pass_go.notify();
  }

  /// From the first run's callback: the pass begins on a thread of its own and is held.
  void leave_straggler(Sup& sup) {
    straggler.emplace([this, &sup] {
      t_role = Role::reconciler;
      reconciled = sup.reconcile();
    });
    REQUIRE(straggler_held.wait());
  }

  /// From the second run's callback: a loop pass marks, the old pass reads and marks and ends,
  /// then the loop pass prunes and is over.
  void interleave(supervisor::ManualClock& clock, std::chrono::steady_clock::duration interval) {
    struct Go {
      test::Event& event;
      ~Go() { event.notify(); }
    } loop_pass_goes{loop_pass_go};
    const auto arms = clock.arms();
    hold_loop_pass = true;
    clock.advance(interval);
    REQUIRE(loop_pass_at_end.wait());
    straggler_go.notify();
    REQUIRE(straggler->wait());
    loop_pass_go.notify();
    REQUIRE(clock.wait_for_arms(arms + 1));  // that pass is over, prune included
  }
};

TEST_CASE("a reconcile pass that outlives its run does not undo the next run's marks",
          "[supervisor][prune]") {
  // The next run starts `late` again; its loop pass marks it seen, then the old pass reads
  // `late` and marks it too. The later pass must still find its own mark, and not prune a key
  // whose row it read.
  StragglerRig rig;
  const HeldKey late("late");
  rig.table->rows->insert_or_assign(late, Probe::with(Startup::ready));
  auto clock = std::make_shared<supervisor::ManualClock>();
  auto late_stops = std::make_shared<std::atomic<int>>(0);
  const supervisor::Options<HeldKey> options = pruning_options(clock, late_stops);
  Sup sup(rig.table, options);
  sup.run([&] {
    REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over
    rig.leave_straggler(sup);
  });
  const int stops_before = late_stops->load();
  std::vector<std::string> after;
  int stops_in_second_run = -1;
  sup.run([&] {
    REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over: `late` runs again
    rig.interleave(*clock, options.restart_interval);
    stops_in_second_run = late_stops->load() - stops_before;
    for (const HeldKey& key : sup.keys()) {
      after.push_back(key.name);
    }
  });
  CHECK(rig.reconciled == std::error_code());
  CHECK(stops_in_second_run == 0);  // the second run's pass did not prune `late`
  CHECK(after == std::vector<std::string>{"late"});
}

TEST_CASE("a reconcile pass that outlives its run does not forget a key the next run gave up",
          "[supervisor][prune]") {
  // As above, with a key given up (its runnable fails with `do_not_restart`): it has a history
  // and no process. The later pass marks the history seen, then the old pass reads the key and
  // marks it too: that must not lower the later pass's mark, or the later pass, at its end,
  // takes the history for one its read missed and forgets it (and the key starts again).
  StragglerRig rig;
  const HeldKey late("late");
  Probe failing = Probe::with(Startup::ready);
  failing.state->on_enter = [] {
    throw std::system_error(supervisor::errc::do_not_restart, "not again");
  };
  rig.table->rows->insert_or_assign(late, failing);
  auto clock = std::make_shared<supervisor::ManualClock>();
  supervisor::Options<HeldKey> options =
      pruning_options(clock, std::make_shared<std::atomic<int>>(0));
  test::Event given_up;
  options.on_error = [](const supervisor::ErrorReport<HeldKey>& /*report*/) {};  // expected
  options.on_event = [&given_up](const supervisor::Event<HeldKey>& e) {
    if (e.kind == supervisor::EventKind::given_up && e.key.name == "late") {
      given_up.notify();
    }
  };
  Sup sup(rig.table, options);
  sup.run([&] {
    REQUIRE(given_up.wait());
    rig.leave_straggler(sup);
  });
  std::vector<std::string> known;  // the second run's snapshot: each key and its state
  sup.run([&] {
    REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over
    rig.interleave(*clock, options.restart_interval);
    for (const auto& status : sup.snapshot().keys) {
      known.push_back(status.key.name + ":" + std::string(supervisor::to_string(status.state)));
    }
  });
  CHECK(rig.reconciled == std::error_code());
  CHECK(known == std::vector<std::string>{"late:given_up"});
}
