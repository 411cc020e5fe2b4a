// Ready::stop_token(): the stop that `ready` waits for, as a token a runnable can pass to its own
// blocking calls. For a process, and for the children of `chain` and `parallel`.

#include <atomic>
#include <memory>
#include <stop_token>

#include "catch_shim.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

namespace {

/// Records what its `Ready::stop_token()` said before `ready`, and waits on that token itself
/// after `ready` returned (so a token that is never requested hangs the test).
struct TokenProbe {
  struct State {
    std::atomic<bool> requested_before{true};
    std::atomic<bool> requested_after{false};
    test::Event up;
  };
  std::shared_ptr<State> state = std::make_shared<State>();

  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) const {
    const std::stop_token token = ready.stop_token();
    state->requested_before = token.stop_requested();
    state->up.notify();
    ready();
    test::Probe::wait_for(token);  // Returns only if the token was requested.
    state->requested_after = token.stop_requested();
  }
};

}  // namespace

TEST_CASE("Ready::stop_token is requested by a graceful stop, and not before",
          "[runnable][ready]") {
  TokenProbe probe;
  supervisor::Process<TokenProbe> process(probe);
  process.start();
  CHECK_FALSE(probe.state->requested_before);
  process.stop();
  CHECK(probe.state->requested_after);
}

TEST_CASE("Ready::stop_token is requested by force", "[runnable][ready]") {
  TokenProbe probe;
  std::stop_source parent;
  supervisor::Process<TokenProbe> process(probe, parent.get_token());
  process.start();
  parent.request_stop();  // Forces the process: `ready` returns, and so must the token.
  CHECK(process.wait(supervisor::Cancel(60s)));
  CHECK(probe.state->requested_after);
}

TEST_CASE("Ready::stop_token reaches the runnables inside chain and parallel",
          "[runnable][ready]") {
  TokenProbe first;
  TokenProbe second;
  TokenProbe left;
  TokenProbe right;
  auto both = supervisor::chain(first, second);
  auto side_by_side = supervisor::parallel(left, right);
  supervisor::Process<decltype(both)> chained(both);
  supervisor::Process<decltype(side_by_side)> grouped(side_by_side);
  chained.start();
  grouped.start();
  for (const auto* probe : {&first, &second, &left, &right}) {
    CHECK_FALSE(probe->state->requested_before);
  }
  chained.stop();
  grouped.stop();
  for (const auto* probe : {&first, &second, &left, &right}) {
    CHECK(probe->state->requested_after);
  }
}
