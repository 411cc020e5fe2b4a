#pragma once

/// \file
/// Ready-made runnables: `nop()`, `from_function(f)`, `start_stop(start, stop)` and
/// `leaf(body, graceful_stop)`.

#include <exception>
#include <functional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>

#include "supervisor/runnable.hpp"

namespace supervisor {

namespace detail {

/// Calls `f(force)` if it takes a stop token, else `f()`.
template <class F>
decltype(auto) invoke_maybe_with_token(F& f, const std::stop_token& force) {
  if constexpr (std::is_invocable_v<F&, const std::stop_token&>) {
    return std::invoke(f, force);
  } else {
    return std::invoke(f);
  }
}

}  // namespace detail

/// A runnable that does nothing: it is ready at once and returns when stopped.
struct Nop {
  void run(const std::stop_token& /*force*/, Ready& ready) const { ready(); }
};

/// See `Nop`.
inline Nop nop() noexcept { return {}; }

/// A runnable from a plain callable `f(std::stop_token force, supervisor::Ready& ready)`, which
/// follows the `Runnable` contract itself (call `ready` once up; return when it returns).
template <class F>
class FunctionRunnable {
 public:
  explicit FunctionRunnable(F f) : f_(std::move(f)) {}
  decltype(auto) run(std::stop_token force, Ready& ready) {
    return std::invoke(f_, std::move(force), ready);
  }

 private:
  F f_;
};

/// See `FunctionRunnable`.
template <class F>
FunctionRunnable<std::decay_t<F>> from_function(F&& f) {
  return FunctionRunnable<std::decay_t<F>>(std::forward<F>(f));
}

/// A runnable from a pair of calls: `start` initialises (throw to fail), then the process is
/// ready, and `stop` shuts down once a stop is requested. Each may take the force token.
template <class Start, class Stop>
class StartStop {
 public:
  StartStop(Start start, Stop stop) : start_(std::move(start)), stop_(std::move(stop)) {}
  void run(const std::stop_token& force, Ready& ready) {
    detail::invoke_maybe_with_token(start_, force);
    ready();
    detail::invoke_maybe_with_token(stop_, force);
  }

 private:
  Start start_;
  Stop stop_;
};

/// See `StartStop`.
template <class Start, class Stop>
StartStop<std::decay_t<Start>, std::decay_t<Stop>> start_stop(Start&& start, Stop&& stop) {
  return {std::forward<Start>(start), std::forward<Stop>(stop)};
}

/// A runnable around loop-style code. `body(force)` runs on a thread of its own and the process
/// is ready at once. When a stop is requested, `graceful_stop()` (or `graceful_stop(force)`) is
/// called on the process's thread to ask the body to finish, and `run` returns once the body has
/// returned. If the body returns early, the process winds down the same way (so the supervisor
/// sees it exit and restarts it on the next pass).
///
/// Errors: the body's exception is rethrown from `run`; else `graceful_stop`'s. The body's thread
/// is always joined before `run` returns.
template <class Body, class GracefulStop>
class Leaf {
 public:
  Leaf(Body body, GracefulStop graceful_stop)
      : body_(std::move(body)), graceful_stop_(std::move(graceful_stop)) {}

  void run(const std::stop_token& force, Ready& ready) {
    std::exception_ptr body_failure;
    std::stop_source body_returned;
    std::jthread worker([&] {
      try {
        detail::invoke_maybe_with_token(body_, force);
      } catch (...) {
        body_failure = std::current_exception();
      }
      body_returned.request_stop();
    });
    std::exception_ptr stop_failure;
    try {
      ready(body_returned.get_token());
      detail::invoke_maybe_with_token(graceful_stop_, force);
    } catch (...) {
      stop_failure = std::current_exception();
    }
    worker.join();
    if (body_failure) {
      std::rethrow_exception(body_failure);
    }
    if (stop_failure) {
      std::rethrow_exception(stop_failure);
    }
  }

 private:
  Body body_;
  GracefulStop graceful_stop_;
};

/// See `Leaf`.
template <class Body, class GracefulStop>
Leaf<std::decay_t<Body>, std::decay_t<GracefulStop>> leaf(Body&& body,
                                                          GracefulStop&& graceful_stop) {
  return {std::forward<Body>(body), std::forward<GracefulStop>(graceful_stop)};
}

}  // namespace supervisor
