// quickstart: a few workers kept alive by key, from an in-memory table.
//
//   quickstart          runs until SIGINT (Ctrl-C) or SIGTERM; workers still running 10 s later are
//                       forced
//   quickstart --demo   the same scenario, stopped by itself after about 1.5 s; prints
//                       "quickstart: done" last if everything happened as it should (CI checks it)
//
// What to look for in the output:
// - every worker prints "started" once the initial pass has started it, then ticks;
// - "gamma" is added to the table at run time and started; "beta" is removed at run time;
// - "flaky" throws on its first run: the error hook reports it, and the next restart pass starts
//   it again (a second "started" line, run 2);
// - on shutdown every worker stops gracefully ("stopped after N ticks").
//
// Linux/POSIX only because of the signal handling (sigwait); the supervisor itself is portable.

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "example_support.hpp"
#include "supervisor/supervisor.hpp"

namespace {

using example::say;
using example::SignalStop;
using example::wait_for;
using example::wait_for_stop;

using namespace std::chrono_literals;
using Milliseconds = std::chrono::milliseconds;

// ---- The worker --------------------------------------------------------------------------------

// A worker that does periodic work on a thread of its own. The supervisor holds it through a
// std::shared_ptr, so a restart runs the same object again (the run counter shows it) and the
// program can keep a handle to it.
class Worker {
 public:
  // `fail_at_tick` > 0 makes the first run throw at that tick, like a dropped connection.
  Worker(std::string name, Milliseconds period, int fail_at_tick = 0)
      : name_(std::move(name)), period_(period), fail_at_tick_(fail_at_tick) {}

  // The Runnable contract: initialise, call `ready` once up (it blocks until we are asked to
  // stop), then shut down gracefully. `force` means "stop now": skip whatever can be skipped.
  void run(const std::stop_token& force, supervisor::Ready& ready) {
    const int run = ++runs_;
    say(name_, ": started (run ", run, ")");

    // The work runs on its own thread: `ready` must block on this one until the stop.
    std::exception_ptr failure;
    std::stop_source died;
    int ticks = 0;
    std::jthread ticker([&](const std::stop_token& stop) {
      try {
        ticks = tick_until(stop, run);
      } catch (...) {
        failure = std::current_exception();
        died.request_stop();  // Makes `ready` return early: a dead worker must not look alive.
      }
    });

    ready(died.get_token());

    ticker.request_stop();
    ticker.join();
    if (failure) {
      // Rethrown from `run`: the supervisor reports it through Options::on_error, forgets the
      // process, and the next restart pass starts it again while its row is in the table.
      std::rethrow_exception(failure);
    }
    // A graceful stop may still use resources (flush, persist); a forced one should not wait.
    say(name_, ": stopped after ", ticks, " ticks", force.stop_requested() ? " (forced)" : "");
  }

  [[nodiscard]] int runs() const { return runs_; }

 private:
  int tick_until(const std::stop_token& stop, int run) {
    int tick = 0;
    while (wait_for(period_, stop)) {
      ++tick;
      if (run == 1 && tick == fail_at_tick_) {
        throw std::runtime_error("lost its connection at tick " + std::to_string(tick));
      }
      say(name_, ": tick ", tick);
    }
    return tick;
  }

  std::string name_;
  Milliseconds period_;
  int fail_at_tick_;
  std::atomic<int> runs_{0};
};

using WorkerPtr = std::shared_ptr<Worker>;
using Table = supervisor::MapTable<std::string, WorkerPtr>;
using Supervisor = supervisor::Supervisor<std::string, WorkerPtr>;

std::string join(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& key : keys) {
    out += (out.empty() ? "" : ", ") + key;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const bool demo = argc > 1 && std::string_view(argv[1]) == "--demo";
  SignalStop signals;  // First: before any thread exists.

  // Demo timings are short so that CI sees restarts within a second or two.
  const Milliseconds tick = demo ? 250ms : 1000ms;

  // The table is the desired state, and it is ours: we keep a handle to add and remove rows while
  // the supervisor runs. MapTable is a hash map behind a shared_mutex, safe from any thread.
  auto table = std::make_shared<Table>();
  auto alpha = std::make_shared<Worker>("alpha", tick);
  auto beta = std::make_shared<Worker>("beta", tick);
  auto flaky = std::make_shared<Worker>("flaky", tick, /*fail_at_tick=*/2);
  auto gamma = std::make_shared<Worker>("gamma", tick);
  table->insert_or_assign("alpha", alpha);
  table->insert_or_assign("beta", beta);
  table->insert_or_assign("flaky", flaky);

  std::atomic<int> errors{0};
  supervisor::Options<std::string> options;
  options.restart_interval = demo ? 200ms : 5s;
  // Errors nobody asked for (a worker that died on its own, a failed background start...) land
  // here, on whichever thread saw them. Log them; the supervisor already acted on them.
  options.on_error = [&errors](const supervisor::ErrorReport<std::string>& report) {
    ++errors;
    say(report.key != nullptr ? *report.key : std::string("(table)"), ": ",
        supervisor::to_string(report.source), " error: ", supervisor::describe(report.error));
  };

  Supervisor sup(table, options);

  // `run_until` runs until the first signal (the callback's token says so), then stops every
  // process gracefully, and forces whatever still runs 10 s later.
  sup.run_until(signals.graceful(), 10s, [&](const std::stop_token& stopping) {
    say("quickstart: initial pass done, running: ", join(sup.keys()));

    // Add a row at run time. The next restart pass would pick it up; `start` does it now. A pass
    // may beat us to it, which `start` reports as process_exists: fine either way.
    if (!wait_for(600ms, stopping)) {
      return;
    }
    table->insert_or_assign("gamma", gamma);
    std::error_code ec;
    sup.start("gamma", ec);
    say("quickstart: added gamma", ec ? " (" + ec.message() + ")" : std::string());

    // Remove a row at run time: erase it from the table first, then stop it. In the other order
    // a restart pass could start it again between the two.
    if (!wait_for(500ms, stopping)) {
      return;
    }
    table->erase("beta");
    sup.stop("beta", ec);
    say("quickstart: removed beta", ec ? " (" + ec.message() + ")" : std::string(),
        "; running: ", join(sup.keys()));

    if (demo) {
      if (wait_for(600ms, stopping)) {
        say("quickstart: demo over, stopping");
        signals.request_graceful();
      }
    } else {
      say("quickstart: running until SIGINT or SIGTERM");
      wait_for_stop(stopping);
    }
  });
  // `run` returns once every worker has stopped and every supervisor thread has finished.

  if (demo) {
    // The demo checks what it showed, so CI fails if any of it did not happen.
    std::string failed;
    if (flaky->runs() < 2) {
      failed += " flaky was not restarted;";
    }
    if (gamma->runs() < 1) {
      failed += " gamma never started;";
    }
    if (beta->runs() != 1 || alpha->runs() != 1) {
      failed += " alpha or beta ran more than once;";
    }
    if (errors != 1) {
      failed += " expected exactly one reported error;";
    }
    if (!sup.keys().empty()) {
      failed += " processes left after run;";
    }
    if (!failed.empty()) {
      say("quickstart: FAILED:", failed);
      return EXIT_FAILURE;
    }
  }
  say("quickstart: done");
  return EXIT_SUCCESS;
}
