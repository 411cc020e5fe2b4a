// The stories. Each is small (3-6 keys) and deterministic on the manual clock; each makes at least
// one report to on_error (a row that fails to start), so that the hook kind has something to
// throw from. Outcomes are not asserted here: a fault may legitimately change them. The rig's
// checks afterwards are the test.

#include "scenarios.hpp"

#include <chrono>
#include <stop_token>

using namespace std::chrono_literals;
using Start = fault::Script::Start;
using Stop = fault::Script::Stop;

namespace fault::scenarios {
namespace {

/// A row that fails to start in the initial pass, reported with ErrorSource::start.
void failing_row(Rig& rig) { rig.row("bad", Start::throw_before_ready); }

void ready_rows(Rig& rig, int n) {
  for (int i = 0; i < n; ++i) {
    rig.row("k" + std::to_string(i));
  }
}

/// The initial pass's starts have finished (or failed and were reported).
void await_ready(Rig& rig, const std::vector<std::string>& names) { rig.settle(names); }

// ---- start: explicit starts of rows added after run began -----------------------------------

void start_setup(Rig& rig) { failing_row(rig); }

void start_story(Rig& rig) {
  rig.start_run();
  rig.row("k0");
  rig.row("k1");
  rig.row("k2", Start::throw_before_ready);
  rig.row("k3", Start::exit_before_ready);
  for (const char* name : {"k0", "k1", "k2", "k3"}) {
    (void)rig.start(name, 10s);
  }
  (void)rig.start("k0", 10s);       // process_exists
  (void)rig.start("missing", 10s);  // not_in_table
}

// ---- stop: graceful, failing, and forced stops of restored processes -------------------------

void stop_setup(Rig& rig) {
  failing_row(rig);
  rig.row("k0");
  rig.row("k1", Start::ready, Stop::throw_error);
  rig.row("k2", Start::ready, Stop::ignore_graceful);
}

void stop_story(Rig& rig) {
  rig.start_run();
  await_ready(rig, {"k0", "k1", "k2"});
  (void)rig.stop("k0", 10s);
  (void)rig.stop("k1", 10s);  // rethrows the worker's exception
  std::stop_source now;
  now.request_stop();
  (void)rig.stop("k2", now.get_token());  // forced at once: canceled
  (void)rig.stop("k0", 10s);              // process_not_found
}

// ---- restart pass: a pass starts new rows, some of which fail --------------------------------

void restart_setup(Rig& rig) { failing_row(rig); }

void restart_story(Rig& rig) {
  rig.start_run();
  rig.row("k0");
  rig.row("k1");
  rig.row("k2", Start::throw_before_ready);
  rig.row("k3", Start::exit_before_ready);
  rig.mark_reports();
  rig.restart_pass();
  rig.settle({"k0", "k1", "k2", "k3"});
}

// ---- restore: run's initial pass over N rows -------------------------------------------------

void restore_setup(Rig& rig) {
  failing_row(rig);
  ready_rows(rig, 4);
  rig.row("k4", Start::exit_before_ready);
}

void restore_story(Rig& rig) {
  rig.start_run();
  rig.settle({"bad", "k0", "k1", "k2", "k3", "k4"});
}

// ---- process exit: processes that return on their own ----------------------------------------

void exit_setup(Rig& rig) {
  failing_row(rig);
  rig.row("k0");
  rig.row("k1", Start::ready, Stop::throw_error);
}

void exit_story(Rig& rig) {
  rig.start_run();
  await_ready(rig, {"k0", "k1"});
  for (const char* name : {"k0", "k1"}) {
    auto script = rig.script(name);
    {
      // Loud: what the request runs is the library's (the wake-up of `ready`, its `schedule`).
      Loud loud;
      script->early.request_stop();  // clean for k0; k1 then throws: reported as exit
    }
    if (script->readied.count() > 0) {  // (a fault may have kept it from starting at all)
      rig.wait(std::string(name) + " never returned", [&] { return script->returned.count() > 0; });
    }
  }
  // Returns before ready, to a caller.
  rig.row("k2", Start::exit_before_ready);
  (void)rig.start("k2", 10s);
  // The exited ones come back with the next pass (fresh runnables that stay up), once their
  // records are gone: a runnable's return comes before its record leaves the map, and a pass
  // that still finds the record starts nothing for that key.
  for (const char* name : {"k0", "k1"}) {
    rig.wait(std::string(name) + " stayed taken after its runnable returned",
             [&] { return !rig.has_process(name); });
  }
  rig.row("k0");
  rig.row("k1");
  rig.mark_reports();
  rig.restart_pass();
  rig.settle({"k0", "k1", "k2"});
}

// ---- shutdown: the callback returns with processes running, two ignoring the graceful stop ---

void shutdown_setup(Rig& rig) {
  failing_row(rig);
  rig.row("k0");
  rig.row("k1", Start::ready, Stop::throw_error);  // reported as shutdown
  rig.row("k2", Start::ready, Stop::ignore_graceful);
  rig.row("k3", Start::ready, Stop::ignore_graceful);
}

void shutdown_story(Rig& rig) {
  rig.start_run();
  await_ready(rig, {"k0", "k1", "k2", "k3"});
  rig.request_finish();
  auto k2 = rig.script("k2");
  auto k3 = rig.script("k3");
  // Both saw the graceful stop (or run gave up on shutdown altogether): now force them. A key
  // whose start a fault prevented is not live and sees no stop: waiting for it would spend the
  // whole patience on every such run.
  auto saw_stop_or_absent = [](const Script& s) {
    return s.ready_returned.count() > 0 || s.live.load() == 0;
  };
  (void)within(
      [&] { return (saw_stop_or_absent(*k2) && saw_stop_or_absent(*k3)) || rig.run_returned(); });
  {
    Loud loud;  // as above: the cancel's callbacks are the library's (force, wake-ups)
    rig.request_cancel();
  }
  rig.await_run("run never returned after it was canceled");
}

// ---- churn: get, visit and keys on one thread while another stops and starts -----------------

void churn_setup(Rig& rig) {
  failing_row(rig);
  ready_rows(rig, 3);
}

void churn_story(Rig& rig) {
  rig.start_run();
  await_ready(rig, {"k0", "k1", "k2"});
  std::thread reader([&rig] {
    Quiet quiet;
    for (int round = 0; round < 8; ++round) {
      for (const char* name : {"k0", "k1", "k2"}) {
        (void)rig.get(name);
        (void)rig.visit(name);
      }
      (void)rig.keys();
    }
  });
  for (int round = 0; round < 4; ++round) {
    (void)rig.stop("k0", 10s);
    (void)rig.start("k0", 10s);
  }
  reader.join();
}

}  // namespace

const Scenario start{"start", start_setup, start_story};
const Scenario stop{"stop", stop_setup, stop_story};
const Scenario restart_pass{"restart pass", restart_setup, restart_story};
const Scenario restore{"restore", restore_setup, restore_story};
const Scenario process_exit{"process exit", exit_setup, exit_story};
const Scenario shutdown{"shutdown", shutdown_setup, shutdown_story};
const Scenario churn{"churn", churn_setup, churn_story};

}  // namespace fault::scenarios
