// Defect 9 of the failure-path review: a machine out of threads. The library's thread-creation
// seam (SUPERVISOR_FAULT_INJECTION) throws what `std::thread` throws past the kernel's limit, so
// the limit is simulated exactly: the first `allowed` creations succeed, the rest fail.

#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <system_error>

#include "../catch_shim.hpp"
#include "../support.hpp"

using namespace std::chrono_literals;
using supervisor::ErrorSource;
using test::Probe;
using test::Startup;

namespace {

std::atomic<bool> g_limited{false};
std::atomic<int> g_threads_left{0};

void limited_threads(supervisor::detail::FaultPoint point) {
  if (point != supervisor::detail::FaultPoint::thread_create) {
    return;  // a recovery the library tells of (`schedule_recovered`): the hook must not throw
  }
  if (g_limited.load() && g_threads_left.fetch_sub(1) <= 0) {
    throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                            "simulated thread limit");
  }
}

/// Installs the limit for one test, and restores whatever hook was there.
struct ThreadLimit {
  decltype(supervisor::detail::fault_hook.load()) saved = supervisor::detail::fault_hook.load();
  explicit ThreadLimit(int allowed) {
    g_threads_left = allowed;
    g_limited = true;
    supervisor::detail::fault_hook.store(&limited_threads);
  }
  ThreadLimit(const ThreadLimit&) = delete;
  ThreadLimit& operator=(const ThreadLimit&) = delete;
  ~ThreadLimit() {
    supervisor::detail::fault_hook.store(saved);
    g_limited = false;
  }
  static void lift() { g_limited = false; }
};

using Table = supervisor::MapTable<std::string, Probe>;
using Sup = supervisor::Supervisor<std::string, Probe>;

}  // namespace

TEST_CASE("out of threads: starts that get none fail alone, and run goes on", "[thread_limit]") {
  auto clock = std::make_shared<supervisor::ManualClock>();
  auto table = std::make_shared<Table>();
  std::vector<Probe> probes;
  for (int i = 0; i < 10; ++i) {
    probes.push_back(Probe::with(Startup::ready));
    table->insert_or_assign("k" + std::to_string(i), probes.back());
  }
  test::Reports<std::string> reports;
  supervisor::Options<std::string> options;
  options.clock = clock;
  options.on_error = reports.hook();
  Sup sup(table, options);

  // The restart loop's thread, then three processes: the machine has no more.
  const ThreadLimit limit(1 + 3);
  std::size_t running_in_callback = 0;
  sup.run([&] {
    running_in_callback = sup.keys().size();
    CHECK(reports.count(ErrorSource::start) == 7);
    for (const auto& entry : reports.entries()) {
      CHECK(entry.has_key);
      try {
        std::rethrow_exception(entry.error);
      } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::resource_unavailable_try_again);
      }
    }
    // Threads come back: the next pass starts the seven that failed.
    ThreadLimit::lift();
    REQUIRE(clock->wait_for_sleepers(1));
    clock->advance(1min);
    CHECK(test::eventually([&] { return sup.keys().size() == 10; }));
  });
  CHECK(running_in_callback == 3);
  for (const auto& probe : probes) {
    CHECK(probe.state->live == 0);
  }
}

TEST_CASE("out of threads before run starts anything: run fails and starts nothing",
          "[thread_limit]") {
  auto table = std::make_shared<Table>();
  auto probe = Probe::with(Startup::ready);
  table->insert_or_assign("a", probe);
  supervisor::Options<std::string> options;
  options.clock = std::make_shared<supervisor::ManualClock>();
  Sup sup(table, options);
  bool called = false;
  {
    const ThreadLimit none(0);  // Not even the restart loop's thread.
    CHECK(test::code_of([&] { sup.run([&] { called = true; }); }) ==
          std::errc::resource_unavailable_try_again);
  }
  CHECK_FALSE(called);
  CHECK(probe.state->entered.count() == 0);
  // With threads back, the same supervisor runs.
  sup.run([&] { CHECK(sup.keys().size() == 1); });
  CHECK(probe.state->returned.count() == 1);
}

TEST_CASE("out of threads: async_run throws what no thread gives, for every N, and leaves nothing",
          "[thread_limit]") {
  // The pool's threads first, outside the limit.
  supervisor::ThreadPool pool(1);
  // Creations in order: async_run's thread, run_until's grace timer, the restart loop, the
  // process. With N allowed, the (N+1)th fails; from N = 3 on, only the process's start fails,
  // which `run` reports and survives.
  for (int allowed = 0; allowed <= 4; ++allowed) {
    CAPTURE(allowed);
    auto table = std::make_shared<Table>();
    auto probe = Probe::with(Startup::ready);
    table->insert_or_assign("a", probe);
    test::Reports<std::string> reports;
    supervisor::Options<std::string> options;
    options.clock = std::make_shared<supervisor::ManualClock>();
    options.on_error = reports.hook();
    Sup sup(table, options);
    std::stop_source stop;
    stop.request_stop();  // restore, then shut down at once
    std::error_code code;
    std::exception_ptr failure;
    const auto finished = std::make_shared<test::Event>();
    {
      const ThreadLimit limit(allowed);
      supervisor::spawn(
          pool,
          [](Sup& s, std::stop_token token, supervisor::ExecutorRef on,
             std::error_code& out) -> supervisor::Task<> {
            out = co_await s.async_run(std::move(token), 1h, on);
          }(sup, stop.get_token(), pool, code),
          [&failure, finished](std::exception_ptr e) {
            failure = std::move(e);
            finished->notify();
          });
      REQUIRE(finished->wait());
    }
    if (allowed < 3) {
      REQUIRE(failure != nullptr);
      CHECK(test::code_of([&] { std::rethrow_exception(failure); }) ==
            std::errc::resource_unavailable_try_again);
      CHECK(probe.state->entered.count() == 0);
    } else {
      CHECK(failure == nullptr);
      CHECK(code == std::error_code{});
      CHECK(reports.count(ErrorSource::start) == (allowed == 3 ? 1 : 0));
      CHECK(probe.state->entered.count() == (allowed == 3 ? 0 : 1));
    }
    CHECK(probe.state->live == 0);
    CHECK(sup.keys().empty());
  }
}
