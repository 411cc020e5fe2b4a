#pragma once

// `Counted`: the smallest coroutine the pool tests schedule by hand. It starts suspended, runs
// to its end when resumed, and frees its own frame; it allocates nothing when it runs.

#include <coroutine>

namespace test {

struct Counted {
  struct promise_type {
    Counted get_return_object() noexcept {
      return Counted{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept {}
  };
  std::coroutine_handle<promise_type> handle;
};

}  // namespace test
