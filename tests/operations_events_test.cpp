// Operations: events (Options::on_event). The sequence of one life, failures with their restart
// schedule, ordering per key under a storm of concurrent starts and stops, and hooks that call
// back into the supervisor or throw.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <iostream>
#include <latch>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <streambuf>
#include <string>
#include <system_error>
#include <vector>

#include "catch_shim.hpp"
#include "operations_event_log.hpp"
#include "supervisor_class_harness.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ErrorSource;
using supervisor::EventKind;
using test::Harness;
using test::Probe;
using test::Shutdown;
using test::Startup;
using Log = test::EventLog<std::string>;

namespace {

/// Gives `h` a fresh supervisor whose events go to `log` (declare `log` before `h`, so that it
/// outlives a `run` that a failed REQUIRE leaves to the harness's destructor).
void with_events(Harness& h, Log& log, supervisor::RestartPolicy policy = {}) {
  auto options = h.options();
  options.on_event = log.hook();
  options.restart = policy;
  h.sup = std::make_unique<test::ProbeSupervisor>(h.table, options);
}

using test::code_in;

}  // namespace

// ---- the sequence of one life ------------------------------------------------------------------

TEST_CASE("events of a life: starting, ready with time to ready, stop_requested, stopped",
          "[operations][events]") {
  Log log;
  Harness h;
  with_events(h, log);
  h.start_run();
  auto probe = Probe::with(Startup::hang_then_ready);
  h.table->insert_or_assign("a", probe);
  const auto t0 = h.clock->now();

  std::error_code started;
  test::Background starter([&] { started = h.start_code("a"); });
  REQUIRE(probe.state->entered.wait());
  h.clock->advance(5s);  // Time to ready, on the supervisor's clock.
  probe.state->release.notify();
  REQUIRE(starter.join() == nullptr);
  REQUIRE(started == std::error_code{});
  REQUIRE(log.wait(2));
  h.clock->advance(2s);
  REQUIRE(h.stop_code("a") == std::error_code{});
  REQUIRE(log.wait(4));
  REQUIRE(h.finish() == nullptr);

  CHECK(log.kinds("a") == "starting ready stop_requested stopped");
  const auto e = log.of("a");
  REQUIRE(e.size() == 4);
  CHECK(e[0].at == t0);
  CHECK(e[1].at == t0 + 5s);
  CHECK(e[1].elapsed == 5s);
  CHECK(e[2].at == t0 + 7s);
  CHECK(e[3].at == t0 + 7s);
  CHECK(e[3].elapsed == 0s);  // Since its stop was requested.
  CHECK(e[3].error == nullptr);
  CHECK(h.reports.entries().empty());
}

TEST_CASE(
    "events of a runnable that fails after ready: failed, then restart_scheduled with "
    "the policy's delay",
    "[operations][events]") {
  Log log;
  Harness h;
  supervisor::RestartPolicy policy;
  policy.initial_backoff = 10s;
  policy.multiplier = 2.0;
  policy.jitter = 0.0;
  with_events(h, log, policy);
  h.start_run();
  // Throws once `ready` returns; `ready` returns when the test requests `early`.
  auto probe = Probe::with(Startup::ready, Shutdown::throw_error);
  probe.state->use_early = true;
  h.table->insert_or_assign("a", probe);
  const auto t0 = h.clock->now();

  REQUIRE(h.start_code("a") == std::error_code{});
  h.clock->advance(3s);
  probe.state->early.request_stop();  // It fails on its own, 3 s after ready.
  REQUIRE(log.wait(4));
  // Its last event comes before the key is free.
  REQUIRE(test::eventually([&] { return !test::has_key(*h.sup, "a"); }));
  // An explicit start ignores the backoff; `early` is still requested, so it fails at once.
  (void)h.start_code("a");
  REQUIRE(log.wait(8));
  REQUIRE(h.finish() == nullptr);

  CHECK(log.kinds("a") ==
        "starting ready failed restart_scheduled starting ready failed restart_scheduled");
  const auto e = log.of("a");
  REQUIRE(e.size() == 8);
  CHECK(e[2].at == t0 + 3s);
  CHECK(e[2].elapsed == 3s);  // Since ready.
  CHECK(test::what(e[2].error) == "shutdown failed");
  CHECK(e[2].consecutive_failures == 1);
  CHECK(e[3].delay == 10s);
  CHECK(e[3].consecutive_failures == 1);
  CHECK(test::what(e[6].error) == "shutdown failed");
  CHECK(e[6].consecutive_failures == 2);
  CHECK(e[7].delay == 20s);  // initial * multiplier
  CHECK(e[7].consecutive_failures == 2);
  CHECK(h.reports.count(ErrorSource::exit) == 2);
}

TEST_CASE(
    "events of a runnable that returns or throws before ready: failed, with "
    "exited_before_ready or its exception",
    "[operations][events]") {
  Log log;
  Harness h;
  with_events(h, log);
  h.start_run();
  h.table->insert_or_assign("quits", Probe::with(Startup::exit_early));
  h.table->insert_or_assign("throws", Probe::with(Startup::throw_error));
  h.table->insert_or_assign("background", Probe::with(Startup::exit_early));

  CHECK(h.start_code("quits") == errc::exited_before_ready);
  std::string thrown;
  try {
    (void)h.sup->start("throws");
  } catch (const std::runtime_error& e) {
    thrown = e.what();
  }
  CHECK(thrown == "init failed");
  REQUIRE(log.wait(6));
  // A pass starts the rows that have no process: "background" (and the two again).
  REQUIRE(h.sup->reconcile() == std::error_code{});
  REQUIRE(log.wait(15));
  REQUIRE(h.finish() == nullptr);

  for (const std::string key : {"quits", "throws", "background"}) {
    INFO(key);
    const auto e = log.of(key);
    const std::string expected = key == "background"
                                     ? "starting failed restart_scheduled"
                                     : "starting failed restart_scheduled starting failed "
                                       "restart_scheduled";
    CHECK(log.kinds(key) == expected);
    REQUIRE(e.size() >= 3);
    CHECK(e[1].consecutive_failures == 1);
    CHECK(e[2].delay == 0s);  // No backoff in the default policy.
    if (key == "throws") {
      CHECK(test::what(e[1].error) == "init failed");
    } else {
      CHECK(code_in(e[1].error) == errc::exited_before_ready);
    }
  }
}

// ---- ordering per key under a storm ------------------------------------------------------------

namespace {

/// A runnable for the storm: most lives run until stopped; some return before ready, some exit
/// cleanly right after ready, some throw right after ready.
struct Flaky {
  std::shared_ptr<std::atomic<int>> lives = std::make_shared<std::atomic<int>>(0);

  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) const {
    const int n = lives->fetch_add(1);
    std::stop_source gone;  // `ready` with a requested token returns at once.
    gone.request_stop();
    switch (n % 8) {
      case 3:
        return;  // Before ready: failed.
      case 5:
        ready(gone.get_token());
        return;  // Exited.
      case 7:
        ready(gone.get_token());
        throw std::runtime_error("storm");  // Failed after ready.
      default:
        ready();  // Until stopped.
        return;
    }
  }
};

/// Checks the events of one key, in order: lives that begin with `starting` and end with
/// `exited` or `failed` (each followed by at most one `restart_scheduled` or `given_up`) or
/// `stopped`, one after the other. Returns the first violation, or "".
std::string check_lives(const std::vector<EventKind>& kinds) {
  enum class Phase { between, alive, closing };
  Phase phase = Phase::between;
  bool ready = false;
  bool stop_requested = false;
  bool forced = false;
  for (std::size_t i = 0; i < kinds.size(); ++i) {
    const EventKind kind = kinds[i];
    auto bad = [&] {
      return "event " + std::to_string(i) + " (" + std::string(supervisor::to_string(kind)) +
             ") out of place";
    };
    switch (kind) {
      case EventKind::starting:
        if (phase == Phase::alive) {
          return bad();
        }
        phase = Phase::alive;
        ready = stop_requested = forced = false;
        break;
      case EventKind::ready:
        if (phase != Phase::alive || ready) {
          return bad();
        }
        ready = true;
        break;
      case EventKind::stop_requested:
        if (phase != Phase::alive || stop_requested) {
          return bad();
        }
        stop_requested = true;
        break;
      case EventKind::forced:
        if (phase != Phase::alive || !stop_requested || forced) {
          return bad();
        }
        forced = true;
        break;
      case EventKind::exited:
        if (phase != Phase::alive || !ready) {
          return bad();
        }
        phase = Phase::closing;
        break;
      case EventKind::failed:
      case EventKind::stopped:
        if (phase != Phase::alive) {
          return bad();
        }
        phase = kind == EventKind::failed ? Phase::closing : Phase::between;
        break;
      case EventKind::restart_scheduled:
      case EventKind::given_up:
        if (phase != Phase::closing) {
          return bad();
        }
        phase = Phase::between;
        break;
      case EventKind::escalated:
        return bad();
    }
  }
  if (phase == Phase::alive) {
    return "the last life has no last event";
  }
  return "";
}

}  // namespace

TEST_CASE("events keep their order per key under a storm of concurrent starts and stops",
          "[operations][events]") {
  using StormSupervisor = supervisor::Supervisor<std::string, Flaky>;
  const std::vector<std::string> keys{"k0", "k1", "k2"};
  constexpr int threads = 4;
  constexpr int iterations = 150;

  std::mutex log_mutex;
  std::vector<std::pair<std::string, EventKind>> log;
  auto clock = std::make_shared<supervisor::ManualClock>();
  auto table = std::make_shared<supervisor::MapTable<std::string, Flaky>>();
  for (const auto& key : keys) {
    table->insert_or_assign(key, Flaky{});
  }
  supervisor::Options<std::string> options;
  options.clock = clock;
  options.on_error = {};
  options.on_event = [&](const supervisor::Event<std::string>& e) {
    std::lock_guard lock(log_mutex);
    log.emplace_back(e.key, e.kind);
  };
  StormSupervisor sup(table, options);

  std::stop_source finish;
  test::Event in_callback;
  test::Background runner([&] {
    sup.run([&](const std::stop_token& stopping) {
      in_callback.notify();
      test::wait_until_either(stopping, finish.get_token());
    });
  });
  REQUIRE(in_callback.wait());

  std::stop_source already;  // A stop whose wait is canceled at once: it forces.
  already.request_stop();
  std::latch line_up(threads);
  {
    std::vector<std::unique_ptr<test::Background>> workers;
    for (int t = 0; t < threads; ++t) {
      workers.push_back(std::make_unique<test::Background>([&, t] {
        line_up.arrive_and_wait();
        for (int i = 0; i < iterations; ++i) {
          const std::string& key = keys[static_cast<std::size_t>(t + i) % keys.size()];
          std::error_code ec;
          try {
            switch ((i * 7 + t) % 4) {
              case 0:
              case 1:
                (void)sup.start(key, ec);
                break;
              case 2:
                sup.stop(key, ec);
                break;
              default:
                sup.stop(key, supervisor::Cancel{already.get_token()}, ec);
                break;
            }
          } catch (const std::runtime_error&) {  // NOLINT(bugprone-empty-catch): a "storm" life.
          }
        }
      }));
    }
    for (auto& worker : workers) {
      REQUIRE(worker->join() == nullptr);
    }
  }
  finish.request_stop();
  REQUIRE(runner.join() == nullptr);

  std::size_t lives = 0;
  for (const auto& key : keys) {
    std::vector<EventKind> kinds;
    for (const auto& [k, kind] : log) {  // `run` has returned: no hook runs any more.
      if (k == key) {
        kinds.push_back(kind);
        lives += kind == EventKind::starting ? 1 : 0;
      }
    }
    INFO(key);
    CHECK(check_lives(kinds) == "");
  }
  CHECK(lives > 3);  // Some storm, at least.
}

// ---- hooks that call back, hooks that throw ---------------------------------------------------

TEST_CASE("the event hook may call back into the supervisor", "[operations][events]") {
  struct Seen {
    EventKind kind;
    std::string key;
    std::error_code get;
    bool in_keys;
    bool in_snapshot;
  };
  std::mutex mutex;
  std::vector<Seen> seen;
  test::Event calls;
  test::ProbeSupervisor* sup = nullptr;  // Before the harness: the hook reads it until run ends.
  Harness h;
  auto options = h.options();
  options.on_event = [&](const supervisor::Event<std::string>& e) {
    std::error_code ec;
    (void)sup->get(e.key, ec);
    const auto keys = sup->keys();
    const auto snapshot = sup->snapshot();
    (void)sup->visit(e.key, [](const Probe&) {});
    const bool in_keys = std::find(keys.begin(), keys.end(), e.key) != keys.end();
    const bool in_snapshot = std::any_of(snapshot.keys.begin(), snapshot.keys.end(),
                                         [&](const auto& status) { return status.key == e.key; });
    {
      std::lock_guard lock(mutex);
      seen.push_back(Seen{e.kind, e.key, ec, in_keys, in_snapshot});
    }
    calls.notify();
  };
  h.sup = std::make_unique<test::ProbeSupervisor>(h.table, options);
  sup = h.sup.get();
  h.table->insert_or_assign("a", Probe::with(Startup::ready));
  h.table->insert_or_assign("b", Probe::with(Startup::exit_early));
  h.start_run();  // The initial pass starts both (b fails).

  REQUIRE(calls.wait(5));  // a: starting, ready; b: starting, failed, restart_scheduled.
  REQUIRE(h.stop_code("a") == std::error_code{});
  REQUIRE(h.start_code("a") == std::error_code{});
  REQUIRE(calls.wait(9));
  REQUIRE(h.finish() == nullptr);  // Its shutdown stops "a": two more.

  std::lock_guard lock(mutex);
  CHECK(seen.size() == 11);
  int readies = 0;
  for (const auto& s : seen) {
    if (s.kind == EventKind::ready) {
      ++readies;
      INFO(s.key);
      CHECK(s.get == std::error_code{});  // A ready process is found running.
      CHECK(s.in_keys);
      CHECK(s.in_snapshot);
    }
    if (s.kind == EventKind::restart_scheduled) {
      CHECK(s.in_snapshot);  // Its failure history is there.
    }
  }
  CHECK(readies == 2);
}

namespace {

/// A stream buffer that keeps what is written, under a lock, and counts lines.
class LineCounter : public std::streambuf {
 public:
  std::string text() const {
    std::lock_guard lock(mutex_);
    return text_;
  }
  bool wait_lines(int n) { return line_.wait(n); }

 protected:
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) {
      const char ch = traits_type::to_char_type(c);
      xsputn(&ch, 1);
    }
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    int lines = 0;
    {
      std::lock_guard lock(mutex_);
      text_.append(s, static_cast<std::size_t>(n));
      lines = static_cast<int>(std::count(s, s + n, '\n'));
    }
    for (int i = 0; i < lines; ++i) {
      line_.notify();
    }
    return n;
  }

 private:
  mutable std::mutex mutex_;
  std::string text_;
  test::Event line_;
};

/// Sends std::clog to a `LineCounter` until destroyed.
struct ClogCapture {
  LineCounter lines;
  std::streambuf* saved = std::clog.rdbuf(&lines);
  ClogCapture() = default;
  ClogCapture(const ClogCapture&) = delete;
  ClogCapture& operator=(const ClogCapture&) = delete;
  ~ClogCapture() { std::clog.rdbuf(saved); }
};

}  // namespace

TEST_CASE("an event hook that throws is logged and ignored", "[operations][events]") {
  // Declared before the harness: std::clog is given back once run's threads are gone.
  ClogCapture capture;
  LineCounter& clog_lines = capture.lines;
  std::atomic<int> calls{0};
  Harness h;
  auto options = h.options();
  options.on_event = [&](const supervisor::Event<std::string>&) {
    ++calls;
    throw std::runtime_error("hook says no");
  };
  h.sup = std::make_unique<test::ProbeSupervisor>(h.table, options);
  // Each step waits for the lines of the last, so that no two threads write to std::clog at once.
  h.start_run();
  auto a = Probe::with(Startup::ready);
  h.table->insert_or_assign("a", a);
  h.table->insert_or_assign("b", Probe::with(Startup::exit_early));
  REQUIRE(h.start_code("a") == std::error_code{});
  REQUIRE(clog_lines.wait_lines(2));            // starting, ready
  CHECK(h.get_code("a") == std::error_code{});  // It runs.
  REQUIRE(h.stop_code("a") == std::error_code{});
  REQUIRE(clog_lines.wait_lines(4));                // stop_requested, stopped
  REQUIRE(h.start_code("a") == std::error_code{});  // The key was freed.
  REQUIRE(clog_lines.wait_lines(6));
  CHECK(h.start_code("b") == errc::exited_before_ready);
  REQUIRE(clog_lines.wait_lines(9));  // starting, failed, restart_scheduled
  REQUIRE(h.finish() == nullptr);     // stop_requested, stopped

  CHECK(calls == 11);
  const std::string text = clog_lines.text();
  CHECK(std::count(text.begin(), text.end(), '\n') == 11);
  CHECK(text.find("supervisor: the event hook threw: hook says no\n") == 0);
  CHECK(a.state->returned.count() == 2);
  CHECK(h.reports.entries().empty());
}
