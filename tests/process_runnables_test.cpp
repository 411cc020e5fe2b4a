// Process<R> over runnables other than `Probe`: pointer-like, returning std::error_code, keeping
// its force token; and what every runnable sees: error(), and racing calls of start and stop.

#include "process_support.hpp"  // first: it includes Catch2 and the test support

// Standard headers after the test support.
#include <atomic>
#include <latch>
#include <memory>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

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
