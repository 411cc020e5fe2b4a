// A coroutine caller whose wait for a process's end is canceled is scheduled by the cancel, on
// the canceling thread, outside the record's lock. Should the process end meanwhile, its task
// waits for that schedule to finish before it calls its settle hook: the hook may let `run`
// return and its executor go, and the schedule must not reach an executor that is gone.

#include <atomic>
#include <coroutine>
#include <exception>
#include <memory>
#include <stop_token>
#include <system_error>
#include <thread>

#include "catch_shim.hpp"
#include "fifo_loop.hpp"
#include "supervisor/supervisor.hpp"
#include "support.hpp"

namespace {

using supervisor::Task;

struct EndsOnStop {
  Task<> run(std::stop_token /*force*/, supervisor::AsyncReady& ready) const { co_await ready; }
};

/// A process that says when its settle hook has run.
class SettleProbe final : public supervisor::detail::ProcessCore<EndsOnStop> {
 public:
  using ProcessCore::ProcessCore;
  std::atomic<bool> settled{false};

 private:
  [[nodiscard]] SettleHook settle_hook() const noexcept override {
    return {[](void* self) noexcept {
              auto* probe = static_cast<SettleProbe*>(self);
              probe->settled.store(true);
              probe->settled.notify_all();
            },
            const_cast<SettleProbe*>(this)};  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  }
};

/// A one-thread loop whose `schedule`, when called on the thread named by `hold_here`, blocks
/// until `release` (at the latest when the test gives up waiting).
class HoldingLoop {
 public:
  void schedule(std::coroutine_handle<> h) {
    if (held_thread_.load() == std::this_thread::get_id()) {
      held_.store(true);
      (void)test::eventually([&] { return released_.load(); });
    }
    loop_.schedule(h);
  }
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return loop_.running_in_this_thread();
  }
  void hold_here() { held_thread_.store(std::this_thread::get_id()); }
  [[nodiscard]] bool wait_held() const {
    return test::eventually([&] { return held_.load(); });
  }
  void release() { released_.store(true); }

 private:
  std::atomic<std::thread::id> held_thread_{};
  std::atomic<bool> held_{false};
  std::atomic<bool> released_{false};
  test::FifoLoop loop_;  // last: its thread is joined first
};

}  // namespace

TEST_CASE("coroutine process: its end waits for a cancel still scheduling its caller",
          "[coroutine][async][cancel]") {
  HoldingLoop loop;
  const supervisor::ExecutorRef executor(loop);
  auto core = std::make_shared<SettleProbe>(EndsOnStop{}, std::stop_token{});
  REQUIRE(core->begin_start(executor, core) == std::error_code{});
  REQUIRE(core->await_start(supervisor::Cancel{}) == std::error_code{});

  // A caller on the loop waits for the end, cancelably; the task after it runs once it waits.
  std::stop_source cancel;
  const auto caller_ended = std::make_shared<test::Event>();
  const auto caller_waits = std::make_shared<test::Event>();
  const auto caller = [&]() -> Task<> { (void)co_await core->until_done(cancel.get_token()); };
  const auto marker = [&]() -> Task<> {
    caller_waits->notify();
    co_return;
  };
  supervisor::spawn(executor, caller(),
                    [caller_ended](const std::exception_ptr&) { caller_ended->notify(); });
  supervisor::spawn(executor, marker(), [](const std::exception_ptr&) {});
  REQUIRE(caller_waits->wait());

  // The cancel unlinks the caller and is held in the schedule that resumes it.
  std::jthread canceler([&] {
    loop.hold_here();
    cancel.request_stop();
  });
  struct Release {  // declared after the canceler: let go before it is joined, however this ends
    HoldingLoop& loop;
    ~Release() { loop.release(); }
  } release{loop};
  REQUIRE(loop.wait_held());

  // The process ends now, on the loop's thread. Its task must not settle before the cancel's
  // schedule has returned: it waits on the record's signal instead.
  core->request_stop();
  REQUIRE(core->wait_done(supervisor::Cancel{test::patience}));
  // The loop's thread is on its way to one or the other.
  REQUIRE(test::eventually([&] { return core->settled.load() || core->waiters() != 0; }));
  CHECK_FALSE(core->settled.load());
  CHECK(core->waiters() == 1);

  loop.release();
  CHECK(test::eventually([&] { return core->settled.load(); }));
  CHECK(caller_ended->wait());
}
