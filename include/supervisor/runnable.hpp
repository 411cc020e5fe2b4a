#pragma once

/// \file
/// `Runnable`: one long-running task, and `Ready`, the signal it gives once it is up.
///
/// A runnable has one operation, `run(force, ready)`, called on a thread of its own:
/// 1. It initialises. Failing here means throwing: the process never became ready.
/// 2. It calls `ready()` (or `ready(token)`) once it is up. `ready` blocks until a graceful stop is
///    requested, until `force` is requested, or until the token it was given is requested (so a
///    runnable whose background work died can make `ready` return early).
/// 3. After `ready` returns it shuts down gracefully (flush, persist, close) and returns. A
///    graceful stop is not a cancellation: it may still use external resources here.
/// 4. `force` is a cancellation signal: once requested, the runnable winds down as fast as it can.
///    A `std::stop_callback` on it (or on `ready`'s token) must not block until the process has
///    ended: a standalone `Process`'s end waits for a request of force in flight, so the two
///    would wait for each other (a supervisor's `run` waits for it before it returns).
///
/// A runnable that returns without calling `ready` failed to start, even if it threw nothing.

#include <concepts>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>

namespace supervisor {

namespace detail {

/// What a `Ready` handle signals to: the process that runs the runnable.
class ReadyTarget {
 public:
  ReadyTarget(const ReadyTarget&) = delete;
  ReadyTarget& operator=(const ReadyTarget&) = delete;

  virtual void signal_ready_and_wait(const std::stop_token& early) = 0;
  /// A token requested once `signal_ready_and_wait` returns or would return for a stop (graceful
  /// or forced), not for `early`.
  virtual std::stop_token stopping() = 0;

 protected:
  ReadyTarget() = default;
  ~ReadyTarget() = default;
};

}  // namespace detail

/// The readiness signal handed to `run`. A small handle; copies signal the same process.
///
/// Calling it marks the process `running` (and lets a blocked `start` return), then blocks the
/// calling thread until a graceful stop is requested, the process's force signal is requested, or
/// `early` is requested. Call it on the thread that called `run`, once; a second call only waits
/// again. Calling it after `run` has returned is undefined behaviour.
class Ready {
 public:
  explicit Ready(detail::ReadyTarget& target) noexcept : target_(&target) {}

  void operator()(const std::stop_token& early = {}) const {
    target_->signal_ready_and_wait(early);
  }

  /// The stop `ready` waits for, as a token: requested once a graceful stop or force is
  /// requested (not on your own `early` token). Pass it to your own blocking calls, before or
  /// after `ready`, so that they end when the process is asked to stop. The token stays valid
  /// after `run` returns (it is then never requested again). Call it on the thread that called
  /// `run`; the first call may throw `std::bad_alloc`.
  [[nodiscard]] std::stop_token stop_token() const { return target_->stopping(); }

 private:
  detail::ReadyTarget* target_;
};

namespace detail {

/// A stop callback that requests `source`: links one stop signal to another.
struct RequestStopOf {
  std::stop_source* source;
  void operator()() const noexcept { source->request_stop(); }
};

// `run` is checked with a prvalue `std::stop_token` and an lvalue `Ready`: the library passes
// exactly that (a token it made for this run; its own `Ready` handle).
template <class R>
concept HasRunMember = requires(R& r, Ready& ready) {
  r.run(std::stop_token{}, ready);
};

template <class R>
concept HasRunThroughPointer = !HasRunMember<R> && requires(R & r, Ready& ready) {
  (*r).run(std::stop_token{}, ready);
};

/// The type `run` returns, for a type that has one.
template <class R>
struct RunResult {};
template <HasRunMember R>
struct RunResult<R> {
  using type = decltype(std::declval<R&>().run(std::stop_token{}, std::declval<Ready&>()));
};
template <HasRunThroughPointer R>
struct RunResult<R> {
  using type = decltype((*std::declval<R&>()).run(std::stop_token{}, std::declval<Ready&>()));
};

}  // namespace detail

// The requirements of `Runnable`, one named concept each, so that a compiler names the one a type
// fails (GCC: "required for the satisfaction of 'StorableRunnable<R>'"; Clang: "does not satisfy
// 'StorableRunnable'").

/// The library keeps its own copy of a runnable: `Process` move-constructs it into the process
/// record, which destroys it when the last owner lets go (composites and `AnyRunnable` likewise
/// move it into their members). None of them assigns a runnable, so a type with deleted
/// assignment operators is fine (only `MapTable::insert_or_assign`, a row replaced in place, needs
/// move assignment).
template <class R>
concept StorableRunnable = std::destructible<R> && std::move_constructible<R>;

/// `r.run(std::stop_token force, supervisor::Ready& ready)` is valid on a non-const lvalue `r`,
/// either on the object itself or through a pointer-like handle (`(*r).run(...)`, for example a
/// `std::shared_ptr<Worker>`). Taking `Ready` by value, by reference or by const reference all
/// work; taking the token by non-const lvalue reference does not (it is passed as a prvalue).
template <class R>
concept HasRun = detail::HasRunMember<R> || detail::HasRunThroughPointer<R>;

/// `run` returns `void`, or something convertible to `std::error_code`, whose non-zero value
/// counts as a failure. Any other result (an `int`, say) is rejected rather than ignored.
template <class R>
concept RunReturnsVoidOrErrorCode = HasRun<R> &&
    (std::is_void_v<typename detail::RunResult<R>::type> ||
     std::convertible_to<typename detail::RunResult<R>::type, std::error_code>);

/// A type whose objects can be run: `StorableRunnable`, `HasRun` and `RunReturnsVoidOrErrorCode`.
/// What the library does with one: `Process` (and `Supervisor`, per process) move-constructs it
/// into the process record, calls `run` on that copy on a thread of its own, and destroys it with
/// the record; it never assigns one. `Supervisor` also copies it (`start` and `get` return copies),
/// so it requires `CopyableRunnable`. See the file comment for what `run` must do; the concept
/// checks what the compiler can.
///
/// `HasRun` is checked first: for a type without `run`, move-constructibility is never asked, so a
/// converting constructor constrained on `Runnable` (as `AnyRunnable`'s) cannot recurse into
/// itself.
template <class R>
concept Runnable = HasRun<R> && RunReturnsVoidOrErrorCode<R> && StorableRunnable<R>;

/// A `Runnable` that can also be copied: `Supervisor` needs it, since `start` and `get` hand the
/// caller a copy of the runnable of a process (and a pass copies rows out of the table).
template <class R>
concept CopyableRunnable = Runnable<R> && std::copy_constructible<R>;

namespace detail {

/// Calls the runnable's `run`, directly or through a pointer-like handle. A returned non-zero
/// `std::error_code` counts as a failure and is thrown as `std::system_error`.
template <HasRun R>
void invoke_run(R& runnable, std::stop_token force, Ready& ready) {
  auto call = [&]() -> decltype(auto) {
    if constexpr (HasRunMember<R>) {
      return runnable.run(std::move(force), ready);
    } else {
      return (*runnable).run(std::move(force), ready);
    }
  };
  using Result = decltype(call());
  if constexpr (std::is_convertible_v<Result, std::error_code>) {
    if (const std::error_code ec = call()) {
      throw std::system_error(ec, "runnable failed");
    }
  } else {
    call();
  }
}

}  // namespace detail

}  // namespace supervisor
