// Operations: run's shutdown deadline (Options::shutdown_timeout) and its report
// (Options::on_shutdown), on the manual clock.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "catch_shim.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::EventKind;
using test::Probe;
using test::Shutdown;
using test::Startup;

namespace {

using Table = supervisor::MapTable<std::string, Probe>;
using Sup = supervisor::Supervisor<std::string, Probe>;

/// Records every event (kind and key) and the shutdown report.
struct Recorder {
  mutable std::mutex mutex;
  std::vector<std::pair<EventKind, std::string>> events;
  std::optional<supervisor::ShutdownReport<std::string>> report;
  test::Event stop_requested;

  std::vector<std::pair<EventKind, std::string>> all() const {
    std::lock_guard lock(mutex);
    return events;
  }
  std::vector<std::string> keys_of(EventKind kind) const {
    std::lock_guard lock(mutex);
    std::vector<std::string> keys;
    for (const auto& [k, key] : events) {
      if (k == kind) {
        keys.push_back(key);
      }
    }
    return keys;
  }
};

/// A supervisor on a manual clock that records events and the shutdown report, with `run` on a
/// thread of its own whose callback lasts until `finish()`.
struct Rig {
  std::shared_ptr<supervisor::ManualClock> clock = std::make_shared<supervisor::ManualClock>();
  std::shared_ptr<Table> table = std::make_shared<Table>();
  Recorder recorder;
  std::unique_ptr<Sup> sup;
  std::stop_source cancel_source;
  std::stop_source finish_source;
  test::Event in_callback;
  std::unique_ptr<test::Background> runner;

  explicit Rig(std::chrono::steady_clock::duration shutdown_timeout) {
    supervisor::Options<std::string> o;
    o.clock = clock;
    o.on_error = {};
    o.shutdown_timeout = shutdown_timeout;
    o.on_event = [this](const supervisor::Event<std::string>& e) {
      {
        std::lock_guard lock(recorder.mutex);
        recorder.events.emplace_back(e.kind, e.key);
      }
      if (e.kind == EventKind::stop_requested) {
        recorder.stop_requested.notify();
      }
    };
    o.on_shutdown = [this](const supervisor::ShutdownReport<std::string>& r) {
      std::lock_guard lock(recorder.mutex);
      recorder.report = r;
    };
    sup = std::make_unique<Sup>(table, o);
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;
  ~Rig() {
    cancel_source.request_stop();  // a failed REQUIRE must not leave `run` hanging
    runner.reset();
  }

  void start_run() {
    runner = std::make_unique<test::Background>([this] {
      sup->run(supervisor::Cancel(cancel_source.get_token()), [this](std::stop_token stopping) {
        in_callback.notify();
        test::wait_until_either(stopping, finish_source.get_token());
      });
    });
    REQUIRE(in_callback.wait());
  }

  supervisor::ShutdownReport<std::string> report() const {
    std::lock_guard lock(recorder.mutex);
    REQUIRE(recorder.report.has_value());
    return *recorder.report;
  }
};

}  // namespace

TEST_CASE("run's shutdown forces only what outlives shutdown_timeout, and reports it",
          "[operations][shutdown]") {
  Rig rig(10s);
  auto polite = Probe::with(Startup::ready, Shutdown::clean);
  auto stubborn = Probe::with(Startup::ready, Shutdown::ignore_stop);
  rig.table->insert_or_assign("polite", polite);
  rig.table->insert_or_assign("stubborn", stubborn);
  rig.start_run();
  REQUIRE(polite.state->readied.wait());
  REQUIRE(stubborn.state->readied.wait());

  // The restart loop sleeps on the clock until its interval; the shutdown's wait will be the
  // next sleep armed (the loop is joined before the shutdown begins).
  REQUIRE(rig.clock->wait_for_sleepers(1));
  const auto arms = rig.clock->arms();
  const auto began = rig.clock->now();

  rig.finish_source.request_stop();  // the callback returns: graceful shutdown
  REQUIRE(polite.state->returned.wait());
  CHECK_FALSE(polite.state->force_seen);
  // Its record leaves the map once its watchdog is done: only then is it out of the shutdown's
  // reach.
  REQUIRE(
      test::eventually([&] { return rig.sup->keys() == std::vector<std::string>{"stubborn"}; }));
  REQUIRE(rig.clock->wait_for_arms(arms + 1));  // the shutdown waits on the clock
  REQUIRE(rig.clock->wait_for_sleepers(1));

  // Just short of the deadline: the wait goes on, and nothing is forced.
  rig.clock->advance(10s - 1ms);
  CHECK(rig.clock->sleepers() == 1);
  CHECK_FALSE(rig.runner->finished());
  CHECK_FALSE(stubborn.state->force_seen);
  CHECK(stubborn.state->returned.count() == 0);
  CHECK(rig.recorder.keys_of(EventKind::forced).empty());

  // Past it: the stubborn one is forced, and run returns.
  rig.clock->advance(2ms);
  REQUIRE(rig.runner->wait());
  REQUIRE(rig.runner->join() == nullptr);
  CHECK(stubborn.state->force_seen);
  CHECK(stubborn.state->returned.count() == 1);

  const auto report = rig.report();
  REQUIRE(report.forced.size() == 1);
  CHECK(report.forced[0].key == "stubborn");
  CHECK(report.forced[0].took >= 10s);
  CHECK(report.forced_count == 1);
  CHECK(report.stopped == 2);
  CHECK(report.took >= 10s);
  CHECK_FALSE(report.incomplete);
  CHECK(rig.clock->now() - began == 10s + 1ms);

  CHECK(rig.recorder.keys_of(EventKind::forced) == std::vector<std::string>{"stubborn"});
  auto requested = rig.recorder.keys_of(EventKind::stop_requested);
  std::sort(requested.begin(), requested.end());
  CHECK(requested == std::vector<std::string>{"polite", "stubborn"});
  auto stopped = rig.recorder.keys_of(EventKind::stopped);
  std::sort(stopped.begin(), stopped.end());
  CHECK(stopped == std::vector<std::string>{"polite", "stubborn"});
}

TEST_CASE("run's shutdown does not wait on the clock when every process stops gracefully",
          "[operations][shutdown]") {
  Rig rig(10s);
  auto a = Probe::with(Startup::ready, Shutdown::clean);
  auto lingering = Probe::with(Startup::ready, Shutdown::clean);
  test::Event let_go;
  lingering.state->after_ready = [&let_go] { (void)let_go.wait(); };  // stops when told
  rig.table->insert_or_assign("a", a);
  rig.table->insert_or_assign("lingering", lingering);
  rig.start_run();
  REQUIRE(a.state->readied.wait());
  REQUIRE(lingering.state->readied.wait());
  REQUIRE(rig.clock->wait_for_sleepers(1));  // the restart loop
  const auto arms = rig.clock->arms();
  const auto started = rig.clock->now();

  rig.finish_source.request_stop();
  REQUIRE(rig.clock->wait_for_arms(arms + 1));  // the shutdown waits on the clock...
  REQUIRE(rig.clock->wait_for_sleepers(1));
  CHECK_FALSE(rig.runner->finished());
  let_go.notify();              // ...until the last process has stopped
  REQUIRE(rig.runner->wait());  // without the clock ever being advanced
  REQUIRE(rig.runner->join() == nullptr);
  CHECK(rig.clock->now() == started);
  CHECK(rig.clock->sleepers() == 0);
  CHECK_FALSE(a.state->force_seen);
  CHECK_FALSE(lingering.state->force_seen);

  const auto report = rig.report();
  CHECK(report.forced.empty());
  CHECK(report.forced_count == 0);
  CHECK(report.stopped == 2);
  CHECK(report.took == std::chrono::steady_clock::duration::zero());
  CHECK(rig.recorder.keys_of(EventKind::forced).empty());
}

TEST_CASE("with the default shutdown_timeout the shutdown never forces anything itself",
          "[operations][shutdown]") {
  SECTION("every process stops gracefully") {
    Rig rig(std::chrono::steady_clock::duration::max());
    auto a = Probe::with(Startup::ready, Shutdown::clean);
    rig.table->insert_or_assign("a", a);
    rig.start_run();
    REQUIRE(a.state->readied.wait());
    rig.finish_source.request_stop();
    REQUIRE(rig.runner->wait());
    REQUIRE(rig.runner->join() == nullptr);
    const auto report = rig.report();
    CHECK(report.forced.empty());
    CHECK(report.forced_count == 0);
    CHECK(report.stopped == 1);
    CHECK(rig.recorder.keys_of(EventKind::forced).empty());
  }
  SECTION("one ignores the graceful stop: it ends only when run is canceled") {
    Rig rig(std::chrono::steady_clock::duration::max());
    auto polite = Probe::with(Startup::ready, Shutdown::clean);
    auto stubborn = Probe::with(Startup::ready, Shutdown::ignore_stop);
    rig.table->insert_or_assign("polite", polite);
    rig.table->insert_or_assign("stubborn", stubborn);
    rig.start_run();
    REQUIRE(polite.state->readied.wait());
    REQUIRE(stubborn.state->readied.wait());
    REQUIRE(rig.clock->wait_for_sleepers(1));  // the restart loop
    const auto arms = rig.clock->arms();

    rig.finish_source.request_stop();
    REQUIRE(rig.recorder.stop_requested.wait(2));
    REQUIRE(polite.state->returned.wait());
    // However far the clock moves, the shutdown forces nothing.
    rig.clock->advance(std::chrono::hours(24 * 365));
    CHECK_FALSE(stubborn.state->force_seen);
    CHECK(stubborn.state->returned.count() == 0);
    CHECK_FALSE(rig.runner->finished());

    rig.cancel_source.request_stop();  // run's own cancel forces it
    REQUIRE(rig.runner->wait());
    REQUIRE(rig.runner->join() == nullptr);
    CHECK(stubborn.state->force_seen);
    CHECK(rig.clock->arms() == arms);  // the shutdown never waited on the clock
    const auto report = rig.report();
    CHECK(report.forced.empty());
    CHECK(report.forced_count == 0);
    CHECK(report.stopped == 2);
    CHECK(rig.recorder.keys_of(EventKind::forced).empty());
  }
}
