// Process<R>, the state machine of SEMANTICS section 2: start, one transition per test case or
// section. Stop is in process_stop_test.cpp, deadlines and tokens in process_deadlines_test.cpp.

#include "process_support.hpp"  // first: it includes Catch2 and the test support

// Standard headers after the test support.
#include <atomic>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>

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

namespace {
// Reports, from inside `run`, whether its process already counts as launched.
struct LaunchedProbe {
  std::shared_ptr<std::function<bool()>> launched;  // asks the process that runs this probe
  std::shared_ptr<std::atomic<int>> seen;           // 0 not yet, 1 launched, 2 not launched
  void run(std::stop_token /*force*/, supervisor::Ready& ready) {
    seen->store((*launched)() ? 1 : 2);
    seen->notify_all();  // `atomic::wait` sleeps for good once past its spin, unless notified
    ready();
  }
};
}  // namespace

TEST_CASE("Process core: the runnable's own code already sees its process launched", "[process]") {
  // A runnable may signal someone who then looks its key up, before the launching thread is back
  // from `launch`. This launch holds the launching thread until `run` has looked.
  using Core = supervisor::detail::ProcessCore<LaunchedProbe>;
  auto launched = std::make_shared<std::function<bool()>>();
  auto seen = std::make_shared<std::atomic<int>>(0);
  auto core = std::make_shared<Core>(LaunchedProbe{launched, seen}, std::stop_token{});
  *launched = [raw = core.get()] { return raw->launched(); };
  std::jthread runner;
  const std::error_code started = core->begin_start(
      [&](std::function<void()> body) {
        runner = std::jthread(std::move(body));
        seen->wait(0);  // returns once `run` has stored what it saw
      },
      core);
  CHECK(started == std::error_code{});
  CHECK(seen->load() == 1);
  CHECK(core->await_start(supervisor::Cancel{}) == std::error_code{});
  core->request_stop();
  runner.join();
  CHECK(core->done());
}
