#pragma once

/// \file
/// `RunOnThread`: an awaitable that runs a blocking body on a thread of its own while the
/// awaiting coroutine is suspended, then resumes it on an executor. Internal.

#include <atomic>
#include <coroutine>
#include <exception>
#include <memory>
#include <system_error>
#include <thread>
#include <utility>

#include "supervisor/detail/fault_injection.hpp"
#include "supervisor/detail/work_context.hpp"
#include "supervisor/executor.hpp"

namespace supervisor::detail {

/// `co_await RunOnThread(executor, work, body)` runs `body(std::error_code&)` on a new thread, as
/// part of the caller's chain of `work` (so that what the body starts can tell that it works for
/// the caller), and gives its code (rethrows its exception). The thread belongs to the awaiter,
/// which joins it on destruction: by then the thread has scheduled the caller, its last touch of
/// the awaiter, and only has to leave. The links of `work` stay valid: the caller, suspended
/// meanwhile, is what they describe.
template <class Body>
class RunOnThread {
 public:
  RunOnThread(ExecutorRef resume_on, const WorkContext* work, Body body)
      : resume_on_(resume_on), work_(work), body_(std::move(body)) {}
  RunOnThread(const RunOnThread&) = delete;
  RunOnThread& operator=(const RunOnThread&) = delete;
  ~RunOnThread() {
    if (!thread_.joinable()) {
      return;
    }
    if (thread_.get_id() == std::this_thread::get_id()) {
      // The executor's `schedule` threw, so the caller was resumed inline, on this thread: it
      // ends by itself once the caller's code lets it.
      thread_.detach();
    } else {
      thread_.join();
    }
  }

  [[nodiscard]] bool await_ready() const noexcept { return false; }

  /// Throws (the caller goes on with the exception, and nothing has run) if no thread can be
  /// made.
  void await_suspend(std::coroutine_handle<> caller) {
    // The thread waits for this before it touches the awaiter: until `thread_` is assigned, the
    // caller must not be resumed (it would destroy the awaiter, and join, meanwhile).
    const auto assigned = std::make_shared<std::atomic<bool>>(false);
    fault_point(FaultPoint::thread_create);
    thread_ = std::thread([this, caller, assigned]() noexcept {
      assigned->wait(false);
      try {
        const WorkScope working(work_);
        body_(code_);
      } catch (...) {
        error_ = std::current_exception();
      }
      const ExecutorRef executor = resume_on_;
      executor.schedule(caller);  // the caller may destroy the awaiter at once: nothing after
    });
    assigned->store(true);
    assigned->notify_one();
  }

  std::error_code await_resume() const {
    if (error_) {
      std::rethrow_exception(error_);
    }
    return code_;
  }

 private:
  ExecutorRef resume_on_;
  const WorkContext* work_;
  Body body_;
  std::error_code code_;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace supervisor::detail
