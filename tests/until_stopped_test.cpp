// `until_stopped`: a coroutine suspended until a stop token is requested is resumed once, on
// the executor, and one whose token is already requested goes on without suspending. Driven by
// hand on the test's thread: the executor only records what it is given.

#include "supervisor/until_stopped.hpp"

#include <coroutine>
#include <exception>
#include <stdexcept>
#include <stop_token>
#include <vector>

#include "catch_shim.hpp"
#include "supervisor/spawn.hpp"
#include "supervisor/task.hpp"

namespace {

struct RecordingExecutor {
  std::vector<std::coroutine_handle<>> given;
  void schedule(std::coroutine_handle<> h) { given.push_back(h); }
  /// Resumes the one coroutine given since the last call.
  void resume_the_one() {
    REQUIRE(given.size() == 1);
    const std::coroutine_handle<> h = given.front();
    given.clear();
    h.resume();
  }
};

supervisor::Task<> wait_for(std::stop_token token, supervisor::ExecutorRef executor, int& stage) {
  stage = 1;
  co_await supervisor::until_stopped(std::move(token), executor);
  stage = 2;
}

}  // namespace

TEST_CASE("until_stopped: resumed once, on the executor, when the token is requested",
          "[coroutine][until_stopped]") {
  RecordingExecutor executor;
  std::stop_source source;
  int stage = 0;
  bool finished = false;
  supervisor::spawn(executor, wait_for(source.get_token(), executor, stage),
                    [&](const std::exception_ptr&) { finished = true; });
  executor.resume_the_one();  // spawn's first resumption
  CHECK(stage == 1);          // suspended
  CHECK(executor.given.empty());
  source.request_stop();
  CHECK(stage == 1);          // not resumed on the requesting thread...
  executor.resume_the_one();  // ...but scheduled, once
  CHECK(stage == 2);
  CHECK(finished);
  CHECK(executor.given.empty());
}

TEST_CASE("until_stopped: a token already requested goes on without suspending",
          "[coroutine][until_stopped]") {
  RecordingExecutor executor;
  std::stop_source source;
  source.request_stop();
  int stage = 0;
  bool finished = false;
  supervisor::spawn(executor, wait_for(source.get_token(), executor, stage),
                    [&](const std::exception_ptr&) { finished = true; });
  executor.resume_the_one();
  CHECK(stage == 2);
  CHECK(finished);
  CHECK(executor.given.empty());  // nothing scheduled twice
}

TEST_CASE("until_stopped: an empty executor is a clear error where it is awaited",
          "[coroutine][until_stopped]") {
  RecordingExecutor executor;
  std::stop_source source;
  int stage = 0;
  std::exception_ptr failure;
  supervisor::spawn(executor, wait_for(source.get_token(), supervisor::ExecutorRef{}, stage),
                    [&](std::exception_ptr e) { failure = std::move(e); });
  executor.resume_the_one();
  CHECK(stage == 1);  // it reached the await, and failed there: not suspended, nothing scheduled
  REQUIRE(failure);
  CHECK_THROWS_AS(std::rethrow_exception(failure), std::invalid_argument);
  CHECK(executor.given.empty());
  source.request_stop();  // no callback was left behind to resume it
  CHECK(executor.given.empty());
}
