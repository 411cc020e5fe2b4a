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

 private:
  detail::ReadyTarget* target_;
};

namespace detail {

template <class R>
concept HasRunMember = requires(R& r, std::stop_token force, Ready& ready) {
  r.run(force, ready);
};

template <class R>
concept HasRunThroughPointer =
    !HasRunMember<R> && requires(R & r, std::stop_token force, Ready& ready) {
  (*r).run(force, ready);
};

/// Calls the runnable's `run`, directly or through a pointer-like handle. A returned non-zero
/// `std::error_code` counts as a failure and is thrown as `std::system_error`.
template <class R>
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

/// A type whose objects can be run: `r.run(std::stop_token force, supervisor::Ready& ready)` is
/// valid, either on the object itself or through a pointer-like handle (`std::shared_ptr<Worker>`
/// where `Worker` has `run`). `run` returns `void`, or a `std::error_code` whose non-zero value
/// counts as a failure. Taking `Ready` by value, by reference or by const reference all work.
template <class R>
concept Runnable = detail::HasRunMember<R> || detail::HasRunThroughPointer<R>;

}  // namespace supervisor
