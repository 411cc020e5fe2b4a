#pragma once

/// \file
/// Ready-made runnables: `nop()`, `from_function(f)`, `start_stop(start, stop)`,
/// `leaf(body, graceful_stop)`, `leaf(body)`, and `AnyRunnable` to keep different kinds in one
/// table.

#include <exception>
#include <functional>
#include <memory>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>

#include "supervisor/detail/invoke.hpp"
#include "supervisor/detail/work_context.hpp"
#include "supervisor/runnable.hpp"

namespace supervisor {

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
    // The body's thread works for the same process: a `stop` of its key from there fails
    // instead of waiting for itself (this thread joins the body's before `run` returns).
    const detail::WorkContext* work = detail::current_work();
    std::jthread worker([&, work] {
      const detail::WorkScope working(work);
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

/// A loop-style runnable whose body gets a fresh stop token on every run: `body(stop)` runs on a
/// thread of its own until `stop` is requested, which happens on a graceful stop and on force.
/// The process is ready at once; if the body returns early, the process winds down (and a pass
/// restarts it). Copies can be run again: nothing of one run leaks into the next.
template <class Body>
class LoopLeaf {
 public:
  explicit LoopLeaf(Body body) : body_(std::move(body)) {}

  void run(const std::stop_token& force, Ready& ready) {
    std::stop_source quit;
    std::stop_callback forward_force(force, [&quit]() noexcept { quit.request_stop(); });
    leaf([&] { std::invoke(body_, quit.get_token()); }, [&] { quit.request_stop(); })
        .run(force, ready);
  }

 private:
  Body body_;
};

/// See `LoopLeaf`.
template <class Body>
LoopLeaf<std::decay_t<Body>> leaf(Body&& body) {
  return LoopLeaf<std::decay_t<Body>>(std::forward<Body>(body));
}

/// Any runnable behind one cheap-to-copy handle, so that one table can hold different kinds (a
/// `leaf` here, a `start_stop` there). Copies share the wrapped runnable, as copies of a
/// `std::shared_ptr<Worker>` do; each process runs it with its own `force` and `ready`.
class AnyRunnable {
 public:
  // The exclusion comes first: checking `Runnable<AnyRunnable>` (move-constructible?) would
  // consult this very constructor.
  template <class R>
  requires(!std::is_same_v<std::remove_cvref_t<R>, AnyRunnable> && Runnable<std::remove_cvref_t<R>>)
      // NOLINTNEXTLINE(google-explicit-constructor, bugprone-forwarding-reference-overload)
      AnyRunnable(R&& runnable)
      : impl_(std::make_shared<Model<std::remove_cvref_t<R>>>(std::forward<R>(runnable))) {}

  void run(std::stop_token force, Ready& ready) const { impl_->run(std::move(force), ready); }

 private:
  struct Concept {
    Concept() = default;
    Concept(const Concept&) = delete;
    Concept& operator=(const Concept&) = delete;
    virtual ~Concept() = default;
    virtual void run(std::stop_token force, Ready& ready) = 0;
  };

  template <class R>
  struct Model final : Concept {
    explicit Model(R r) : runnable(std::move(r)) {}
    void run(std::stop_token force, Ready& ready) override {
      detail::invoke_run(runnable, std::move(force), ready);
    }
    R runnable;
  };

  std::shared_ptr<Concept> impl_;
};

}  // namespace supervisor
