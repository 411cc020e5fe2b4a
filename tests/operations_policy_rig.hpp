#pragma once

// The rig of the restart-policy tests (operations_policy_test.cpp): a runnable whose lives follow
// a script, and a supervisor of them on a manual clock with its events and reports recorded and
// `run` on a thread of its own. Only records and waits (bounded); the test asserts.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>

#include "catch_shim.hpp"
#include "operations_event_log.hpp"
#include "support.hpp"

namespace test::policy {

using namespace std::chrono_literals;

/// What each life of a worker does; `life` counts from 1. Set before the worker can run.
struct Script {
  std::function<std::error_code(int life, supervisor::Ready& ready)> body;
  std::atomic<int> lives{0};
  test::Event entered;
};

/// A runnable whose lives follow its script. Rows compare equal when they share the script and
/// the version: a new version is a changed row.
struct Worker {
  std::shared_ptr<Script> script = std::make_shared<Script>();
  int version = 1;

  bool operator==(const Worker& other) const {
    return script == other.script && version == other.version;
  }
  std::error_code run(const std::stop_token& /*force*/, supervisor::Ready& ready) const {
    const int life = ++script->lives;
    script->entered.notify();
    return script->body(life, ready);
  }
};

/// Fails every life before `ready`.
inline Worker failing() {
  Worker worker;
  worker.script->body = [](int, supervisor::Ready&) {
    return make_error_code(std::errc::io_error);
  };
  return worker;
}

/// Ready, until stopped.
inline Worker steady() {
  Worker worker;
  worker.script->body = [](int, supervisor::Ready& ready) {
    ready();
    return std::error_code{};
  };
  return worker;
}

using Table = supervisor::MapTable<std::string, Worker>;
using Sup = supervisor::Supervisor<std::string, Worker>;
using Log = test::EventLog<std::string>;

/// A supervisor of workers on a manual clock, its events and reports recorded, `run` on a
/// thread of its own until `finish()`. Every wait is bounded: a broken test fails, never hangs.
struct Rig {
  std::shared_ptr<supervisor::ManualClock> clock = std::make_shared<supervisor::ManualClock>();
  std::shared_ptr<Table> table = std::make_shared<Table>();
  Log log;
  test::Reports<std::string> reports;
  supervisor::Options<std::string> options;
  std::unique_ptr<Sup> sup;
  std::stop_source finish_source;
  std::stop_source cancel_source;
  test::Event in_callback;
  std::unique_ptr<test::Background> runner;

  explicit Rig(const supervisor::RestartPolicy& policy, supervisor::Escalation escalation = {}) {
    options.clock = clock;
    options.on_error = reports.hook();
    options.on_event = log.hook();
    options.restart = policy;
    options.escalation = escalation;
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;
  ~Rig() {
    cancel_source.request_stop();  // A failed REQUIRE leaves `run` going.
    runner.reset();
  }

  /// Makes the supervisor and starts `run`; returns with the loop asleep on the clock.
  void start_run() {
    sup = std::make_unique<Sup>(table, options);
    runner = std::make_unique<test::Background>([this] {
      sup->run(cancel_source.get_token(), [this](std::stop_token stopping) {
        in_callback.notify();
        test::wait_until_either(stopping, finish_source.get_token());
      });
    });
    REQUIRE(in_callback.wait());
    REQUIRE(loop_waits_on_clock());
  }

  /// Whether the restart loop is (still, or again) blocked on the clock.
  bool loop_waits_on_clock() { return clock->wait_for_sleepers(1); }

  /// Lets the loop's periodic pass run (one restart interval, a minute), and waits until the
  /// loop has armed its next wait.
  void restart_pass() {
    wait_for_exits_to_leave();
    REQUIRE(loop_waits_on_clock());
    const auto arms = clock->arms();
    clock->advance(1min);
    REQUIRE(clock->wait_for_arms(arms + 1));
  }

  /// Waits until every process that has told its exit has left the map. Its last events come
  /// just before its record leaves (so that the next process's events follow them), and a pass
  /// that still finds the record skips the key.
  void wait_for_exits_to_leave() {
    using supervisor::EventKind;
    REQUIRE(test::eventually([&] {
      for (const auto& key : sup->keys()) {
        const auto events = log.of(key);
        if (events.empty()) {
          continue;
        }
        switch (events.back().kind) {
          case EventKind::exited:
          case EventKind::failed:
          case EventKind::restart_scheduled:
          case EventKind::given_up:
          case EventKind::stopped:
          case EventKind::escalated:
            return false;
          default:
            break;
        }
      }
      return true;
    }));
  }

  std::exception_ptr finish() {
    finish_source.request_stop();
    return runner->join();
  }

  /// What an explicit start said: its code, or the code of what it threw. Waits first until
  /// the key's last process is gone (its record outlives its last event by a moment).
  std::error_code start(const std::string& key) {
    REQUIRE(test::eventually([&] {
      const auto keys = sup->keys();
      return std::find(keys.begin(), keys.end(), key) == keys.end();
    }));
    return test::code_of([&] { (void)sup->start(key); });
  }

  /// The snapshot's entry of `key`.
  std::optional<supervisor::KeyStatus<std::string>> status(const std::string& key) const {
    for (auto& entry : sup->snapshot().keys) {
      if (entry.key == key) {
        return entry;
      }
    }
    return std::nullopt;
  }
  std::uint32_t restarts(const std::string& key) const {
    const auto found = status(key);
    return found ? found->restarts : 0;
  }

  /// How many events of `kind` `key` has had.
  int count(const std::string& key, supervisor::EventKind kind) const {
    int n = 0;
    for (const auto& e : log.of(key)) {
      n += e.kind == kind ? 1 : 0;
    }
    return n;
  }
  /// Waits until `key` has had `n` events of `kind`.
  bool wait_for(const std::string& key, supervisor::EventKind kind, int n) {
    return test::eventually([&] { return count(key, kind) >= n; });
  }
};

}  // namespace test::policy
