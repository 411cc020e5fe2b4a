#pragma once

// The harness of the Supervisor tests (supervisor_class_*_test.cpp): a supervisor of `Probe`s on
// a manual clock, with `run` on a thread of its own.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <utility>

#include "catch_shim.hpp"
#include "support.hpp"

namespace test {

using ProbeTable = supervisor::MapTable<std::string, Probe>;
using ProbeSupervisor = supervisor::Supervisor<std::string, Probe>;

/// A supervisor on a manual clock with a recording error hook, and `run` on a thread of its own
/// whose callback waits until the test calls `finish()` (graceful) or `cancel()` (forced).
struct Harness {
  std::shared_ptr<supervisor::ManualClock> clock = std::make_shared<supervisor::ManualClock>();
  std::shared_ptr<ProbeTable> table = std::make_shared<ProbeTable>();
  Reports<std::string> reports;
  std::unique_ptr<ProbeSupervisor> sup;
  std::stop_source cancel_source;
  std::stop_source finish_source;
  Event in_callback;
  std::unique_ptr<Background> runner;

  Harness() { sup = std::make_unique<ProbeSupervisor>(table, options()); }
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
    runner = std::make_unique<Background>([this] {
      sup->run(cancel_source.get_token(), [this](std::stop_token stopping) {
        in_callback.notify();
        test::wait_until_either(stopping, finish_source.get_token());
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
    clock->advance(std::chrono::minutes(1));
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

inline bool has_key(const ProbeSupervisor& sup, const std::string& key) {
  auto keys = sup.keys();
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

/// Three processes held in three states, at known times on the harness's manual clock from `t0`
/// (its time when made, with `run` started): "runs" ready at t0 + 1s; "stops" ready at t0 + 1s
/// and asked to stop at t0 + 3s, which it ignores until forced; "starts" launched at t0 + 2s and
/// held before ready. The clock is then at t0 + 4s. `release()` lets "starts" become ready and
/// forces "stops", and waits for both callers (`start_ec`, `stop_ec` say what they heard).
struct ThreeStates {
  Harness& h;
  std::chrono::steady_clock::time_point t0 = h.clock->now();
  Probe runs = Probe::with(Startup::ready);
  Probe starts = Probe::with(Startup::hang_then_ready);
  Probe stops = Probe::with(Startup::ready, Shutdown::ignore_stop);
  std::error_code start_ec;
  std::error_code stop_ec;
  std::stop_source force;
  std::optional<Background> starter;
  std::optional<Background> stopper;

  explicit ThreeStates(Harness& harness) : h(harness) {
    using namespace std::chrono_literals;
    h.table->insert_or_assign("runs", runs);
    h.table->insert_or_assign("starts", starts);
    h.table->insert_or_assign("stops", stops);
    h.clock->advance(1s);
    REQUIRE(h.start_code("runs") == std::error_code{});
    REQUIRE(h.start_code("stops") == std::error_code{});
    h.clock->advance(1s);
    starter.emplace([this] { start_ec = h.start_code("starts"); });  // held before ready
    REQUIRE(starts.state->entered.wait());
    h.clock->advance(1s);
    // A stop from another thread, in flight: "stops" ignores its graceful stop until forced.
    stopper.emplace([this] { stop_ec = h.stop_code("stops", {force.get_token()}); });
    REQUIRE(stops.state->ready_returned.wait());  // its graceful stop was requested
    h.clock->advance(1s);
  }

  void release() {
    starts.state->release.notify();
    REQUIRE(starter->join() == nullptr);
    force.request_stop();
    REQUIRE(stopper->join() == nullptr);
  }
};

}  // namespace test
