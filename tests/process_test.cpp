#include "catch_shim.hpp"  // first: it picks the Catch2 v2 or v3 header
#include "support.hpp"

// Standard headers after the test support.
#include <atomic>
#include <latch>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

// Process<R>: the state machine of SEMANTICS section 2, one transition per test case or section.

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ProcessState;
using test::Background;
using test::code_of;
using test::Probe;
using test::Shutdown;
using test::Startup;

namespace {

using ProbeProcess = supervisor::Process<Probe>;

/// The message of the `std::runtime_error` that `f` throws, "" if none. A `std::system_error`
/// (one of our codes) does not count: the runnable's own exception must come back intact.
template <class F>
std::string runtime_error_of(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return std::string("system_error: ") + e.what();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

const std::error_code kDeadlock = std::make_error_code(std::errc::resource_deadlock_would_occur);

}  // namespace

TEST_CASE("Process: start moves initial -> starting -> running once ready is called", "[process]") {
  Probe probe = Probe::with(Startup::hang_then_ready);
  ProbeProcess process(probe);
  CHECK(process.state() == ProcessState::initial);
  CHECK_FALSE(process.done());

  Background starter([&] { process.start(); });
  REQUIRE(probe.state->entered.wait());
  CHECK(process.state() == ProcessState::starting);
  CHECK_FALSE(starter.finished());  // start blocks until ready is called

  probe.state->release.notify();
  REQUIRE(starter.wait());
  CHECK(starter.join() == nullptr);
  CHECK(process.state() == ProcessState::running);
  CHECK(probe.state->readied.count() == 1);
  CHECK(probe.state->ready_returned.count() == 0);
  CHECK_FALSE(process.done());
  CHECK(process.error() == nullptr);
  CHECK(probe.state->thread.load() != std::this_thread::get_id());

  process.stop();
}

TEST_CASE("Process: start succeeds once ready is called (error_code overload)", "[process]") {
  Probe probe;
  ProbeProcess process(probe);
  std::error_code ec = supervisor::errc::canceled;
  process.start(ec);
  CHECK(ec == std::error_code{});
  CHECK(process.state() == ProcessState::running);
  process.stop(ec);
  CHECK(ec == std::error_code{});
}

TEST_CASE("Process: start rethrows the runnable's init exception intact", "[process]") {
  Probe probe = Probe::with(Startup::throw_error);
  ProbeProcess process(probe);

  SECTION("throwing overload") {
    CHECK(runtime_error_of([&] { process.start(); }) == "init failed");
  }
  SECTION("error_code overload still rethrows the runnable's exception") {
    std::error_code ec;
    CHECK(runtime_error_of([&] { process.start(ec); }) == "init failed");
  }
  CHECK(process.state() == ProcessState::stopped);
  CHECK(process.done());
  CHECK(test::what(process.error()) == "init failed");
  CHECK(probe.state->readied.count() == 0);
  CHECK(code_of([&] { process.stop(); }) == errc::invalid_state);
}

TEST_CASE("Process: start fails with exited_before_ready when run returns without ready",
          "[process]") {
  Probe probe = Probe::with(Startup::exit_early);
  ProbeProcess process(probe);

  SECTION("throwing overload") {
    CHECK(code_of([&] { process.start(); }) == errc::exited_before_ready);
  }
  SECTION("error_code overload") {
    std::error_code ec;
    process.start(ec);
    CHECK(ec == errc::exited_before_ready);
  }
  CHECK(process.state() == ProcessState::stopped);
  CHECK(process.done());
  CHECK(process.error() == nullptr);
  CHECK(probe.state->returned.count() == 1);
}

TEST_CASE("Process: start is invalid_state unless initial", "[process]") {
  SECTION("while running") {
    Probe probe;
    ProbeProcess process(probe);
    process.start();
    CHECK(code_of([&] { process.start(); }) == errc::invalid_state);
    std::error_code ec;
    process.start(ec);
    CHECK(ec == errc::invalid_state);
    CHECK(process.state() == ProcessState::running);
    CHECK(probe.state->entered.count() == 1);  // no second run
    process.stop();
  }
  SECTION("after stop") {
    Probe probe;
    ProbeProcess process(probe);
    process.start();
    process.stop();
    CHECK(code_of([&] { process.start(); }) == errc::invalid_state);
    CHECK(probe.state->entered.count() == 1);
  }
  SECTION("after a failed start") {
    Probe probe = Probe::with(Startup::exit_early);
    ProbeProcess process(probe);
    CHECK(code_of([&] { process.start(); }) == errc::exited_before_ready);
    CHECK(code_of([&] { process.start(); }) == errc::invalid_state);
    CHECK(probe.state->entered.count() == 1);
  }
}

TEST_CASE("Process: stop from initial stops it at once for good", "[process]") {
  Probe probe;
  ProbeProcess process(probe);

  SECTION("throwing overload") { REQUIRE_NOTHROW(process.stop()); }
  SECTION("error_code overload") {
    std::error_code ec = errc::canceled;
    process.stop(ec);
    CHECK(ec == std::error_code{});
  }
  CHECK(process.state() == ProcessState::stopped);
  CHECK(process.done());
  CHECK(process.wait(std::stop_token{}));
  CHECK(process.error() == nullptr);

  CHECK(code_of([&] { process.start(); }) == errc::invalid_state);
  CHECK(code_of([&] { process.stop(); }) == errc::invalid_state);
  std::error_code ec;
  process.stop(ec);
  CHECK(ec == errc::invalid_state);
  CHECK(probe.state->entered.count() == 0);  // the runnable never ran
}

TEST_CASE("Process: stop while starting forces at once and aborts the startup", "[process]") {
  Probe probe = Probe::with(Startup::hang);
  ProbeProcess process(probe);
  std::error_code start_ec;
  Background starter([&] { process.start(start_ec); });
  REQUIRE(probe.state->entered.wait());
  REQUIRE(process.state() == ProcessState::starting);

  process.stop();  // would never return unless force is requested: hang ignores everything else

  CHECK(process.state() == ProcessState::stopped);
  CHECK(process.done());
  CHECK(probe.state->force_seen);
  CHECK(probe.state->returned.count() == 1);
  REQUIRE(starter.wait());
  CHECK(starter.join() == nullptr);
  CHECK(start_ec == errc::exited_before_ready);
  CHECK(probe.state->readied.count() == 0);
}

TEST_CASE("Process: stop from running is graceful", "[process]") {
  Probe probe;
  ProbeProcess process(probe);
  process.start();

  SECTION("throwing overload") { REQUIRE_NOTHROW(process.stop()); }
  SECTION("error_code overload") {
    std::error_code ec = errc::canceled;
    process.stop(ec);
    CHECK(ec == std::error_code{});
  }
  CHECK(probe.state->ready_returned.count() == 1);
  CHECK_FALSE(probe.state->force_seen);       // graceful, not forced
  CHECK(probe.state->returned.count() == 1);  // stop waited for run to return
  CHECK(probe.state->live == 0);
  CHECK(process.state() == ProcessState::stopped);
  CHECK(process.done());
  CHECK(process.error() == nullptr);
  CHECK(code_of([&] { process.stop(); }) == errc::invalid_state);
}

TEST_CASE("Process: the state is stopped when stop is called, before run returns", "[process]") {
  Probe probe = Probe::with(Startup::ready, Shutdown::ignore_stop);
  ProbeProcess process(probe);
  process.start();

  std::stop_source give_up;
  std::error_code stop_ec;
  Background stopper([&] { process.stop(give_up.get_token(), stop_ec); });
  REQUIRE(probe.state->ready_returned.wait());  // the graceful stop reached the runnable

  CHECK(process.state() == ProcessState::stopped);
  CHECK_FALSE(process.done());
  CHECK(probe.state->returned.count() == 0);  // ignore_stop waits for force
  CHECK_FALSE(stopper.finished());

  give_up.request_stop();  // stop's own token fires while it waits: force, wait, canceled
  REQUIRE(stopper.wait());
  CHECK(stopper.join() == nullptr);
  CHECK(stop_ec == errc::canceled);
  CHECK(probe.state->force_seen);
  CHECK(probe.state->returned.count() == 1);
  CHECK(process.done());
}

TEST_CASE("Process: stop rethrows the runnable's shutdown exception", "[process]") {
  Probe probe = Probe::with(Startup::ready, Shutdown::throw_error);
  ProbeProcess process(probe);
  process.start();
  CHECK(process.error() == nullptr);

  SECTION("throwing overload") {
    CHECK(runtime_error_of([&] { process.stop(); }) == "shutdown failed");
  }
  SECTION("error_code overload still rethrows the runnable's exception") {
    std::error_code ec;
    CHECK(runtime_error_of([&] { process.stop(ec); }) == "shutdown failed");
  }
  CHECK(process.done());
  CHECK(test::what(process.error()) == "shutdown failed");
  CHECK(process.state() == ProcessState::stopped);
}

TEST_CASE("Process: stop's deadline or token forces and still waits for run to return",
          "[process]") {
  Probe probe = Probe::with(Startup::ready, Shutdown::ignore_stop);
  ProbeProcess process(probe);
  process.start();

  std::error_code ec;
  int returned_when_stop_returned = -1;
  SECTION("a 1ms duration") {
    ec = code_of([&] { process.stop(1ms); });
    returned_when_stop_returned = probe.state->returned.count();
    CHECK(ec == errc::deadline_exceeded);
  }
  SECTION("a time point in the past") {
    process.stop(std::chrono::steady_clock::now() - 1s, ec);
    returned_when_stop_returned = probe.state->returned.count();
    CHECK(ec == errc::deadline_exceeded);
  }
  SECTION("a stop token already requested") {
    std::stop_source source;
    source.request_stop();
    ec = code_of([&] { process.stop(source.get_token()); });
    returned_when_stop_returned = probe.state->returned.count();
    CHECK(ec == errc::canceled);
  }
  CHECK(returned_when_stop_returned == 1);
  CHECK(probe.state->force_seen);
  CHECK(probe.state->ready_returned.count() == 1);
  CHECK(probe.state->live == 0);
  CHECK(process.done());
  CHECK(process.state() == ProcessState::stopped);
  CHECK(process.error() == nullptr);
}

TEST_CASE("Process: start's deadline or token forces a hanging startup and waits for run",
          "[process]") {
  Probe probe = Probe::with(Startup::hang);
  ProbeProcess process(probe);

  std::error_code ec;
  int returned_when_start_returned = -1;
  SECTION("a 1ms duration") {
    ec = code_of([&] { process.start(1ms); });
    returned_when_start_returned = probe.state->returned.count();
    CHECK(ec == errc::deadline_exceeded);
  }
  SECTION("a time point in the past") {
    process.start(std::chrono::steady_clock::now() - 1s, ec);
    returned_when_start_returned = probe.state->returned.count();
    CHECK(ec == errc::deadline_exceeded);
  }
  SECTION("a stop token already requested") {
    std::stop_source source;
    source.request_stop();
    ec = code_of([&] { process.start(source.get_token()); });
    returned_when_start_returned = probe.state->returned.count();
    CHECK(ec == errc::canceled);
  }
  SECTION("a stop token requested while start waits") {
    std::stop_source source;
    Background starter([&] {
      process.start(source.get_token(), ec);
      returned_when_start_returned = probe.state->returned.count();
    });
    REQUIRE(probe.state->entered.wait());
    source.request_stop();
    REQUIRE(starter.wait());
    CHECK(starter.join() == nullptr);
    CHECK(ec == errc::canceled);
  }
  CHECK(returned_when_start_returned == 1);
  CHECK(probe.state->force_seen);
  CHECK(process.state() == ProcessState::stopped);
  CHECK(process.done());
  CHECK(code_of([&] { process.stop(); }) == errc::invalid_state);
}

TEST_CASE("Process: the parent token given to the constructor forces the runnable", "[process]") {
  std::stop_source parent;

  SECTION("running, ignoring the graceful stop: stop completes once the parent is requested") {
    Probe probe = Probe::with(Startup::ready, Shutdown::ignore_stop);
    ProbeProcess process(probe, parent.get_token());
    process.start();
    std::error_code stop_ec = errc::canceled;
    Background stopper([&] { process.stop(stop_ec); });
    REQUIRE(probe.state->ready_returned.wait());
    CHECK(probe.state->returned.count() == 0);
    CHECK_FALSE(probe.state->force_seen);

    parent.request_stop();
    REQUIRE(stopper.wait());
    CHECK(stopper.join() == nullptr);
    CHECK(stop_ec == std::error_code{});
    CHECK(probe.state->force_seen);
    CHECK(process.done());
  }
  SECTION("running, nobody stops it: it ends by itself") {
    Probe probe;
    ProbeProcess process(probe, parent.get_token());
    process.start();
    parent.request_stop();
    CHECK(process.wait(test::patience));
    CHECK(probe.state->force_seen);
    CHECK(process.state() == ProcessState::stopped);
    CHECK(process.error() == nullptr);
  }
  SECTION("hanging in startup: start fails") {
    Probe probe = Probe::with(Startup::hang);
    ProbeProcess process(probe, parent.get_token());
    std::error_code start_ec;
    Background starter([&] { process.start(start_ec); });
    REQUIRE(probe.state->entered.wait());
    parent.request_stop();
    REQUIRE(starter.wait());
    CHECK(starter.join() == nullptr);
    CHECK(start_ec == errc::exited_before_ready);
    CHECK(probe.state->force_seen);
    CHECK(process.state() == ProcessState::stopped);
  }
  SECTION("already requested before start") {
    parent.request_stop();
    Probe probe = Probe::with(Startup::hang);
    ProbeProcess process(probe, parent.get_token());
    CHECK(code_of([&] { process.start(); }) == errc::exited_before_ready);
    CHECK(probe.state->force_seen);
  }
}

TEST_CASE("Process: ready returns early when the runnable's own token is requested", "[process]") {
  Probe probe;
  probe.state->use_early = true;
  ProbeProcess process(probe);
  process.start();
  CHECK(probe.state->ready_returned.count() == 0);

  probe.state->early.request_stop();
  REQUIRE(process.wait(test::patience));
  CHECK(probe.state->ready_returned.count() == 1);
  CHECK_FALSE(probe.state->force_seen);  // early is not force
  CHECK(process.state() == ProcessState::stopped);
  CHECK(process.error() == nullptr);
  CHECK(code_of([&] { process.stop(); }) == errc::invalid_state);
}

TEST_CASE("Process: stop from inside the runnable fails with resource_deadlock_would_occur",
          "[process]") {
  SECTION("while starting, error_code overload: no effect") {
    Probe probe;
    ProbeProcess process(probe);
    std::error_code inside_ec;
    auto inside_state = ProcessState::initial;
    probe.state->on_enter = [&] {
      process.stop(inside_ec);
      inside_state = process.state();
    };
    process.start();
    CHECK(inside_ec == kDeadlock);
    CHECK(inside_state == ProcessState::starting);
    CHECK(process.state() == ProcessState::running);  // not stopped by the self-call
    CHECK(probe.state->ready_returned.count() == 0);
    process.stop();
    CHECK_FALSE(probe.state->force_seen);
  }
  SECTION("after ready returned, throwing overload") {
    Probe probe;
    ProbeProcess process(probe);
    std::error_code inside_ec;
    probe.state->after_ready = [&] {
      try {
        process.stop();
      } catch (const std::system_error& e) {
        inside_ec = e.code();
      }
    };
    process.start();
    process.stop();
    CHECK(inside_ec == kDeadlock);
    CHECK(process.error() == nullptr);
    CHECK(process.done());
  }
}

TEST_CASE("Process: wait blocks until done and never forces", "[process]") {
  Probe probe;
  ProbeProcess process(probe);
  process.start();

  std::stop_source requested;
  requested.request_stop();
  CHECK_FALSE(process.wait(1ms));
  CHECK_FALSE(process.wait(std::chrono::steady_clock::now() - 1s));
  CHECK_FALSE(process.wait(requested.get_token()));
  CHECK_FALSE(process.done());
  CHECK(process.state() == ProcessState::running);

  bool waited = false;
  Background waiter([&] { waited = process.wait(); });
  process.stop();
  REQUIRE(waiter.wait());
  CHECK(waiter.join() == nullptr);
  CHECK(waited);
  CHECK_FALSE(probe.state->force_seen);  // the timed-out waits did not force
  CHECK(process.wait());
  CHECK(process.wait(requested.get_token()));  // done wins over a requested token
}

TEST_CASE("Process: error() is null until the runnable fails", "[process]") {
  SECTION("clean run") {
    Probe probe;
    ProbeProcess process(probe);
    CHECK(process.error() == nullptr);
    process.start();
    CHECK(process.error() == nullptr);
    process.stop();
    CHECK(process.error() == nullptr);
  }
  SECTION("failed shutdown") {
    Probe probe = Probe::with(Startup::ready, Shutdown::throw_error);
    ProbeProcess process(probe);
    process.start();
    CHECK(process.error() == nullptr);
    std::error_code ec;
    CHECK(runtime_error_of([&] { process.stop(ec); }) == "shutdown failed");
    REQUIRE(process.error() != nullptr);
    CHECK(test::what(process.error()) == "shutdown failed");
  }
}

TEST_CASE("Process: destroying a running process forces it and joins", "[process]") {
  SECTION("running, ignoring the graceful stop") {
    Probe probe = Probe::with(Startup::ready, Shutdown::ignore_stop);
    {
      ProbeProcess process(probe);
      process.start();
    }
    CHECK(probe.state->force_seen);
    CHECK(probe.state->returned.count() == 1);
    CHECK(probe.state->live == 0);
  }
  SECTION("never started") {
    Probe probe;
    { ProbeProcess process(probe); }
    CHECK(probe.state->entered.count() == 0);
  }
}

namespace {

struct Worker {
  std::atomic<int> runs{0};
  std::atomic<bool> forced{false};
  void run(const std::stop_token& force, supervisor::Ready& ready) {
    ++runs;
    ready();
    forced = force.stop_requested();
  }
};

struct CodeWorker {
  std::error_code result;
  bool call_ready = false;
  std::error_code run(const std::stop_token& /*force*/, supervisor::Ready& ready) const {
    if (call_ready) {
      ready();
    }
    return result;
  }
};

}  // namespace

namespace {

/// Keeps a copy of its force token, to look at after run returned.
struct TokenKeeper {
  std::shared_ptr<std::stop_token> kept = std::make_shared<std::stop_token>();
  std::shared_ptr<std::atomic<bool>> forced_in_run = std::make_shared<std::atomic<bool>>(true);
  bool call_ready = true;
  void run(const std::stop_token& force, supervisor::Ready& ready) const {
    *kept = force;
    if (call_ready) {
      ready();
    }
    *forced_in_run = force.stop_requested();
  }
};

}  // namespace

TEST_CASE("Process: force is requested once run has returned", "[process]") {
  SECTION("after a graceful stop") {
    TokenKeeper keeper;
    supervisor::Process<TokenKeeper> process(keeper);
    process.start();
    process.stop();
    CHECK_FALSE(*keeper.forced_in_run);    // not during the graceful shutdown...
    CHECK(keeper.kept->stop_requested());  // ...but once run returned
  }
  SECTION("after exiting before ready") {
    TokenKeeper keeper;
    keeper.call_ready = false;
    supervisor::Process<TokenKeeper> process(keeper);
    CHECK(code_of([&] { process.start(); }) == errc::exited_before_ready);
    CHECK_FALSE(*keeper.forced_in_run);
    CHECK(keeper.kept->stop_requested());
  }
}

TEST_CASE("Process: over a pointer-like runnable", "[process]") {
  auto worker = std::make_shared<Worker>();
  supervisor::Process<std::shared_ptr<Worker>> process(worker);
  CHECK(process.runnable().get() == worker.get());
  process.start();
  CHECK(process.state() == ProcessState::running);
  CHECK(worker->runs == 1);
  process.stop();
  CHECK_FALSE(worker->forced);
  CHECK(worker->runs == 1);
  CHECK(process.error() == nullptr);
}

TEST_CASE("Process: a runnable returning std::error_code", "[process]") {
  const std::error_code io_error = std::make_error_code(std::errc::io_error);

  SECTION("non-zero before ready: start throws std::system_error with that code") {
    supervisor::Process<CodeWorker> process(CodeWorker{io_error, false});
    CHECK(code_of([&] { process.start(); }) == io_error);
    CHECK(process.state() == ProcessState::stopped);
  }
  SECTION("non-zero after ready: stop throws it, error() holds it") {
    supervisor::Process<CodeWorker> process(CodeWorker{io_error, true});
    process.start();
    std::error_code ec;
    CHECK(code_of([&] { process.stop(ec); }) == io_error);
    CHECK(ec == std::error_code{});
    REQUIRE(process.error() != nullptr);
    CHECK(code_of([&] { std::rethrow_exception(process.error()); }) == io_error);
  }
  SECTION("zero after ready: success") {
    supervisor::Process<CodeWorker> process(CodeWorker{{}, true});
    process.start();
    process.stop();
    CHECK(process.error() == nullptr);
  }
  SECTION("zero before ready: exited_before_ready") {
    supervisor::Process<CodeWorker> process(CodeWorker{{}, false});
    CHECK(code_of([&] { process.start(); }) == errc::exited_before_ready);
    CHECK(process.error() == nullptr);
  }
}

TEST_CASE("Process: racing calls: exactly one start and one stop win", "[process]") {
  constexpr int kThreads = 8;
  Probe probe;
  ProbeProcess process(probe);
  std::vector<std::error_code> results(kThreads);

  auto race = [&](auto call) {
    std::latch go(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        go.arrive_and_wait();
        call(results[static_cast<std::size_t>(i)]);
      });
    }
    for (auto& thread : threads) {
      thread.join();
    }
    int ok = 0;
    int invalid = 0;
    for (const auto& ec : results) {
      ok += ec ? 0 : 1;
      invalid += ec == errc::invalid_state ? 1 : 0;
    }
    CHECK(ok == 1);
    CHECK(invalid == kThreads - 1);
  };

  race([&](std::error_code& ec) { process.start(ec); });
  CHECK(process.state() == ProcessState::running);
  CHECK(probe.state->entered.count() == 1);

  race([&](std::error_code& ec) { process.stop(ec); });
  CHECK(process.state() == ProcessState::stopped);
  CHECK(process.done());
  CHECK(probe.state->returned.count() == 1);
}

TEST_CASE("Process: to_string names every state", "[process]") {
  CHECK(supervisor::to_string(ProcessState::initial) == "initial");
  CHECK(supervisor::to_string(ProcessState::starting) == "starting");
  CHECK(supervisor::to_string(ProcessState::running) == "running");
  CHECK(supervisor::to_string(ProcessState::stopped) == "stopped");
}
