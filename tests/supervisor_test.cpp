#include <algorithm>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch_shim.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ErrorSource;
using test::eventually;
using test::Probe;
using test::Shutdown;
using test::Startup;

namespace {

using Table = supervisor::MapTable<std::string, Probe>;
using Sup = supervisor::Supervisor<std::string, Probe>;

/// A supervisor on a manual clock with a recording error hook, and `run` on a thread of its own
/// whose callback waits until the test calls `finish()` (graceful) or `cancel()` (forced).
struct Harness {
  std::shared_ptr<supervisor::ManualClock> clock = std::make_shared<supervisor::ManualClock>();
  std::shared_ptr<Table> table = std::make_shared<Table>();
  test::Reports<std::string> reports;
  std::unique_ptr<Sup> sup;
  std::stop_source cancel_source;
  std::stop_source finish_source;
  test::Event in_callback;
  std::unique_ptr<test::Background> runner;

  Harness() { sup = std::make_unique<Sup>(table, options()); }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;
  ~Harness() {
    // A failed REQUIRE leaves `run` going: force it down so the test fails instead of hanging.
    cancel_source.request_stop();
    runner.reset();
  }

  supervisor::Options<std::string> options() {
    supervisor::Options<std::string> o;
    o.clock = clock;
    o.on_error = reports.hook();
    return o;
  }

  /// Starts `run`; returns once the callback is running, unless `wait_for_callback` is false.
  void start_run(bool wait_for_callback = true) {
    runner = std::make_unique<test::Background>([this] {
      sup->run(cancel_source.get_token(), [this](std::stop_token stopping) {
        in_callback.notify();
        std::mutex m;
        std::condition_variable_any cv;
        // Registered before the lock is taken: on a requested token it runs at once.
        std::stop_callback wake(stopping, [&] {
          std::lock_guard l(m);
          cv.notify_all();
        });
        std::unique_lock lock(m);
        cv.wait(lock, finish_source.get_token(), [&] { return stopping.stop_requested(); });
      });
    });
    if (wait_for_callback) {
      REQUIRE(in_callback.wait());
    }
  }

  /// Returns from the callback (graceful shutdown) and waits for `run` to return.
  std::exception_ptr finish() {
    finish_source.request_stop();
    return runner->join();
  }

  /// Cancels `run` (forced shutdown) and waits for it to return.
  std::exception_ptr cancel() {
    cancel_source.request_stop();
    return runner->join();
  }

  /// Lets the restart loop run one pass, and waits until it has armed its next wait.
  void restart_pass() {
    REQUIRE(clock->wait_for_sleepers(1));
    const auto arms = clock->arms();
    clock->advance(1min);
    REQUIRE(clock->wait_for_arms(arms + 1));
  }

  std::error_code get_code(const std::string& key) const {
    std::error_code ec;
    (void)sup->get(key, ec);
    return ec;
  }
  std::error_code start_code(const std::string& key, supervisor::Cancel cancel = {}) {
    std::error_code ec;
    (void)sup->start(key, std::move(cancel), ec);
    return ec;
  }
  std::error_code stop_code(const std::string& key, supervisor::Cancel cancel = {}) {
    std::error_code ec;
    sup->stop(key, std::move(cancel), ec);
    return ec;
  }
};

bool has_key(const Sup& sup, const std::string& key) {
  auto keys = sup.keys();
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

}  // namespace

// ---- The four scenarios of the Go tests ------------------------------------------------------

TEST_CASE("initial pass: a startup that hangs is cut short by the initial wait", "[supervisor]") {
  Harness h;
  auto probe = Probe::with(Startup::hang);
  h.table->insert_or_assign("a", probe);
  h.start_run(/*wait_for_callback=*/false);

  REQUIRE(probe.state->entered.wait());
  REQUIRE(h.clock->wait_for_sleepers(1));  // The initial wait is armed...
  CHECK(h.in_callback.count() == 0);       // ...and holds the callback back.
  h.clock->advance(999ms);
  CHECK(h.in_callback.count() == 0);
  h.clock->advance(1ms);
  REQUIRE(h.in_callback.wait());

  CHECK(h.get_code("a") == errc::process_not_running);
  CHECK(h.start_code("a") == errc::process_exists);
  CHECK(test::code_of([&] { (void)h.sup->get("a"); }) == errc::process_not_running);

  REQUIRE(h.cancel() == nullptr);
  CHECK(probe.state->force_seen);
  CHECK(probe.state->returned.count() == 1);
  CHECK(h.sup->keys().empty());
}

TEST_CASE("initial pass: a startup that completes lets the callback run at once", "[supervisor]") {
  Harness h;
  auto probe = Probe::with(Startup::ready);
  h.table->insert_or_assign("a", probe);
  h.start_run();  // No clock advance: the wait ends when every start has finished.

  CHECK(h.clock->now() == supervisor::ManualClock::time_point{});
  CHECK(h.get_code("a") == std::error_code{});
  CHECK(h.sup->get("a").state == probe.state);

  REQUIRE(h.finish() == nullptr);
  CHECK_FALSE(probe.state->force_seen);  // A graceful stop, not a forced one.
  CHECK(probe.state->returned.count() == 1);
}

TEST_CASE("restart loop: a pass starts a process that hangs, and run still shuts down",
          "[supervisor]") {
  Harness h;
  h.start_run();
  auto probe = Probe::with(Startup::hang);
  h.table->insert_or_assign("a", probe);

  h.restart_pass();
  REQUIRE(probe.state->entered.wait());
  CHECK(h.get_code("a") == errc::process_not_running);

  REQUIRE(h.finish() == nullptr);  // Graceful: the hung startup is forced all the same.
  CHECK(probe.state->force_seen);
  CHECK(probe.state->returned.count() == 1);
}

TEST_CASE("two starts of one key: exactly one wins", "[supervisor]") {
  Harness h;
  h.start_run();

  SECTION("the second start arrives while the first is starting") {
    auto probe = Probe::with(Startup::hang_then_ready);
    h.table->insert_or_assign("a", probe);
    std::error_code first;
    test::Background starter([&] { first = h.start_code("a"); });
    REQUIRE(probe.state->entered.wait());
    CHECK(h.start_code("a") == errc::process_exists);
    probe.state->release.notify();
    REQUIRE(starter.join() == nullptr);
    CHECK(first == std::error_code{});
    CHECK(probe.state->entered.count() == 1);
  }

  SECTION("both race from a latch") {
    auto probe = Probe::with(Startup::ready);
    h.table->insert_or_assign("a", probe);
    std::latch go(2);
    std::error_code codes[2];
    {
      test::Background one([&] {
        go.arrive_and_wait();
        codes[0] = h.start_code("a");
      });
      test::Background two([&] {
        go.arrive_and_wait();
        codes[1] = h.start_code("a");
      });
    }
    const int wins =
        (codes[0] == std::error_code{} ? 1 : 0) + (codes[1] == std::error_code{} ? 1 : 0);
    CHECK(wins == 1);
    CHECK((codes[0] == errc::process_exists || codes[1] == errc::process_exists));
    CHECK(probe.state->entered.count() == 1);
  }

  REQUIRE(h.finish() == nullptr);
}

// ---- Calls outside run, unknown keys ---------------------------------------------------------

TEST_CASE("start before and after run reports not_running", "[supervisor]") {
  Harness h;
  h.table->insert_or_assign("a", Probe::with(Startup::ready));
  CHECK(h.start_code("a") == errc::not_running);
  CHECK(test::code_of([&] { (void)h.sup->start("a"); }) == errc::not_running);
  CHECK(h.stop_code("a") == errc::process_not_found);

  h.start_run();
  REQUIRE(h.finish() == nullptr);

  CHECK(h.start_code("a") == errc::not_running);
  CHECK(h.stop_code("a") == errc::process_not_found);
  CHECK(h.get_code("a") == errc::process_not_found);
  CHECK(h.sup->keys().empty());
}

TEST_CASE("stop, get and start of unknown keys", "[supervisor]") {
  Harness h;
  h.start_run();
  CHECK(h.stop_code("nope") == errc::process_not_found);
  CHECK(h.get_code("nope") == errc::process_not_found);
  CHECK(test::code_of([&] { h.sup->stop("nope"); }) == errc::process_not_found);
  CHECK(h.start_code("nope") == errc::not_in_table);
  // A failed start leaves the key free: the next start reaches the table again.
  h.table->insert_or_assign("nope", Probe::with(Startup::ready));
  CHECK(h.start_code("nope") == std::error_code{});
  REQUIRE(h.finish() == nullptr);
}

// ---- Processes that end on their own ---------------------------------------------------------

TEST_CASE("visit: calls back with a running process's runnable, and only then", "[supervisor]") {
  Harness h;
  auto a = Probe::with(Startup::ready);
  auto b = Probe::with(Startup::hang_then_ready);
  h.table->insert_or_assign("a", a);
  h.start_run();

  std::shared_ptr<test::ProbeState> seen;
  CHECK(h.sup->visit("a", [&](const Probe& p) { seen = p.state; }) == std::error_code{});
  CHECK(seen == a.state);

  int calls = 0;
  CHECK(h.sup->visit("nope", [&](const Probe&) { ++calls; }) == errc::process_not_found);
  h.table->insert_or_assign("b", b);
  std::error_code b_start;
  {
    test::Background starter([&] { b_start = h.start_code("b"); });
    REQUIRE(b.state->entered.wait());
    CHECK(h.sup->visit("b", [&](const Probe&) { ++calls; }) == errc::process_not_running);
    b.state->release.notify();
  }
  CHECK(b_start == std::error_code{});
  CHECK(calls == 0);

  SECTION("the callback may stop the process it visits; the runnable outlives the call") {
    std::error_code stopped;
    bool returned = false;
    CHECK(h.sup->visit("a", [&](const Probe& p) {
      h.table->erase("a");
      stopped = h.stop_code("a");
      returned = p.state->returned.count() == 1;  // still readable
    }) == std::error_code{});
    CHECK(stopped == std::error_code{});
    CHECK(returned);
    CHECK(h.get_code("a") == errc::process_not_found);
  }
  SECTION("what the callback throws reaches the caller") {
    CHECK_THROWS_AS(h.sup->visit("b", [](const Probe&) { throw std::out_of_range("visited"); }),
                    std::out_of_range);
    CHECK(h.get_code("b") == std::error_code{});
  }
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("a runnable still held by a lookup in flight is released by the next pass",
          "[supervisor]") {
  Harness h;
  auto a = Probe::with(Startup::ready);
  h.table->insert_or_assign("a", a);
  h.start_run();
  test::Event inside;
  test::Event release;
  std::error_code visited;
  test::Background reader([&] {
    visited = h.sup->visit("a", [&](const Probe&) {
      inside.notify();
      release.wait();
    });
  });
  REQUIRE(inside.wait());
  h.table->erase("a");
  CHECK(h.stop_code("a") == std::error_code{});  // A lookup in flight does not hold stop up.
  release.notify();
  REQUIRE(reader.join() == nullptr);
  CHECK(visited == std::error_code{});
  // The supervisor's copy outlived the stop (the lookup might have been using it); no write has
  // touched its shard since, so the pass's reclamation is what frees it.
  h.restart_pass();
  CHECK(eventually([&] { return a.state.use_count() == 1; }));
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("a process that erases its entry and returns is removed and not restarted",
          "[supervisor]") {
  Harness h;
  auto probe = Probe::with(Startup::ready);
  probe.state->use_early = true;
  auto table = h.table;
  probe.state->after_ready = [table] { table->erase("a"); };
  h.table->insert_or_assign("a", probe);
  h.start_run();

  probe.state->early.request_stop();  // The process decides to finish.
  REQUIRE(probe.state->returned.wait());
  REQUIRE(eventually([&] { return !has_key(*h.sup, "a"); }));

  h.restart_pass();
  CHECK(probe.state->entered.count() == 1);
  CHECK_FALSE(has_key(*h.sup, "a"));
  REQUIRE(h.finish() == nullptr);
  CHECK(h.reports.entries().empty());  // A clean exit is not an error.
}

TEST_CASE("a process that fails is removed, reported, and restarted by the next pass",
          "[supervisor]") {
  Harness h;
  auto failing = Probe::with(Startup::ready, Shutdown::throw_error);
  failing.state->use_early = true;
  h.table->insert_or_assign("a", failing);
  h.start_run();

  failing.state->early.request_stop();
  REQUIRE(h.reports.wait(1));
  auto entries = h.reports.entries();
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].source == ErrorSource::exit);
  CHECK(entries[0].has_key);
  CHECK(entries[0].key == "a");
  CHECK(entries[0].message == "shutdown failed");
  // The user's own exception, intact.
  CHECK_THROWS_AS(std::rethrow_exception(entries[0].error), std::runtime_error);
  CHECK_FALSE(has_key(*h.sup, "a"));  // Removed before it was reported.

  auto healthy = Probe::with(Startup::ready);
  h.table->insert_or_assign("a", healthy);
  h.restart_pass();
  REQUIRE(healthy.state->readied.wait());
  REQUIRE(eventually([&] { return h.get_code("a") == std::error_code{}; }));
  REQUIRE(h.finish() == nullptr);
}

// ---- Deadlines and tokens --------------------------------------------------------------------

TEST_CASE("the stop deadline forces a runnable that ignores the graceful stop", "[supervisor]") {
  Harness h;
  auto probe = Probe::with(Startup::ready, Shutdown::ignore_stop);
  h.table->insert_or_assign("a", probe);
  h.start_run();

  SECTION("a duration") { CHECK(h.stop_code("a", 1ms) == errc::deadline_exceeded); }
  SECTION("a time point already passed") {
    CHECK(h.stop_code("a", std::chrono::steady_clock::now()) == errc::deadline_exceeded);
  }
  SECTION("a token") {
    std::stop_source source;
    source.request_stop();
    CHECK(h.stop_code("a", source.get_token()) == errc::canceled);
  }
  // Forced, and stop waited until run had returned.
  CHECK(probe.state->force_seen);
  CHECK(probe.state->returned.count() == 1);
  CHECK_FALSE(has_key(*h.sup, "a"));
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("the start deadline and token cut a hanging startup short", "[supervisor]") {
  Harness h;
  h.start_run();
  auto probe = Probe::with(Startup::hang);
  h.table->insert_or_assign("a", probe);

  SECTION("deadline") { CHECK(h.start_code("a", 1ms) == errc::deadline_exceeded); }
  SECTION("token, requested while the start waits") {
    std::stop_source source;
    std::error_code code;
    test::Background starter([&] { code = h.start_code("a", source.get_token()); });
    REQUIRE(probe.state->entered.wait());
    source.request_stop();
    REQUIRE(starter.join() == nullptr);
    CHECK(code == errc::canceled);
  }
  CHECK(probe.state->force_seen);
  CHECK(probe.state->returned.count() == 1);  // start waited until run had returned.
  CHECK_FALSE(has_key(*h.sup, "a"));          // The key is free again...
  h.table->insert_or_assign("a", Probe::with(Startup::ready));
  CHECK(h.start_code("a") == std::error_code{});  // ...for the next start.
  REQUIRE(h.finish() == nullptr);
  CHECK(h.reports.entries().empty());  // The caller got the error: nothing to report.
}

// ---- Exceptions from the runnable ------------------------------------------------------------

TEST_CASE("exceptions from a runnable reach the caller or the hook intact", "[supervisor]") {
  Harness h;
  h.start_run();

  SECTION("during init: start rethrows, the key is free") {
    h.table->insert_or_assign("a", Probe::with(Startup::throw_error));
    CHECK_THROWS_AS(h.sup->start("a"), std::runtime_error);
    CHECK_FALSE(has_key(*h.sup, "a"));
    h.table->insert_or_assign("a", Probe::with(Startup::exit_early));
    CHECK(h.start_code("a") == errc::exited_before_ready);
    CHECK_FALSE(has_key(*h.sup, "a"));
  }
  SECTION("during graceful shutdown: stop rethrows") {
    h.table->insert_or_assign("a", Probe::with(Startup::ready, Shutdown::throw_error));
    REQUIRE(h.start_code("a") == std::error_code{});
    try {
      h.sup->stop("a");
      FAIL("stop did not rethrow");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()) == "shutdown failed");
    }
  }
  SECTION("during a background start: reported with its key") {
    h.table->insert_or_assign("a", Probe::with(Startup::throw_error));
    h.restart_pass();
    REQUIRE(h.reports.wait(1));
    auto entries = h.reports.entries();
    CHECK(entries[0].source == ErrorSource::start);
    CHECK(entries[0].key == "a");
    CHECK(entries[0].message == "init failed");
  }
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("an exception during run's shutdown reaches the hook", "[supervisor]") {
  Harness h;
  h.table->insert_or_assign("a", Probe::with(Startup::ready, Shutdown::throw_error));
  h.start_run();
  REQUIRE(h.finish() == nullptr);
  auto entries = h.reports.entries();
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].source == ErrorSource::shutdown);
  CHECK(entries[0].key == "a");
  CHECK(entries[0].message == "shutdown failed");
}

TEST_CASE("the callback's exception is rethrown by run after shutdown", "[supervisor]") {
  Harness h;
  auto probe = Probe::with(Startup::ready);
  h.table->insert_or_assign("a", probe);
  CHECK_THROWS_AS(h.sup->run([] { throw std::logic_error("callback"); }), std::logic_error);
  CHECK(probe.state->returned.count() == 1);
  // And a returned error code becomes run's outcome.
  std::error_code ec;
  h.sup->run(
      {}, [] { return make_error_code(errc::canceled); }, ec);
  CHECK(ec == errc::canceled);
}

// ---- Tables that fail ------------------------------------------------------------------------

namespace {

/// A table whose every operation can be told to throw.
struct FaultyTable {
  struct Faults {
    bool get = false;
    bool iterate = false;
    int next_throws_at = -1;  // the row index whose next() throws
    int bad_row = -1;         // the row index whose get() throws
    bool close = false;
    std::atomic<int> closes{0};
  };
  std::shared_ptr<Faults> faults = std::make_shared<Faults>();
  std::vector<std::pair<std::string, Probe>> rows;

  struct Cursor {
    std::shared_ptr<Faults> faults;
    std::vector<std::pair<std::string, Probe>> rows;
    int at = -1;
    bool next() {
      ++at;
      if (at == faults->next_throws_at) {
        throw std::runtime_error("cursor broke");
      }
      return at < static_cast<int>(rows.size());
    }
    std::pair<std::string, Probe> get() {
      if (at == faults->bad_row) {
        throw std::runtime_error("bad row");
      }
      return rows[static_cast<std::size_t>(at)];
    }
    void close() {
      ++faults->closes;
      if (faults->close) {
        throw std::runtime_error("close failed");
      }
    }
  };

  std::optional<Probe> get(const std::string& key) {
    if (faults->get) {
      throw std::runtime_error("get failed");
    }
    for (auto& [k, p] : rows) {
      if (k == key) {
        return p;
      }
    }
    return std::nullopt;
  }
  Cursor iterate() {
    if (faults->iterate) {
      throw std::runtime_error("iterate failed");
    }
    return Cursor{faults, rows, -1};
  }
};

}  // namespace

TEST_CASE("a table that throws is reported, and nothing else stops", "[supervisor]") {
  auto clock = std::make_shared<supervisor::ManualClock>();
  test::Reports<std::string> reports;
  FaultyTable table;
  std::vector<Probe> probes(3, Probe{});
  for (int i = 0; i < 3; ++i) {
    probes[static_cast<std::size_t>(i)] = Probe::with(Startup::ready);
    table.rows.emplace_back("k" + std::to_string(i), probes[static_cast<std::size_t>(i)]);
  }
  auto faults = table.faults;
  supervisor::Options<std::string> options;
  options.clock = clock;
  options.on_error = reports.hook();
  Sup sup(table, options);

  std::vector<std::string> keys_seen;
  std::error_code start_code;
  std::string get_failure;

  SECTION("get throws: start rethrows intact and frees the key") {
    faults->get = true;
    sup.run([&] {
      try {
        (void)sup.start("other");
      } catch (const std::runtime_error& e) {
        get_failure = e.what();
      }
      faults->get = false;
      (void)sup.start("other", start_code);
    });
    CHECK(get_failure == "get failed");
    CHECK(start_code == errc::not_in_table);  // Freed: the second start reached the table.
    CHECK(reports.entries().empty());
  }
  SECTION("iterate throws") {
    faults->iterate = true;
    sup.run([&] { keys_seen = sup.keys(); });
    CHECK(keys_seen.empty());
    CHECK(reports.count(ErrorSource::iterate) == 1);
    CHECK(faults->closes == 0);  // No cursor, nothing to close.
  }
  SECTION("next throws mid-way: earlier rows start, the cursor is closed") {
    faults->next_throws_at = 1;
    sup.run([&] { keys_seen = sup.keys(); });
    CHECK(keys_seen == std::vector<std::string>{"k0"});
    CHECK(reports.count(ErrorSource::iterate) == 1);
    CHECK(faults->closes == 1);
  }
  SECTION("one bad row is skipped") {
    faults->bad_row = 1;
    sup.run([&] { keys_seen = sup.keys(); });
    std::sort(keys_seen.begin(), keys_seen.end());
    CHECK(keys_seen == std::vector<std::string>{"k0", "k2"});
    REQUIRE(reports.count(ErrorSource::row) == 1);
    CHECK(reports.entries()[0].message == "bad row");
    CHECK_FALSE(reports.entries()[0].has_key);
    CHECK(faults->closes == 1);
  }
  SECTION("close throws") {
    faults->close = true;
    sup.run([&] { keys_seen = sup.keys(); });
    CHECK(keys_seen.size() == 3);
    CHECK(reports.count(ErrorSource::close) == 1);
  }
}

// ---- run -------------------------------------------------------------------------------------

TEST_CASE("two concurrent runs serialise, and a waiting run can be canceled", "[supervisor]") {
  Harness h;
  h.start_run();

  std::stop_source give_up;
  std::error_code second_code;
  test::Background second([&] {
    h.sup->run(
        {give_up.get_token()}, [] {}, second_code);
  });
  test::Event third_in_callback;
  test::Background third([&] { h.sup->run([&] { third_in_callback.notify(); }); });

  give_up.request_stop();
  REQUIRE(second.join() == nullptr);
  CHECK(second_code == errc::canceled);
  CHECK(third_in_callback.count() == 0);  // Still waiting for the first run.

  REQUIRE(h.finish() == nullptr);
  REQUIRE(third_in_callback.wait());
  REQUIRE(third.join() == nullptr);
}

TEST_CASE("run's deadline forces every process and ends the callback's wait", "[supervisor]") {
  Harness h;
  auto probe = Probe::with(Startup::ready, Shutdown::ignore_stop);
  h.table->insert_or_assign("a", probe);
  h.sup->run(std::chrono::steady_clock::now(), [](std::stop_token stopping) {
    Probe::wait_for(stopping);  // Requested once the deadline passes.
  });
  CHECK(probe.state->force_seen);
  CHECK(probe.state->returned.count() == 1);
}

TEST_CASE("calls from inside a runnable", "[supervisor]") {
  Harness h;
  auto self = Probe::with(Startup::ready);
  std::error_code self_stop, other_stop, nested_run, other_start;
  Sup* sup = h.sup.get();
  self.state->on_enter = [&, sup] {
    self_stop = [&] {
      std::error_code ec;
      sup->stop("self", ec);
      return ec;
    }();
    other_start = [&] {
      std::error_code ec;
      (void)sup->start("other", ec);
      return ec;
    }();
    other_stop = [&] {
      std::error_code ec;
      sup->stop("other", ec);
      return ec;
    }();
    sup->run(
        {}, [] {}, nested_run);
  };
  auto other = Probe::with(Startup::ready);
  h.table->insert_or_assign("other", other);
  h.start_run();
  h.table->insert_or_assign("self", self);
  REQUIRE(h.start_code("self") == std::error_code{});

  CHECK(self_stop == std::errc::resource_deadlock_would_occur);
  CHECK(nested_run == std::errc::resource_deadlock_would_occur);
  CHECK(other_start == errc::process_exists);  // "other" came up with the initial pass.
  CHECK(other_stop == std::error_code{});      // Stopping another key works.
  CHECK(other.state->returned.count() == 1);
  CHECK(h.get_code("self") == std::error_code{});  // The self-stop had no effect.
  REQUIRE(h.finish() == nullptr);
}

TEST_CASE("supervisors nest: one runs as a process of another", "[supervisor]") {
  using Inner = supervisor::Supervisor<std::string, Probe>;
  using InnerPtr = std::shared_ptr<Inner>;
  using Outer = supervisor::Supervisor<std::string, InnerPtr>;
  static_assert(supervisor::Runnable<InnerPtr>);

  auto clock = std::make_shared<supervisor::ManualClock>();
  supervisor::Options<std::string> options;
  options.clock = clock;
  auto inner_table = std::make_shared<Table>();
  auto worker = Probe::with(Startup::ready);
  inner_table->insert_or_assign("worker", worker);
  auto inner = std::make_shared<Inner>(inner_table, options);

  auto outer_table = std::make_shared<supervisor::MapTable<std::string, InnerPtr>>();
  outer_table->insert_or_assign("tenant", inner);
  Outer outer(outer_table, options);

  std::error_code tenant_state, worker_state, after_stop;
  outer.run([&] {
    (void)outer.get("tenant", tenant_state);
    (void)outer.get("tenant")->get("worker", worker_state);
    outer_table->erase("tenant");
    outer.stop("tenant");
    after_stop = worker.state->returned.count() == 1 ? std::error_code{}
                                                     : make_error_code(errc::invalid_state);
  });
  CHECK(tenant_state == std::error_code{});
  CHECK(worker_state == std::error_code{});  // Ready inside before the outer saw it ready.
  CHECK(after_stop == std::error_code{});    // Stopping the tenant stopped its workers.
  CHECK_FALSE(worker.state->force_seen);     // Gracefully.
}

TEST_CASE("a clock that throws ends the restart loop, and nothing else", "[supervisor]") {
  // Lets the initial wait through, then fails every wait of the restart loop.
  struct BrokenClock {
    std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
    [[nodiscard]] std::chrono::steady_clock::time_point now() const {
      return std::chrono::steady_clock::time_point{};
    }
    bool wait_until(std::chrono::steady_clock::time_point, const std::stop_token&) const {
      if (++*calls > 1) {
        throw std::runtime_error("clock broke");
      }
      return true;
    }
  };
  auto table = std::make_shared<Table>();
  auto probe = Probe::with(Startup::hang_then_ready);  // Holds the initial wait on the clock.
  table->insert_or_assign("a", probe);
  test::Reports<std::string> reports;
  supervisor::Options<std::string> options;
  options.clock = BrokenClock{};
  options.on_error = reports.hook();
  Sup sup(table, options);
  std::error_code got;
  sup.run([&] {
    REQUIRE(reports.wait(1));  // Main thread: run's callback runs on the caller's thread.
    probe.state->release.notify();
    REQUIRE(probe.state->readied.wait());
  });
  auto entries = reports.entries();
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].source == ErrorSource::clock);
  CHECK(entries[0].message == "clock broke");
  CHECK(probe.state->returned.count() == 1);
}
