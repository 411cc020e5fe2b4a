#include "catch_shim.hpp"  // first: it picks the Catch2 v2 or v3 header
#include "support.hpp"

// Standard headers after the test support.
#include <memory>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>

// `Runnable` states every requirement the library relies on, one named concept each: checked
// here with static_asserts; tests/compile_fail/ checks that a compiler names the failing one.

namespace {

using supervisor::Ready;

struct Worker {
  void run(const std::stop_token& /*force*/, Ready& ready) { ready(); }
};

struct ReturnsErrorCode {
  std::error_code run(std::stop_token /*force*/, Ready& ready) const {
    ready();
    return {};
  }
};

/// Movable and copyable, but neither assignable: the library must never assign a runnable.
struct NoAssign {
  NoAssign() = default;
  NoAssign(const NoAssign&) = default;
  NoAssign(NoAssign&&) = default;
  NoAssign& operator=(const NoAssign&) = delete;
  NoAssign& operator=(NoAssign&&) = delete;
  ~NoAssign() = default;
  void run(const std::stop_token& /*force*/, Ready& ready) const { ready(); }
};

struct MoveOnly {
  MoveOnly() = default;
  MoveOnly(const MoveOnly&) = delete;
  MoveOnly(MoveOnly&&) = default;
  MoveOnly& operator=(const MoveOnly&) = delete;
  MoveOnly& operator=(MoveOnly&&) = delete;
  ~MoveOnly() = default;
  void run(const std::stop_token& /*force*/, Ready& ready) const { ready(); }
};

struct NotMovable {
  NotMovable() = default;
  NotMovable(const NotMovable&) = delete;
  NotMovable(NotMovable&&) = delete;
  NotMovable& operator=(const NotMovable&) = delete;
  NotMovable& operator=(NotMovable&&) = delete;
  ~NotMovable() = default;
  void run(const std::stop_token& /*force*/, Ready& ready) const { ready(); }
};

struct NotDestructible {
  NotDestructible() = default;
  NotDestructible(NotDestructible&&) = default;
  ~NotDestructible() = delete;
  void run(const std::stop_token& /*force*/, Ready& ready) const { ready(); }
};

struct NoReady {
  void run(const std::stop_token& /*force*/) const {}
};
struct IntInsteadOfToken {
  void run(int /*force*/, Ready& ready) const { ready(); }
};
/// The library passes a fresh token as a prvalue, which a non-const reference cannot bind.
struct MutableTokenReference {
  void run(std::stop_token& /*force*/, Ready& ready) const { ready(); }
};
struct ReturnsInt {
  int run(const std::stop_token& /*force*/, Ready& ready) const {
    ready();
    return 0;
  }
};
/// `std::errc` is an error condition enum: not convertible to `std::error_code`, so not a result
/// the library can check. Rejected rather than silently ignored.
struct ReturnsErrc {
  std::errc run(const std::stop_token& /*force*/, Ready& ready) const {
    ready();
    return {};
  }
};

template <class A, class B>
concept Chainable = requires(A&& a, B&& b) {
  supervisor::chain(std::forward<A>(a), std::forward<B>(b));
};
template <class A, class B>
concept Parallelable = requires(A&& a, B&& b) {
  supervisor::parallel(std::forward<A>(a), std::forward<B>(b));
};
template <class R>
concept SupervisorAccepts = requires {
  typename supervisor::Supervisor<int, R>;
};

}  // namespace

// Accepted: objects and pointer-like handles, void or std::error_code results.
static_assert(supervisor::Runnable<Worker>);
static_assert(supervisor::Runnable<ReturnsErrorCode>);
static_assert(supervisor::Runnable<std::shared_ptr<Worker>>);
static_assert(supervisor::Runnable<std::shared_ptr<ReturnsErrorCode>>);
static_assert(supervisor::Runnable<Worker*>);
static_assert(supervisor::Runnable<std::unique_ptr<Worker>>);
static_assert(supervisor::Runnable<std::shared_ptr<NotMovable>>);  // The handle moves.
static_assert(supervisor::Runnable<NoAssign>);
static_assert(supervisor::Runnable<MoveOnly>);
static_assert(supervisor::CopyableRunnable<NoAssign>);

// Rejected, each by the named requirement it fails.
static_assert(supervisor::HasRun<NotMovable> && !supervisor::StorableRunnable<NotMovable>);
static_assert(!supervisor::Runnable<NotMovable>);
static_assert(supervisor::HasRun<NotDestructible> &&
              !supervisor::StorableRunnable<NotDestructible>);
static_assert(!supervisor::Runnable<NotDestructible>);
static_assert(!supervisor::HasRun<NoReady> && !supervisor::Runnable<NoReady>);
static_assert(!supervisor::HasRun<IntInsteadOfToken> && !supervisor::Runnable<IntInsteadOfToken>);
static_assert(!supervisor::HasRun<MutableTokenReference> &&
              !supervisor::Runnable<MutableTokenReference>);
static_assert(supervisor::HasRun<ReturnsInt> && !supervisor::RunReturnsVoidOrErrorCode<ReturnsInt>);
static_assert(!supervisor::Runnable<ReturnsInt>);
static_assert(!supervisor::Runnable<ReturnsErrc>);
static_assert(!supervisor::Runnable<std::shared_ptr<ReturnsInt>>);
static_assert(!supervisor::CopyableRunnable<MoveOnly>);
static_assert(!supervisor::CopyableRunnable<std::unique_ptr<Worker>>);

// The adapters and composites apply the same requirements to what they store.
static_assert(!std::is_constructible_v<supervisor::AnyRunnable, NotMovable>);
static_assert(!std::is_constructible_v<supervisor::AnyRunnable, ReturnsInt>);
static_assert(std::is_constructible_v<supervisor::AnyRunnable, const Worker&>);  // Stores a Worker.
static_assert(!Chainable<NotMovable, supervisor::Nop>);
static_assert(!Chainable<supervisor::Nop, ReturnsInt>);
static_assert(!Parallelable<supervisor::Nop, MutableTokenReference>);
// A const lvalue is copied into a non-const member, so a non-const `run` is fine.
static_assert(Chainable<const Worker&, supervisor::Nop>);
static_assert(Parallelable<const Worker&, Worker&>);

// `Supervisor` hands out copies, so it also needs `std::copy_constructible`.
static_assert(SupervisorAccepts<NoAssign>);
static_assert(!SupervisorAccepts<MoveOnly>);

TEST_CASE("Runnable: a runnable that cannot be assigned runs everywhere", "[runnable]") {
  SECTION("Process") {
    supervisor::Process process(NoAssign{});
    process.start();
    process.stop();
    CHECK(process.error() == nullptr);
  }
  SECTION("chain and parallel, with a move-only one") {
    supervisor::Process process(
        supervisor::chain(NoAssign{}, supervisor::parallel(MoveOnly{}, NoAssign{})));
    process.start();
    CHECK(process.state() == supervisor::ProcessState::running);
    process.stop();
    CHECK(process.error() == nullptr);
  }
  SECTION("AnyRunnable") {
    supervisor::Process process(supervisor::AnyRunnable(NoAssign{}));
    process.start();
    process.stop();
    CHECK(process.error() == nullptr);
  }
}
