#pragma once

// The coroutine tests' shared parts: `Session`, a coroutine runnable that follows a `Script`,
// `Rig`, a supervisor of sessions with `run` on a thread of its own, and `PoolRig`, a rig on a
// pool the test owns.

#include <atomic>
#include <coroutine>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>

#include "catch_shim.hpp"
#include "operations_event_log.hpp"
#include "supervisor/supervisor.hpp"
#include "support.hpp"

namespace coroutine_test {

using namespace std::chrono_literals;
using supervisor::AsyncReady;
using supervisor::Task;

/// What every life of a `Session` does, shared by its copies.
struct Script {
  enum class Kind {
    steady,
    fail_before_ready,
    throw_before_ready,
    quit_before_ready,
    exit_after,
    never_ready,  // waits for force, then returns
    stubborn,     // ready; woken by a graceful stop, calls `after_graceful`, then waits for force
    signal_then_work,  // `ready.signal()`, calls `after_signal`, then `co_await ready`
    ready_twice,       // ready; once woken, ready again, then yields to the executor and returns
  };
  Kind kind = Kind::steady;
  std::atomic<int> lives{0};
  std::atomic<int> live{0};  // lives begun and not returned
  std::atomic<int> graceful_ends{0};
  test::Event ended;
  std::function<std::error_code()> inside;  // called inside the body, before ready, if set
  std::error_code inside_result;
  std::function<Task<std::error_code>()> inside_async;  // awaited inside the body, if set
  std::error_code inside_async_result;
  std::function<void()> after_graceful;
  std::function<void()> after_signal;
  /// Where `until_stopped` resumes the session; empty: `ready.executor()`, where it runs.
  supervisor::ExecutorRef executor;
  std::atomic<bool> resumed_on_own_executor{false};  // after a wait for force, on `ready`'s
  test::Event parked_for_force;  // a stubborn session has suspended, waiting for force
  std::atomic<int> forced_ends{0};
};

/// `co_await NoteParked{waiting, event}`: awaits `waiting`, and notifies `event` once the
/// coroutine has suspended in it (not if it went on at once).
struct NoteParked {
  supervisor::UntilStopped& waiting;
  test::Event& parked;
  [[nodiscard]] bool await_ready() const noexcept { return waiting.await_ready(); }
  bool await_suspend(std::coroutine_handle<> self) noexcept {
    test::Event& event = parked;  // this awaiter may be gone once `waiting` has the handle
    const bool suspended = waiting.await_suspend(self);
    if (suspended) {
      event.notify();
    }
    return suspended;
  }
  void await_resume() const noexcept {}
};

/// `co_await Yield{executor}`: schedules the coroutine again and suspends it.
struct Yield {
  supervisor::ExecutorRef executor;
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> self) const noexcept { executor.schedule(self); }
  void await_resume() const noexcept {}
};

/// A coroutine runnable whose lives follow its script.
struct Session {
  std::shared_ptr<Script> script = std::make_shared<Script>();

  Task<std::error_code> run(std::stop_token force, AsyncReady& ready) const {
    auto s = script;  // the frame's own reference: the record may be copied and gone
    ++s->lives;
    ++s->live;
    struct Leave {
      Script& s;
      ~Leave() {
        --s.live;
        s.ended.notify();
      }
    } leave{*s};
    if (s->inside) {
      s->inside_result = s->inside();
    }
    if (s->inside_async) {
      s->inside_async_result = co_await s->inside_async();
    }
    const supervisor::ExecutorRef here = s->executor ? s->executor : ready.executor();
    switch (s->kind) {
      case Script::Kind::fail_before_ready:
        co_return make_error_code(std::errc::io_error);
      case Script::Kind::throw_before_ready:
        throw std::runtime_error("no connection");
      case Script::Kind::quit_before_ready:
        co_return std::error_code{};
      case Script::Kind::exit_after:
        co_await ready(force);  // force only: returns at once if already requested
        co_return std::error_code{};
      case Script::Kind::never_ready:
        co_await supervisor::until_stopped(force, here);
        ++s->forced_ends;
        co_return std::error_code{};
      case Script::Kind::stubborn:
        co_await ready;
        if (!force.stop_requested()) {
          s->after_graceful();
          auto waiting = supervisor::until_stopped(force, here);
          co_await NoteParked{waiting, s->parked_for_force};
          s->resumed_on_own_executor = ready.executor().running_in_this_thread();
        }
        ++s->forced_ends;
        co_return std::error_code{};
      case Script::Kind::ready_twice:
        co_await ready;
        co_await ready;  // woken already: goes on at once, having marked the process ready again
        co_await Yield{here};
        co_return std::error_code{};
      case Script::Kind::signal_then_work:
        ready.signal();
        s->after_signal();
        break;
      case Script::Kind::steady:
        break;
    }
    co_await ready;
    if (!force.stop_requested()) {
      ++s->graceful_ends;
    }
    co_return std::error_code{};
  }
};

static_assert(supervisor::CoroutineRunnable<Session>);
static_assert(!supervisor::Runnable<Session>);
static_assert(supervisor::SupervisedRunnable<Session>);

using Table = supervisor::MapTable<std::string, Session>;
using Sup = supervisor::Supervisor<std::string, Session>;

/// A supervisor of sessions with `run` on a thread of its own until `finish()`.
struct Rig {
  std::shared_ptr<Table> table = std::make_shared<Table>();
  test::Reports<std::string> reports;
  test::EventLog<std::string> log;
  supervisor::Options<std::string> options;
  std::unique_ptr<Sup> sup;
  std::stop_source finish_source;
  test::Event in_callback;
  std::unique_ptr<test::Background> runner;

  Rig() {
    options.on_error = reports.hook();
    options.on_event = log.hook();
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;
  ~Rig() {
    finish_source.request_stop();
    runner.reset();
  }

  void start_run() {
    sup = std::make_unique<Sup>(table, options);
    runner = std::make_unique<test::Background>([this] {
      sup->run([this](const std::stop_token& stopping) {
        in_callback.notify();
        test::wait_until_either(stopping, finish_source.get_token());
      });
    });
    REQUIRE(in_callback.wait());
  }
  std::exception_ptr finish() {
    finish_source.request_stop();
    return runner->join();
  }
};

/// A rig whose processes run on a pool the test owns, with `drive` running a coroutine there.
/// `events`: whether the rig's event hook is set (without it, `async_stop` takes the path that
/// does not wait for its process's task to begin).
struct PoolRig {
  supervisor::ThreadPool pool;
  Rig rig;

  explicit PoolRig(unsigned threads = 2, bool events = true) : pool(threads) {
    rig.options.executor = supervisor::ExecutorRef(pool);
    if (!events) {
      rig.options.on_event = nullptr;
    }
  }

  /// Runs `body` as a coroutine on the pool, and waits until it has finished; its exception.
  template <class Body>
  std::exception_ptr drive(Body body) {
    // Shared: `notify` may still be running on the pool when `wait` returns here.
    const auto finished = std::make_shared<test::Event>();
    std::exception_ptr failure;
    supervisor::spawn(supervisor::ExecutorRef(pool), body(),
                      [&failure, finished](std::exception_ptr e) {
                        failure = std::move(e);
                        finished->notify();
                      });
    REQUIRE(finished->wait());
    return failure;
  }
};

}  // namespace coroutine_test
