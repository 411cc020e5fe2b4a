#include "catch_shim.hpp"  // first: it picks the Catch2 v2 or v3 header
#include "support.hpp"

// Standard headers after the test support.
#include <atomic>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>

// The ready-made runnables, each driven through supervisor::Process.

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ProcessState;
using test::code_of;
using test::Event;

namespace {

struct Worker {
  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) { ready(); }
};
struct ByValueReady {
  void run(std::stop_token /*force*/, supervisor::Ready ready) const { ready(); }
};
struct ConstRefReady {
  std::error_code run(const std::stop_token& /*force*/, const supervisor::Ready& ready) {
    ready();
    return {};
  }
};
struct NoRun {};

constexpr auto kFunction = [](const std::stop_token& /*force*/, supervisor::Ready& ready) {
  ready();
};
constexpr auto kNothing = [] {};
constexpr auto kWithToken = [](const std::stop_token& /*force*/) {};

/// The message of the `std::runtime_error` that `f` throws, "" if none.
template <class F>
std::string runtime_error_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

static_assert(supervisor::Runnable<supervisor::Nop>);
static_assert(supervisor::Runnable<decltype(supervisor::from_function(kFunction))>);
static_assert(supervisor::Runnable<decltype(supervisor::start_stop(kNothing, kWithToken))>);
static_assert(supervisor::Runnable<decltype(supervisor::start_stop(kWithToken, kNothing))>);
static_assert(supervisor::Runnable<decltype(supervisor::leaf(kNothing, kWithToken))>);
static_assert(supervisor::Runnable<decltype(supervisor::leaf(kWithToken, kNothing))>);
static_assert(supervisor::Runnable<Worker>);
static_assert(supervisor::Runnable<std::shared_ptr<Worker>>);
static_assert(supervisor::Runnable<std::unique_ptr<Worker>>);
static_assert(supervisor::Runnable<Worker*>);
static_assert(supervisor::Runnable<ByValueReady>);
static_assert(supervisor::Runnable<ConstRefReady>);
static_assert(supervisor::Runnable<test::Probe>);
static_assert(!supervisor::Runnable<int>);
static_assert(!supervisor::Runnable<NoRun>);
static_assert(!supervisor::Runnable<std::shared_ptr<NoRun>>);
static_assert(!supervisor::Runnable<std::shared_ptr<int>>);

TEST_CASE("Adapters: the Runnable concept accepts objects and pointer-like handles", "[adapters]") {
  // The static_asserts above are the test; this runs the by-value and const-ref forms.
  supervisor::Process<ByValueReady> by_value(ByValueReady{});
  by_value.start();
  CHECK(by_value.state() == ProcessState::running);
  by_value.stop();

  supervisor::Process<ConstRefReady> const_ref(ConstRefReady{});
  const_ref.start();
  CHECK(const_ref.state() == ProcessState::running);
  const_ref.stop();
  CHECK(const_ref.error() == nullptr);
}

TEST_CASE("Adapters: nop is ready at once and returns when stopped", "[adapters]") {
  SECTION("graceful stop") {
    supervisor::Process process(supervisor::nop());
    process.start();
    CHECK(process.state() == ProcessState::running);
    CHECK_FALSE(process.done());
    process.stop();
    CHECK(process.done());
    CHECK(process.error() == nullptr);
  }
  SECTION("forced by the parent") {
    std::stop_source parent;
    supervisor::Process process(supervisor::nop(), parent.get_token());
    process.start();
    parent.request_stop();
    CHECK(process.wait(test::patience));
    CHECK(process.error() == nullptr);
  }
}

TEST_CASE("Adapters: from_function runs the callable as the runnable", "[adapters]") {
  SECTION("void result") {
    std::atomic<int> before{0};
    std::atomic<int> after{0};
    std::atomic<bool> forced{true};
    supervisor::Process process(
        supervisor::from_function([&](std::stop_token force, supervisor::Ready& ready) {
          ++before;
          ready();
          forced = force.stop_requested();
          ++after;
        }));
    process.start();
    CHECK(before == 1);
    CHECK(after == 0);
    process.stop();
    CHECK(after == 1);
    CHECK_FALSE(forced);
  }
  SECTION("std::error_code result") {
    const auto code = std::make_error_code(std::errc::io_error);
    supervisor::Process process(supervisor::from_function(
        [&](const std::stop_token& /*force*/, supervisor::Ready& ready) -> std::error_code {
          ready();
          return code;
        }));
    process.start();
    CHECK(code_of([&] { process.stop(); }) == code);
  }
  SECTION("exiting without ready") {
    supervisor::Process process(supervisor::from_function(
        [](const std::stop_token& /*force*/, supervisor::Ready& /*ready*/) {}));
    CHECK(code_of([&] { process.start(); }) == errc::exited_before_ready);
  }
}

TEST_CASE("Adapters: start_stop calls start before ready and stop on stop", "[adapters]") {
  std::atomic<int> starts{0};
  std::atomic<int> stops{0};

  SECTION("start without a token, stop with one") {
    std::atomic<bool> forced_at_stop{true};
    supervisor::Process process(supervisor::start_stop([&] { ++starts; },
                                                       [&](const std::stop_token& force) {
                                                         forced_at_stop = force.stop_requested();
                                                         ++stops;
                                                       }));
    process.start();
    CHECK(starts == 1);
    CHECK(stops == 0);
    process.stop();
    CHECK(stops == 1);
    CHECK_FALSE(forced_at_stop);  // a graceful stop is not a cancellation
  }
  SECTION("start with a token, stop without one") {
    std::atomic<bool> token_at_start{false};
    supervisor::Process process(supervisor::start_stop(
        [&](std::stop_token force) {
          token_at_start = force.stop_possible() && !force.stop_requested();
          ++starts;
        },
        [&] { ++stops; }));
    process.start();
    CHECK(starts == 1);
    CHECK(token_at_start);
    CHECK(stops == 0);
    process.stop();
    CHECK(stops == 1);
  }
  SECTION("start throwing fails the process's start with that exception") {
    supervisor::Process process(supervisor::start_stop(
        [&] {
          ++starts;
          throw std::runtime_error("start failed");
        },
        [&] { ++stops; }));
    CHECK(runtime_error_of([&] { process.start(); }) == "start failed");
    CHECK(starts == 1);
    CHECK(stops == 0);
    CHECK(process.state() == ProcessState::stopped);
    CHECK(test::what(process.error()) == "start failed");
  }
  SECTION("stop throwing fails the process's stop with that exception") {
    supervisor::Process process(
        supervisor::start_stop([] {}, [] { throw std::runtime_error("stop failed"); }));
    process.start();
    CHECK(runtime_error_of([&] { process.stop(); }) == "stop failed");
  }
}

TEST_CASE("Adapters: leaf runs its body on another thread and stops it gracefully", "[adapters]") {
  Event body_started;
  Event release;
  Event body_done;
  std::atomic<int> graceful_calls{0};
  std::atomic<std::thread::id> body_thread{};
  std::atomic<std::thread::id> stop_thread{};

  SECTION("graceful_stop without a token") {
    supervisor::Process process(supervisor::leaf(
        [&] {
          body_thread = std::this_thread::get_id();
          body_started.notify();
          release.wait();
          body_done.notify();
        },
        [&] {
          stop_thread = std::this_thread::get_id();
          ++graceful_calls;
          release.notify();
        }));
    process.start();  // ready at once, while the body still runs
    CHECK(process.state() == ProcessState::running);
    REQUIRE(body_started.wait());
    CHECK(body_done.count() == 0);
    CHECK(graceful_calls == 0);

    process.stop();
    CHECK(graceful_calls == 1);
    CHECK(body_done.count() == 1);  // joined before run returned
    CHECK(process.error() == nullptr);
    CHECK(body_thread.load() != std::this_thread::get_id());
    CHECK(body_thread.load() != stop_thread.load());
  }
  SECTION("graceful_stop with a token: not forced") {
    std::atomic<bool> forced{true};
    supervisor::Process process(supervisor::leaf([&] { release.wait(); },
                                                 [&](const std::stop_token& force) {
                                                   forced = force.stop_requested();
                                                   ++graceful_calls;
                                                   release.notify();
                                                 }));
    process.start();
    process.stop();
    CHECK(graceful_calls == 1);
    CHECK_FALSE(forced);
  }
  SECTION("the body gets the force token") {
    std::atomic<bool> body_forced{false};
    supervisor::Process process(supervisor::leaf(
        [&](const std::stop_token& force) {
          test::Probe::wait_for(force);
          body_forced = true;
        },
        [&] { ++graceful_calls; }));
    process.start();
    // The body ignores the graceful stop, so stop's deadline forces it.
    CHECK(code_of([&] { process.stop(std::chrono::steady_clock::now() - 1s); }) ==
          errc::deadline_exceeded);
    CHECK(body_forced);
    CHECK(graceful_calls == 1);
    CHECK(process.done());
  }
}

TEST_CASE("Adapters: a leaf whose body returns early stops by itself", "[adapters]") {
  std::atomic<int> graceful_calls{0};
  Event release;

  SECTION("clean return") {
    supervisor::Process process(
        supervisor::leaf([&] { release.wait(); }, [&] { ++graceful_calls; }));
    process.start();
    CHECK(process.state() == ProcessState::running);
    release.notify();
    REQUIRE(process.wait(test::patience));
    CHECK(process.state() == ProcessState::stopped);
    CHECK(process.error() == nullptr);
    CHECK(graceful_calls == 1);
    CHECK(code_of([&] { process.stop(); }) == errc::invalid_state);
  }
  SECTION("the body's exception is the process's error") {
    supervisor::Process process(supervisor::leaf(
        [&] {
          release.wait();
          throw std::runtime_error("body failed");
        },
        [&] { ++graceful_calls; }));
    process.start();
    release.notify();
    REQUIRE(process.wait(test::patience));
    CHECK(test::what(process.error()) == "body failed");
    CHECK(graceful_calls == 1);
  }
}

TEST_CASE("Adapters: leaf rethrows the body's exception from run", "[adapters]") {
  Event release;

  SECTION("Process::stop rethrows the body's exception") {
    supervisor::Process process(supervisor::leaf(
        [&] {
          release.wait();
          throw std::runtime_error("body failed");
        },
        [&] { release.notify(); }));
    process.start();
    CHECK(runtime_error_of([&] { process.stop(); }) == "body failed");
    CHECK(test::what(process.error()) == "body failed");
  }
  SECTION("graceful_stop's exception when the body succeeded") {
    supervisor::Process process(supervisor::leaf([&] { release.wait(); },
                                                 [&] {
                                                   release.notify();
                                                   throw std::runtime_error("stop failed");
                                                 }));
    process.start();
    CHECK(runtime_error_of([&] { process.stop(); }) == "stop failed");
  }
  SECTION("the body's exception wins over graceful_stop's") {
    supervisor::Process process(supervisor::leaf(
        [&] {
          release.wait();
          throw std::runtime_error("body failed");
        },
        [&] {
          release.notify();
          throw std::runtime_error("stop failed");
        }));
    process.start();
    CHECK(runtime_error_of([&] { process.stop(); }) == "body failed");
  }
}
