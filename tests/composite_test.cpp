#include "catch_shim.hpp"
#include "support.hpp"
// (keeps the shim first)
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

using test::Probe;
using test::Shutdown;
using test::Startup;

namespace {

/// A runnable that logs "up NAME" when it becomes ready and "down NAME" when it returns.
struct Logged {
  std::string name;
  std::shared_ptr<std::mutex> mutex;
  std::shared_ptr<std::vector<std::string>> log;
  bool fail_at_start = false;

  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) const {
    if (fail_at_start) {
      throw std::runtime_error(name + " failed");
    }
    write("up " + name);
    ready();
    write("down " + name);
  }
  void write(std::string line) const {
    std::lock_guard lock(*mutex);
    log->push_back(std::move(line));
  }
};

struct Log {
  std::shared_ptr<std::mutex> mutex = std::make_shared<std::mutex>();
  std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();
  Logged make(std::string name, bool fail = false) const {
    return Logged{std::move(name), mutex, lines, fail};
  }
  std::vector<std::string> get() const {
    std::lock_guard lock(*mutex);
    return *lines;
  }
};

}  // namespace

TEST_CASE("chain starts in order and stops in reverse", "[composite]") {
  Log log;
  supervisor::Process process(supervisor::chain(log.make("a"), log.make("b"), log.make("c")));
  process.start();
  CHECK(log.get() == std::vector<std::string>{"up a", "up b", "up c"});
  process.stop();
  CHECK(log.get() ==
        std::vector<std::string>{"up a", "up b", "up c", "down c", "down b", "down a"});
}

TEST_CASE("chain: a later failure winds down the earlier ones", "[composite]") {
  Log log;
  supervisor::Process process(supervisor::chain(log.make("a"), log.make("b", true)));
  try {
    process.start();
    FAIL("start succeeded");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "b failed");
  }
  CHECK(log.get() == std::vector<std::string>{"up a", "down a"});
}

TEST_CASE("parallel: ready when all are, stopped together", "[composite]") {
  auto a = Probe::with(Startup::ready);
  auto b = Probe::with(Startup::hang_then_ready);
  supervisor::Process process(supervisor::parallel(a, b));
  std::error_code start_code;
  test::Background starter([&] { process.start(start_code); });
  REQUIRE(a.state->readied.wait());
  REQUIRE(b.state->entered.wait());
  CHECK(process.state() == supervisor::ProcessState::starting);  // b is not ready yet.
  b.state->release.notify();
  REQUIRE(starter.join() == nullptr);
  CHECK(start_code == std::error_code{});
  process.stop();
  CHECK(a.state->returned.count() == 1);
  CHECK(b.state->returned.count() == 1);
  CHECK_FALSE(a.state->force_seen);  // Graceful.
}

TEST_CASE("parallel: one failing to start forces the others and fails the start", "[composite]") {
  auto hanging = Probe::with(Startup::hang);
  auto failing = Probe::with(Startup::throw_error);
  supervisor::Process process(supervisor::parallel(hanging, failing));
  CHECK_THROWS_AS(process.start(), std::runtime_error);
  CHECK(hanging.state->force_seen);
  CHECK(hanging.state->returned.count() == 1);
}

TEST_CASE("parallel: one exiting after readiness ends the group", "[composite]") {
  auto steady = Probe::with(Startup::ready);
  auto quitter = Probe::with(Startup::ready, Shutdown::throw_error);
  quitter.state->use_early = true;
  supervisor::Process process(supervisor::parallel(steady, quitter));
  process.start();
  quitter.state->early.request_stop();
  REQUIRE(process.wait(test::patience));
  CHECK(test::what(process.error()) == "shutdown failed");
  CHECK(steady.state->returned.count() == 1);
}

// The nested case of the Go original's leaf test: when `first` ends on its own (a leaf whose body
// returned), `rest` is forced down and the whole chain returns, with no stop from outside. `rest`
// waits in a `ready` of its own that ends on its force signal, not in the outer one.

TEST_CASE("chain: a leaf whose body returns ends the chain and forces its rest down",
          "[composite]") {
  std::atomic<int> graceful_calls{0};
  auto rest = Probe::with(Startup::ready);

  SECTION("the body returns at once, before the rest has started") {
    supervisor::Process process(
        supervisor::chain(supervisor::leaf([] {}, [&] { ++graceful_calls; }), rest));
    process.start();
    REQUIRE(process.wait(test::patience));
  }
  SECTION("the body returns once the chain is running") {
    test::Event latch;
    supervisor::Process process(supervisor::chain(
        supervisor::leaf([&] { latch.wait(); }, [&] { ++graceful_calls; }), rest));
    process.start();
    CHECK(process.state() == supervisor::ProcessState::running);
    CHECK_FALSE(process.done());
    latch.notify();
    REQUIRE(process.wait(test::patience));
    CHECK(process.error() == nullptr);
  }
  CHECK(graceful_calls == 1);
  CHECK(rest.state->returned.count() == 1);
  CHECK(rest.state->force_seen);  // Forced down: nobody asked for a graceful stop.
}

TEST_CASE("chain: a loop leaf that returns, followed by nop, ends by itself", "[composite]") {
  test::Event latch;
  supervisor::Process process(
      supervisor::chain(supervisor::leaf([&](const std::stop_token& stop) { latch.wait_or(stop); }),
                        supervisor::nop()));
  process.start();
  latch.notify();
  REQUIRE(process.wait(test::patience));
  CHECK(process.error() == nullptr);
}

TEST_CASE("chain: three levels end by themselves when a leaf returns", "[composite]") {
  test::Event latch;
  auto body = [&] { latch.wait(); };
  auto last = Probe::with(Startup::ready);

  SECTION("the leaf first") {
    supervisor::Process process(
        supervisor::chain(supervisor::leaf(body, [] {}), supervisor::nop(), last));
    process.start();
    latch.notify();
    REQUIRE(process.wait(test::patience));
  }
  SECTION("the leaf in the middle") {
    supervisor::Process process(
        supervisor::chain(supervisor::nop(), supervisor::leaf(body, [] {}), last));
    process.start();
    latch.notify();
    REQUIRE(process.wait(test::patience));
  }
  CHECK(last.state->returned.count() == 1);
  CHECK(last.state->force_seen);
}

TEST_CASE("chain: the rest's own early token ends the chain", "[composite]") {
  auto first = Probe::with(Startup::ready);
  auto rest = Probe::with(Startup::ready);
  rest.state->use_early = true;
  supervisor::Process process(supervisor::chain(first, rest));
  process.start();
  rest.state->early.request_stop();
  REQUIRE(process.wait(test::patience));
  CHECK(first.state->returned.count() == 1);
  CHECK_FALSE(rest.state->force_seen);  // It ended itself; nothing forced it.
}

// The others must see force, not a graceful stop that races it. That race is narrow, so the case
// runs a few rounds to catch a regression in the order (force before the graceful flag).
TEST_CASE("parallel: a leaf whose body returns ends the group and forces the others",
          "[composite]") {
  for (int round = 0; round < 50; ++round) {
    test::Event latch;
    auto other = Probe::with(Startup::ready);
    supervisor::Process process(
        supervisor::parallel(supervisor::leaf([&] { latch.wait(); }, [] {}), other));
    process.start();
    latch.notify();
    REQUIRE(process.wait(test::patience));
    REQUIRE(other.state->returned.count() == 1);
    REQUIRE(other.state->force_seen);
  }
}
