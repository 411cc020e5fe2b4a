// Process<R>, the state machine of SEMANTICS section 2: stop, wait and destruction, one
// transition per test case or section. Start is in process_start_test.cpp, deadlines and tokens in
// process_deadlines_test.cpp.

#include "process_support.hpp"  // first: it includes Catch2 and the test support

// Standard headers after the test support.
#include <stop_token>
#include <string>
#include <system_error>

namespace {

const std::error_code kDeadlock = std::make_error_code(std::errc::resource_deadlock_would_occur);

}  // namespace

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
