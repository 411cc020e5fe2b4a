// `Task<T>`: its result and exception reach the awaiter, and a task awaited a second time (or
// an empty one) throws `std::logic_error` instead of resuming a finished frame. Driven by hand
// on the test's thread through `spawn` and an executor that only records.

#include "supervisor/task.hpp"

#include <coroutine>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "catch_shim.hpp"
#include "supervisor/spawn.hpp"

namespace {

struct InlineExecutor {
  void schedule(std::coroutine_handle<> h) { h.resume(); }
};

supervisor::Task<int> answer() { co_return 42; }
supervisor::Task<int> failing() {
  throw std::runtime_error("inside");
  co_return 0;
}

}  // namespace

TEST_CASE("task: the result or the exception reaches the awaiter; a second await throws",
          "[coroutine][task]") {
  InlineExecutor executor;
  std::vector<std::string> seen;
  std::exception_ptr outcome;
  supervisor::spawn(
      executor,
      [](std::vector<std::string>& out) -> supervisor::Task<> {
        supervisor::Task<int> task = answer();
        out.push_back(std::to_string(co_await std::move(task)));
        try {
          (void)co_await std::move(task);  // NOLINT(bugprone-use-after-move): the point
        } catch (const std::logic_error& e) {
          out.emplace_back(e.what());
        }
        try {
          (void)co_await failing();
        } catch (const std::runtime_error& e) {
          out.emplace_back(e.what());
        }
      }(seen),
      [&](std::exception_ptr e) { outcome = std::move(e); });
  CHECK(outcome == nullptr);
  CHECK(seen ==
        std::vector<std::string>{"42", "supervisor::Task: awaited twice, or empty", "inside"});
}
