// metrics: a supervisor's events turned into Prometheus metrics, printed on SIGUSR1.
//
//   metrics          runs until SIGINT or SIGTERM; `kill -USR1 <pid>` prints the metrics
//   metrics --demo   the same for about 1.5 s, prints the metrics once (through the same SIGUSR1
//                    path), checks them, and prints "metrics: done" last (CI checks it)
//
// What it shows:
// - a RestartPolicy: exponential backoff with jitter, reset after a healthy run, give-up;
// - Options::on_event feeding a thread-safe registry: counters, and a histogram of time to ready
//   in the Prometheus text exposition format (`_bucket{le=...}`, `_sum`, `_count`);
// - gauges per KeyState, read from Supervisor::snapshot() outside the registry's lock.
//
// Names follow controller-runtime's style (a prefix, `_total` counters, `_seconds` histograms);
// each mirrors one of its metrics: starts ~ controller_runtime_reconcile_total, failures ~
// controller_runtime_reconcile_errors_total, restarts scheduled ~ workqueue_retries_total, given
// up ~ controller_runtime_terminal_reconcile_errors_total, time to ready ~
// controller_runtime_reconcile_time_seconds, keys by state ~ controller_runtime_active_workers.
//
// Linux/POSIX only because of the signal handling; the supervisor itself is portable.

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "example_support.hpp"
#include "supervisor/supervisor.hpp"

namespace {

using example::say;
using example::wait_for;
using namespace std::chrono_literals;
using Milliseconds = std::chrono::milliseconds;
using Key = std::string;

// ---- The registry --------------------------------------------------------------------------

// Time to ready, with the Prometheus client libraries' default buckets (seconds).
struct Histogram {
  static constexpr std::array<double, 11> bounds{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                 0.5,   1,    2.5,   5,    10};
  std::array<std::uint64_t, bounds.size()> in_bucket{};  // Not cumulative; rendered cumulative.
  double sum = 0;
  std::uint64_t count = 0;

  void observe(double seconds) {
    const auto* bucket = std::lower_bound(bounds.begin(), bounds.end(), seconds);  // le: <=
    if (bucket != bounds.end()) {
      ++in_bucket[static_cast<std::size_t>(bucket - bounds.begin())];
    }
    sum += seconds;
    ++count;
  }
};

constexpr std::size_t event_kinds = static_cast<std::size_t>(supervisor::EventKind::escalated) + 1;

struct Counts {
  std::array<std::uint64_t, event_kinds> events{};  // By EventKind.
  std::map<Key, std::uint64_t> failures;            // By key.
  Histogram ready;

  [[nodiscard]] std::uint64_t of(supervisor::EventKind kind) const {
    return events[static_cast<std::size_t>(kind)];
  }
};

// Called from many threads at once (on_event runs where each transition happens), so one mutex
// guards everything; each event holds it for a few increments. Nothing here calls the supervisor.
class Metrics {
 public:
  void record(const supervisor::Event<Key>& event) {
    const std::lock_guard lock(mutex_);
    ++counts_.events[static_cast<std::size_t>(event.kind)];
    if (event.kind == supervisor::EventKind::ready) {
      counts_.ready.observe(std::chrono::duration<double>(event.elapsed).count());
    } else if (event.kind == supervisor::EventKind::failed) {
      ++counts_.failures[event.key];  // A copy of the key: the event's is valid only in the call.
    }
  }

  [[nodiscard]] Counts counts() const {
    const std::lock_guard lock(mutex_);
    return counts_;
  }

 private:
  mutable std::mutex mutex_;
  Counts counts_;
};

// ---- The text exposition format ------------------------------------------------------------

std::string label_value(std::string_view value) {  // Escapes \, " and newline.
  std::string out;
  for (const char c : value) {
    out += c == '\\' ? "\\\\" : c == '"' ? "\\\"" : c == '\n' ? "\\n" : std::string(1, c);
  }
  return out;
}

void header(std::ostream& out, std::string_view name, std::string_view type,
            std::string_view help) {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

void counter(std::ostream& out, std::string_view name, std::string_view help, std::uint64_t n) {
  header(out, name, "counter", help);
  out << name << ' ' << n << '\n';
}

// The counters, and gauges from a snapshot taken by the caller: the registry's lock is held only
// to copy the counters, never while the supervisor is called.
std::string render(const Counts& c, const supervisor::Snapshot<Key>& snapshot) {
  using Kind = supervisor::EventKind;
  std::ostringstream out;
  counter(out, "supervisor_process_starts_total", "Processes launched.", c.of(Kind::starting));
  header(out, "supervisor_process_failures_total", "counter",
         "Processes that exited with an error, failed to start, or returned before ready.");
  for (const auto& [key, n] : c.failures) {
    out << "supervisor_process_failures_total{key=\"" << label_value(key) << "\"} " << n << '\n';
  }
  counter(out, "supervisor_restarts_scheduled_total", "Restarts scheduled after an exit.",
          c.of(Kind::restart_scheduled));
  counter(out, "supervisor_given_up_total", "Keys given up by the restart policy.",
          c.of(Kind::given_up));
  counter(out, "supervisor_processes_forced_total", "Processes forced to stop.",
          c.of(Kind::forced));

  header(out, "supervisor_process_ready_seconds", "histogram", "Time from launch to ready.");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < Histogram::bounds.size(); ++i) {
    cumulative += c.ready.in_bucket[i];
    out << "supervisor_process_ready_seconds_bucket{le=\"" << Histogram::bounds[i] << "\"} "
        << cumulative << '\n';
  }
  out << "supervisor_process_ready_seconds_bucket{le=\"+Inf\"} " << c.ready.count << '\n'
      << "supervisor_process_ready_seconds_sum " << c.ready.sum << '\n'
      << "supervisor_process_ready_seconds_count " << c.ready.count << '\n';

  header(out, "supervisor_keys", "gauge",
         "Keys with a process or with failure state, by state (from snapshot()).");
  for (std::size_t i = 0; i < supervisor::key_state_count; ++i) {
    const auto state = static_cast<supervisor::KeyState>(i);
    out << "supervisor_keys{state=\"" << supervisor::to_string(state) << "\"} "
        << snapshot.count(state) << '\n';
  }
  return out.str();
}

// ---- SIGUSR1 -------------------------------------------------------------------------------

// A signal handler may only do async-signal-safe things: it sets a lock-free flag, and the main
// loop prints. (SIGINT/SIGTERM are taken by example::SignalStop's sigwait thread instead.)
std::atomic<bool> dump_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free);
void on_sigusr1(int /*signal*/) { dump_requested.store(true); }

// ---- The workers ---------------------------------------------------------------------------

// A worker with a scripted fate, so that each kind of event shows up in the metrics.
struct Script {
  Milliseconds init;           // Time to ready.
  int failing_runs = 0;        // Runs 1..N throw before ready (a refused connection).
  Milliseconds crash_after{};  // Non-zero: every run dies this long after ready.
  bool bad_config = false;     // Fails with errc::do_not_restart: given up at once.
};

class Worker {
 public:
  explicit Worker(Script script) : script_(script) {}

  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) {
    const int run = ++runs_;
    if (!wait_for(script_.init, ready.stop_token())) {
      return;  // Asked to stop while still starting.
    }
    if (script_.bad_config) {
      throw std::system_error(supervisor::errc::do_not_restart, "bad configuration");
    }
    if (run <= script_.failing_runs) {
      throw std::runtime_error("connection refused (run " + std::to_string(run) + ")");
    }
    std::stop_source died;  // Requested when the work dies: makes `ready` return early.
    std::jthread work([&](const std::stop_token& stop) {
      if (script_.crash_after > 0ms && wait_for(script_.crash_after, stop)) {
        died.request_stop();
      }
    });
    ready(died.get_token());
    work.request_stop();
    work.join();
    if (died.stop_requested() && !ready.stop_token().stop_requested()) {
      throw std::runtime_error("lost its connection (run " + std::to_string(run) + ")");
    }
  }

 private:
  Script script_;
  std::atomic<int> runs_{0};
};

using WorkerPtr = std::shared_ptr<Worker>;

void print(const Metrics& metrics, const supervisor::Supervisor<Key, WorkerPtr>& sup) {
  const std::string text = render(metrics.counts(), sup.snapshot());
  const std::lock_guard lock(example::output_mutex);
  std::cout << text << std::flush;
}

}  // namespace

int main(int argc, char** argv) {
  const bool demo = argc > 1 && std::string_view(argv[1]) == "--demo";
  example::SignalStop signals;  // First: before any thread exists.
  std::signal(SIGUSR1, on_sigusr1);

  auto table = std::make_shared<supervisor::MapTable<Key, WorkerPtr>>();
  const auto add = [&](const Key& key, Script script) {
    table->insert_or_assign(key, std::make_shared<Worker>(script));
  };
  add("alpha", {.init = 15ms});
  add("beta", {.init = 40ms});
  add("flaky", {.init = 25ms, .failing_runs = 2});
  add("crashy", {.init = 10ms, .crash_after = demo ? 60ms : 2s});
  add("doomed", {.init = 5ms, .bad_config = true});

  Metrics metrics;  // Outlives the supervisor, whose hook refers to it.
  supervisor::Options<Key> options;
  options.restart_interval = demo ? 100ms : 10s;
  options.restart.initial_backoff = demo ? 20ms : 1s;  // 20, 40, 80... ms, each +-30%,
  options.restart.max_backoff = demo ? 200ms : 5min;   // capped here.
  options.restart.jitter = 0.3;
  options.restart.reset_after = demo ? 300ms : 1min;  // Ready this long: failures forgotten.
  options.restart.retry_when_due = true;              // Restart when the backoff ends.
  options.restart.give_up_after = 3;                  // A 4th failure within the window: give up.
  options.restart.give_up_window = demo ? 5s : 10min;
  options.shutdown_timeout = 5s;  // Then force; failures still go to on_error (std::clog).
  options.on_event = [&metrics](const supervisor::Event<Key>& event) {
    metrics.record(event);
    if (event.kind == supervisor::EventKind::given_up) {
      say(event.key, ": given up after ", event.consecutive_failures, " failure(s)");
    }
  };

  supervisor::Supervisor<Key, WorkerPtr> sup(table, options);
  sup.run_until(signals.graceful(), 10s, [&](const std::stop_token& stopping) {
    say("metrics: running; kill -USR1 ", ::getpid(), " prints the metrics");
    const auto demo_end = std::chrono::steady_clock::now() + 1500ms;
    bool raised = false;
    while (wait_for(50ms, stopping)) {
      if (dump_requested.exchange(false)) {
        print(metrics, sup);
        if (raised) {
          signals.request_graceful();  // The demo's one dump is out: stop.
        }
      }
      if (demo && !raised && std::chrono::steady_clock::now() >= demo_end) {
        raised = true;
        std::raise(SIGUSR1);  // What `kill -USR1` does, from inside.
      }
    }
  });

  if (demo) {  // The scenario's outcome, read back from the metrics.
    using Kind = supervisor::EventKind;
    const Counts c = metrics.counts();
    std::string failed;
    const auto expect = [&](bool ok, std::string_view what) {
      failed += ok ? "" : " " + std::string(what) + ";";
    };
    expect(c.failures.count("flaky") == 1 && c.failures.at("flaky") >= 2, "flaky's 2 failures");
    expect(c.of(Kind::given_up) >= 1, "doomed given up");
    expect(c.of(Kind::starting) >= 6 && c.of(Kind::restart_scheduled) >= 1, "restarts");
    expect(c.ready.count >= 3, "3 processes ready");
    if (!failed.empty()) {
      say("metrics: FAILED, expected:", failed);
      return EXIT_FAILURE;
    }
  }
  say("metrics: done");
  return EXIT_SUCCESS;
}
