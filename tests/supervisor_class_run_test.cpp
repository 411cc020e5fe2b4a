// Supervisor::run: concurrent runs, its deadline, calls from inside a runnable, supervisors that
// nest, a clock that throws, and threads reused across processes.

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include "catch_shim.hpp"
#include "supervisor_class_harness.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ErrorSource;
using test::Harness;
using test::Probe;
using test::Shutdown;
using test::Startup;
using Table = test::ProbeTable;
using Sup = test::ProbeSupervisor;

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

TEST_CASE("a supervisor that reuses threads and spins keeps its guarantees", "[supervisor]") {
  auto clock = std::make_shared<supervisor::ManualClock>();
  auto table = std::make_shared<supervisor::MapTable<std::string, test::Probe>>();
  supervisor::Options<std::string> options;
  options.clock = clock;
  options.reuse_threads = true;
  options.handoff_spin = 20us;
  options.thread_idle_timeout = test::patience;
  supervisor::Supervisor<std::string, test::Probe> sup(table, options);

  std::vector<test::Probe> probes;
  std::error_code first_start, second_start, stop_code;
  sup.run([&] {
    for (int i = 0; i < 50; ++i) {
      auto probe = test::Probe::with(test::Startup::ready);
      probes.push_back(probe);
      table->insert_or_assign("k", probe);
      (void)sup.start("k", first_start);
      (void)sup.start("k", second_start);
      sup.stop("k", stop_code);
      if (first_start || second_start != supervisor::errc::process_exists || stop_code) {
        return;
      }
    }
  });
  CHECK(first_start == std::error_code{});
  CHECK(second_start == supervisor::errc::process_exists);
  CHECK(stop_code == std::error_code{});
  CHECK(probes.size() == 50);
  for (auto& probe : probes) {
    CHECK(probe.state->returned.count() == 1);
  }
}
