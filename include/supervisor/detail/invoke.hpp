#pragma once

/// \file
/// The one place that calls a user's callable that may or may not take a stop token (and the
/// callable `run_until` uses when given none).

#include <condition_variable>
#include <functional>
#include <mutex>
#include <stop_token>
#include <type_traits>

namespace supervisor::detail {

/// Calls `f(token)` if `f` takes a `std::stop_token`, else `f()`.
template <class F>
decltype(auto) invoke_maybe_with_token(F& f, const std::stop_token& token) {
  if constexpr (std::is_invocable_v<F&, const std::stop_token&>) {
    return std::invoke(f, token);
  } else {
    return std::invoke(f);
  }
}

/// The callback of a `run_until` given none: blocks until `stopping` is requested.
inline void wait_for_stop(const std::stop_token& stopping) {
  std::mutex mutex;
  std::condition_variable_any wake;
  std::unique_lock lock(mutex);
  wake.wait(lock, stopping, [] { return false; });
}

}  // namespace supervisor::detail
