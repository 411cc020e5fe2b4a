#pragma once

/// \file
/// The one place that calls a user's callable that may or may not take a stop token.

#include <functional>
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

}  // namespace supervisor::detail
