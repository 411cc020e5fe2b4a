// composition: supervisors inside a supervisor, and adapters for code that is not a Runnable.
//
//   composition          runs until SIGINT or SIGTERM (a second signal forces the stop)
//   composition --demo   the same scenario, stopped by itself after about 1.5 s; prints
//                        "composition: done" last if everything happened as it should
//
// The outer supervisor keeps one process per tenant. A tenant's process is a whole supervisor
// (a std::shared_ptr<supervisor::Supervisor<...>> is Runnable) keeping that tenant's workers:
// - "poller", loop-style code (a function that loops until its stop token is requested),
//   wrapped by supervisor::leaf;
// - "exporter", a component with start() and stop() and a thread of its own, wrapped by
//   supervisor::start_stop.
// Stopping a tenant (erase it from the outer table, then stop it) stops its supervisor, which
// stops all of that tenant's workers before the stop returns. Adding a tenant at run time starts
// its supervisor, which is ready once it has started that tenant's workers.
//
// Linux/POSIX only because of the signal handling (sigwait); the supervisor itself is portable.

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
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

std::string join(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& key : keys) {
    out += (out.empty() ? "" : ", ") + key;
  }
  return out;
}

// How many workers of one tenant are alive right now: the demo checks that stopping a tenant
// leaves none.
using LiveCount = std::shared_ptr<std::atomic<int>>;

// ---- Code that is not a Runnable ---------------------------------------------------------------

// Loop-style code, as found in many programs: it loops until its stop token is requested.
void poll_inbox(const std::string& who, Milliseconds period, const std::stop_token& stop) {
  int polls = 0;
  while (wait_for(period, stop)) {
    say(who, ": polled the inbox (", ++polls, ")");
  }
  say(who, ": loop ended after ", polls, " polls");
}

// A component with a start()/stop() API and a thread of its own, as many client libraries have.
class MetricsExporter {
 public:
  MetricsExporter(std::string who, Milliseconds period, LiveCount live)
      : who_(std::move(who)), period_(period), live_(std::move(live)) {}

  void start() {
    thread_ = std::jthread([this](const std::stop_token& stop) {
      while (wait_for(period_, stop)) {
        say(who_, ": exported metrics");
      }
    });
    ++*live_;
    say(who_, ": started");
  }

  void stop() {
    thread_.request_stop();
    thread_.join();
    --*live_;
    say(who_, ": flushed and stopped");
  }

 private:
  std::string who_;
  Milliseconds period_;
  LiveCount live_;
  std::jthread thread_;
};

// ---- One tenant: a supervisor of its workers ---------------------------------------------------

// A table holds one runnable type, but a tenant mixes kinds (a leaf, a start_stop):
// supervisor::AnyRunnable holds any of them behind one cheap-to-copy handle.
using Task = supervisor::AnyRunnable;

// supervisor::leaf(body) runs the loop on a thread of its own with a stop token of its own,
// fresh for every run (so a restarted poller starts clean), makes the process ready at once, and
// requests that token when a stop is requested.
Task poller(std::string who, Milliseconds period, LiveCount live) {
  return supervisor::leaf(
      [who = std::move(who), period, live = std::move(live)](const std::stop_token& stop) {
        ++*live;
        say(who, ": started");
        poll_inbox(who, period, stop);
        --*live;
      });
}

// supervisor::start_stop calls start() (a throw there is a failed start), makes the process
// ready, and calls stop() when a stop is requested.
Task exporter(std::string who, Milliseconds period, LiveCount live) {
  auto component = std::make_shared<MetricsExporter>(std::move(who), period, std::move(live));
  return supervisor::start_stop([component] { component->start(); },
                                [component] { component->stop(); });
}

using TenantSupervisor = supervisor::Supervisor<std::string, Task>;
using TenantPtr = std::shared_ptr<TenantSupervisor>;
using Outer = supervisor::Supervisor<std::string, TenantPtr>;

struct Tenant {
  TenantPtr sup;
  LiveCount live;
};

Tenant make_tenant(const std::string& name, bool demo) {
  const Milliseconds period = demo ? 300ms : 2s;
  auto live = std::make_shared<std::atomic<int>>(0);
  auto table = std::make_shared<supervisor::MapTable<std::string, Task>>();
  table->insert_or_assign("poller", poller(name + "/poller", period, live));
  table->insert_or_assign("exporter", exporter(name + "/exporter", period, live));

  supervisor::Options<std::string> options;
  options.restart_interval = demo ? 200ms : 5s;
  options.on_error = [name](const supervisor::ErrorReport<std::string>& report) {
    say(name, "/", report.key != nullptr ? *report.key : std::string("(table)"), ": ",
        supervisor::to_string(report.source), " error: ", supervisor::describe(report.error));
  };
  // Nothing runs until the outer supervisor runs this one as a process.
  return {std::make_shared<TenantSupervisor>(table, options), live};
}

}  // namespace

int main(int argc, char** argv) {
  const bool demo = argc > 1 && std::string_view(argv[1]) == "--demo";
  SignalStop signals;  // First: before any thread exists.

  std::map<std::string, Tenant> tenants;
  auto outer_table = std::make_shared<supervisor::MapTable<std::string, TenantPtr>>();
  for (const std::string name : {"acme", "globex"}) {
    tenants[name] = make_tenant(name, demo);
    outer_table->insert_or_assign(name, tenants[name].sup);
  }

  supervisor::Options<std::string> options;
  options.restart_interval = demo ? 200ms : 5s;
  options.on_error = [](const supervisor::ErrorReport<std::string>& report) {
    say(report.key != nullptr ? *report.key : std::string("(tenants)"), ": ",
        supervisor::to_string(report.source), " error: ", supervisor::describe(report.error));
  };
  Outer outer(outer_table, options);

  int globex_live_after_stop = -1;
  std::size_t initech_workers = 0;
  // The force token is the parent of every process, nested ones included: a second signal forces
  // every worker of every tenant.
  outer.run(signals.force(), [&] {
    const std::stop_token stopping = signals.graceful();
    // The initial pass waited for the tenants' supervisors to be ready, and each of those waited
    // for its own initial pass: every worker is up here. `visit` lends a nested supervisor
    // without copying its handle (`get` would hand back a copy).
    for (const auto& name : outer.keys()) {
      (void)outer.visit(name, [&](const auto& tenant) {
        say("composition: tenant ", name, " runs ", join(tenant->keys()));
      });
    }

    // Stop one tenant for good: erase it from the outer table first (or the next pass starts it
    // again), then stop it. Its supervisor stops all its workers before `stop` returns.
    if (!wait_for(500ms, stopping)) {
      return;
    }
    say("composition: stopping tenant globex");
    outer_table->erase("globex");
    std::error_code ec;
    outer.stop("globex", ec);
    globex_live_after_stop = *tenants["globex"].live;
    say("composition: globex stopped", ec ? " (" + ec.message() + ")" : std::string(), ", ",
        globex_live_after_stop, " of its workers alive; tenants: ", join(outer.keys()));

    // Add a tenant at run time. `start` returns once its supervisor is ready, so once its
    // workers are up. A restart pass may beat us to it (process_exists): fine either way.
    if (!wait_for(300ms, stopping)) {
      return;
    }
    tenants["initech"] = make_tenant("initech", demo);
    outer_table->insert_or_assign("initech", tenants["initech"].sup);
    outer.start("initech", ec);
    say("composition: added tenant initech", ec ? " (" + ec.message() + ")" : std::string(),
        "; tenants: ", join(outer.keys()));

    if (demo) {
      if (wait_for(500ms, stopping)) {
        if (auto initech = outer.get("initech", ec); initech && !ec) {
          initech_workers = (*initech)->keys().size();
        }
        say("composition: demo over, stopping");
        signals.request_graceful();
      }
    } else {
      say("composition: running until SIGINT or SIGTERM");
      wait_for_stop(stopping);
    }
  });
  // The outer supervisor stopped every tenant, and each tenant every worker, before run returned.

  if (demo) {
    std::string failed;
    if (globex_live_after_stop != 0) {
      failed += " stopping globex left workers alive;";
    }
    if (initech_workers != 2) {
      failed += " initech was not up with its two workers;";
    }
    for (const auto& [name, tenant] : tenants) {
      if (*tenant.live != 0) {
        failed += " " + name + " has workers alive after run;";
      }
    }
    if (!failed.empty()) {
      say("composition: FAILED:", failed);
      return EXIT_FAILURE;
    }
  }
  say("composition: done");
  return EXIT_SUCCESS;
}
