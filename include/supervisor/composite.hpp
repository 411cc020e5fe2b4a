#pragma once

/// \file
/// Runnables made of runnables: `chain(a, b, c)` starts in order and stops in reverse;
/// `parallel(a, b, c)` starts and stops them together.

#include <array>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include "supervisor/detail/work_context.hpp"
#include "supervisor/runnable.hpp"

namespace supervisor {

/// Two runnables nested: `first` starts; once it is ready, `rest` starts; once `rest` is ready,
/// the chain is ready. On a stop, `rest` stops first, then `first`: the reverse order. A failure
/// anywhere winds down what already runs and is rethrown from `run` (the later runnable's error
/// first, since it is the cause). If `first` ends its `ready` early (its own token), `rest` is
/// forced down and the chain returns by itself.
template <Runnable First, Runnable Rest>
class Chain {
 public:
  Chain(First first, Rest rest) : first_(std::move(first)), rest_(std::move(rest)) {}

  void run(const std::stop_token& force, Ready& ready) {
    RestRunner runner(rest_, force, ready);
    Ready first_ready(runner);
    std::exception_ptr first_failure;
    try {
      detail::invoke_run(first_, force, first_ready);
    } catch (...) {
      first_failure = std::current_exception();
    }
    if (runner.failure) {
      std::rethrow_exception(runner.failure);
    }
    if (first_failure) {
      std::rethrow_exception(first_failure);
    }
  }

 private:
  // `first`'s readiness: runs `rest` inside it, so `first` shuts down only after `rest` has.
  struct RestRunner final : detail::ReadyTarget {
    RestRunner(Rest& r, const std::stop_token& f, Ready& o) : rest(r), force(f), outer(o) {}

    void signal_ready_and_wait(const std::stop_token& early) override {
      if (ran) {
        return;  // A second call to `first`'s ready: `rest` already ran and stopped.
      }
      ran = true;
      std::stop_source rest_force;
      std::stop_callback on_force(force, [&rest_force]() noexcept { rest_force.request_stop(); });
      std::stop_callback on_early(early, [&rest_force]() noexcept { rest_force.request_stop(); });
      RestReady rest_target(outer, rest_force.get_token());
      Ready rest_ready(rest_target);
      try {
        detail::invoke_run(rest, rest_force.get_token(), rest_ready);
      } catch (...) {
        failure = std::current_exception();
      }
      if (ending) {
        ending->request_stop();  // `first`'s ready returns now.
      }
    }

    // `first`'s ready returns once `rest` has returned: for the outer stop, or on its own.
    std::stop_token stopping() override {
      if (!ending) {
        ending.emplace();
        if (ran) {
          ending->request_stop();
        } else {
          on_outer.emplace(outer.stop_token(), detail::RequestStopOf{&*ending});
        }
      }
      return ending->get_token();
    }

    Rest& rest;
    const std::stop_token& force;
    Ready& outer;
    bool ran = false;
    std::exception_ptr failure;
    std::optional<std::stop_source> ending;
    std::optional<std::stop_callback<detail::RequestStopOf>> on_outer;
  };

  /// `rest`'s readiness: signals the outer `ready` (the chain is ready once `rest` is), but its
  /// wait also ends when `rest_force` is requested. The outer `ready` alone does not watch
  /// `rest_force`, so when `first` ended early (a leaf whose body returned), `rest` would block
  /// in it until someone stopped the whole process.
  struct RestReady final : detail::ReadyTarget {
    RestReady(Ready& o, std::stop_token f) : outer(o), rest_force(std::move(f)) {}

    void signal_ready_and_wait(const std::stop_token& early) override {
      std::stop_source ended;
      auto end = [&ended]() noexcept { ended.request_stop(); };
      std::stop_callback on_force(rest_force, end);
      std::stop_callback on_early(early, end);  // `rest`'s own early token.
      outer(ended.get_token());
    }

    std::stop_token stopping() override {
      if (!ending) {
        ending.emplace();
        on_outer.emplace(outer.stop_token(), detail::RequestStopOf{&*ending});
        on_force.emplace(rest_force, detail::RequestStopOf{&*ending});
      }
      return ending->get_token();
    }

    Ready& outer;
    std::stop_token rest_force;
    std::optional<std::stop_source> ending;
    std::optional<std::stop_callback<detail::RequestStopOf>> on_outer;
    std::optional<std::stop_callback<detail::RequestStopOf>> on_force;
  };

  First first_;
  Rest rest_;
};

namespace detail {

/// A factory argument whose stored copy (`std::decay_t`) is `Runnable`: the factories take
/// forwarding references, and `Runnable<X&>` would say nothing about the `X` they store.
template <class A>
concept DecaysToRunnable = Runnable<std::decay_t<A>>;

}  // namespace detail

/// Starts `a`, then `b` once `a` is ready, and so on; stops them in reverse. See `Chain`.
template <detail::DecaysToRunnable A, detail::DecaysToRunnable B>
Chain<std::decay_t<A>, std::decay_t<B>> chain(A&& a, B&& b) {
  return {std::forward<A>(a), std::forward<B>(b)};
}

template <detail::DecaysToRunnable A, detail::DecaysToRunnable B, detail::DecaysToRunnable... More>
auto chain(A&& a, B&& b, More&&... more) {
  return chain(std::forward<A>(a), chain(std::forward<B>(b), std::forward<More>(more)...));
}

/// Runnables run side by side, each on a thread of its own. Ready once every one is ready; a
/// graceful stop stops them all together. If one fails to start or returns early, the others are
/// forced down and `run` returns (rethrowing the first error): before readiness that fails the
/// start, after it the whole group exits. Force reaches every child.
template <Runnable... Rs>
class Parallel {
 public:
  explicit Parallel(Rs... children) : children_(std::move(children)...) {}

  void run(const std::stop_token& force, Ready& ready) {
    Shared shared;
    std::stop_callback on_force(force, [&shared]() noexcept { shared.force.request_stop(); });
    std::stop_callback end_on_force(shared.force.get_token(),
                                    detail::RequestStopOf{&shared.ending});
    std::array<std::exception_ptr, sizeof...(Rs)> failures;
    {
      std::array<std::jthread, sizeof...(Rs)> threads;
      try {
        launch(shared, failures, threads, std::index_sequence_for<Rs...>{});
      } catch (...) {
        shared.force.request_stop();  // So that the children already launched can be joined.
        throw;
      }
      bool all_ready = false;
      {
        std::unique_lock lock(shared.mutex);
        shared.changed.wait(lock,
                            [&] { return shared.readied == sizeof...(Rs) || shared.exited > 0; });
        all_ready = shared.exited == 0;
      }
      if (all_ready) {
        ready(shared.any_exited.get_token());
      }
      // One exited (or the stop is graceful but one ignores it): the rest must not linger. Force
      // goes first: were the graceful flag set first, a child could wake to it and shut down
      // gracefully before seeing the force it is owed.
      if (!all_ready || shared.any_exited.stop_requested()) {
        shared.force.request_stop();
      }
      if (all_ready) {
        {
          std::lock_guard lock(shared.mutex);
          shared.stop = true;
        }
        shared.changed.notify_all();
        shared.ending.request_stop();
      }
    }  // Joins every child.
    for (auto& failure : failures) {
      if (failure) {
        std::rethrow_exception(failure);
      }
    }
  }

 private:
  struct Shared {
    std::mutex mutex;
    std::condition_variable changed;
    std::size_t readied = 0;
    std::size_t exited = 0;
    bool stop = false;
    std::stop_source force;
    std::stop_source any_exited;
    std::stop_source ending;  // the children's `Ready::stop_token`: the stop or force
  };

  struct ChildReady final : detail::ReadyTarget {
    explicit ChildReady(Shared& s) : shared(s) {}
    std::stop_token stopping() override { return shared.ending.get_token(); }
    void signal_ready_and_wait(const std::stop_token& early) override {
      {
        std::lock_guard lock(shared.mutex);
        ++shared.readied;
      }
      shared.changed.notify_all();
      auto notify = [this]() noexcept {
        std::lock_guard lock(shared.mutex);
        shared.changed.notify_all();
      };
      std::stop_callback on_early(early, notify);
      std::stop_callback on_force(shared.force.get_token(), notify);
      std::unique_lock lock(shared.mutex);
      shared.changed.wait(lock, [&] {
        return shared.stop || early.stop_requested() || shared.force.stop_requested();
      });
    }
    Shared& shared;
  };

  template <std::size_t... I>
  void launch(Shared& shared, std::array<std::exception_ptr, sizeof...(Rs)>& failures,
              std::array<std::jthread, sizeof...(Rs)>& threads, std::index_sequence<I...>) {
    // Each child's thread works for the same process as this one (see `WorkContext`).
    const detail::WorkContext* work = detail::current_work();
    ((threads[I] = std::jthread([this, &shared, &failure = failures[I], work] {
        const detail::WorkScope working(work);
        ChildReady target(shared);
        Ready child_ready(target);
        try {
          detail::invoke_run(std::get<I>(children_), shared.force.get_token(), child_ready);
        } catch (...) {
          failure = std::current_exception();
        }
        {
          std::lock_guard lock(shared.mutex);
          ++shared.exited;
        }
        shared.any_exited.request_stop();
        shared.changed.notify_all();
      })),
     ...);
  }

  std::tuple<Rs...> children_;
};

/// Runs the runnables side by side. See `Parallel`.
template <detail::DecaysToRunnable... Rs>
Parallel<std::decay_t<Rs>...> parallel(Rs&&... children) {
  return Parallel<std::decay_t<Rs>...>(std::forward<Rs>(children)...);
}

}  // namespace supervisor
