// Process<R>: what forces a runnable. The deadline or token of a start or a stop (which still waits
// for run to return), and the parent token given to the constructor.

#include "process_support.hpp"  // first: it includes Catch2 and the test support

// Standard headers after the test support.
#include <chrono>
#include <stop_token>
#include <system_error>

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
