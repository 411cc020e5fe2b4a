// Adversarial review of the operations layer (e0ad8b3): tests that show defects.
//
// Each TEST_CASE here is expected to FAIL on e0ad8b3 (that is the point: they document bugs).
// Tests of a liveness defect (a hang) cannot be decided without a bound: they wait a short,
// bounded time for something that, with the defect fixed, happens at once, and then release the
// hang themselves (cancel) so the suite does not hang. Everything else is latches and counters.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <utility>

#include "catch_shim.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;

/// A latch with a bounded wait (for the liveness checks only).
class Latch {
 public:
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool wait_for(std::chrono::milliseconds bound) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, bound, [&] { return open_; });
  }
  void wait() { (void)wait_for(test::patience); }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

/// A runnable whose body the test scripts per run (1, 2, ...). Copies share the script.
struct Script {
  std::atomic<int> runs{0};
  test::Event entered;
  test::Event returned;
  std::function<std::error_code(int run, const std::stop_token& force, supervisor::Ready& ready)>
      body;
};

struct Scripted {
  std::shared_ptr<Script> script = std::make_shared<Script>();

  std::error_code run(std::stop_token force, supervisor::Ready& ready) const {
    const int n = ++script->runs;
    script->entered.notify();
    std::error_code ec = script->body(n, force, ready);
    script->returned.notify();
    return ec;
  }
};

void block_until(const std::stop_token& token) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait(lock, token, [] { return false; });
}

/// A table whose cursor calls a hook before each `next()`: lets a test hold a pass mid-way.
struct HookTable {
  using Rows = supervisor::MapTable<std::string, Scripted>;
  std::shared_ptr<Rows> rows = std::make_shared<Rows>();
  std::atomic<int> iterations{0};
  std::function<void(int iteration, std::size_t position)> on_next;  // set before `run`

  struct Cursor {
    Rows::Cursor inner;
    HookTable* table;
    int iteration;
    std::size_t position = 0;
    bool next() {
      if (table->on_next) {
        table->on_next(iteration, position);
      }
      ++position;
      return inner.next();
    }
    std::pair<std::string, Scripted> get() { return inner.get(); }
    void close() { inner.close(); }
  };

  std::optional<Scripted> get(const std::string& key) { return rows->get(key); }
  Cursor iterate() { return Cursor{rows->iterate(), this, ++iterations}; }
};

using Sup = supervisor::Supervisor<std::string, Scripted>;

/// Counts events by kind.
struct EventCounts {
  std::array<test::Event, supervisor::event_kind_count> by_kind;
  std::function<void(const supervisor::Event<std::string>&)> hook() {
    return [this](const supervisor::Event<std::string>& e) {
      by_kind[static_cast<std::size_t>(e.kind)].notify();
    };
  }
  test::Event& operator[](supervisor::EventKind kind) {
    return by_kind[static_cast<std::size_t>(kind)];
  }
};

/// `run` on a thread of its own, ended by `finish` (graceful) or `cancel` (forced).
struct Runner {
  Sup& sup;
  std::stop_source cancel_source;
  std::stop_source finish_source;
  test::Event in_callback;
  std::unique_ptr<test::Background> thread;

  explicit Runner(Sup& s) : sup(s) {}
  ~Runner() {
    cancel_source.request_stop();
    thread.reset();
  }
  void start() {
    thread = std::make_unique<test::Background>([this] {
      sup.run(cancel_source.get_token(), [this](std::stop_token stopping) {
        in_callback.notify();
        test::wait_until_either(stopping, finish_source.get_token());
      });
    });
  }
};

bool has_key(const Sup& sup, const std::string& key) {
  for (const auto& k : sup.keys()) {
    if (k == key) {
      return true;
    }
  }
  return false;
}

}  // namespace

// ---- 1. run's graceful shutdown hangs while a loop pass waits for a start slot -------------
//
// `run` (supervisor_run.hpp) joined the loop thread (`loop.stop()`) before `shut_down` closed
// the pacer. A loop pass blocked in `StartPacer::acquire` (`start_in_background`) waits
// for a slot held by a start that only ends when it is asked to stop, which `shut_down` does
// after the join: run never returns (shutdown_timeout does not help: it is never reached).
TEST_CASE("review: graceful shutdown while a loop pass waits for a start slot does not hang",
          "[operations][review]") {
  auto clock = std::make_shared<supervisor::ManualClock>();
  auto table = std::make_shared<HookTable>();
  Scripted slow;  // never ready: holds its slot until it is stopped (forced from `starting`)
  slow.script->body = [](int, const std::stop_token& force, supervisor::Ready&) {
    block_until(force);
    return std::error_code{};
  };
  table->rows->insert_or_assign("a", slow);
  table->rows->insert_or_assign("b", slow);
  test::Event loop_pass;
  table->on_next = [&](int iteration, std::size_t position) {
    if (iteration == 2 && position == 0) {
      loop_pass.notify();
    }
  };
  supervisor::Options<std::string> options;
  options.clock = clock;
  options.initial_wait = 0s;
  options.max_starts_in_flight = 1;
  options.on_error = nullptr;
  Sup sup(table, options);
  Runner runner(sup);
  runner.start();
  REQUIRE(runner.in_callback.wait());
  // The initial pass launched one row and ran out of slots; the loop's pass (iteration 2) now
  // goes on to the other row and blocks in acquire: nothing but that process's end frees it.
  REQUIRE(loop_pass.wait());
  REQUIRE(slow.script->entered.wait(1));

  runner.finish_source.request_stop();  // graceful shutdown
  // Fixed: shut_down asks the starting process to stop, so it returns at once.
  Latch returned;
  std::jthread watch([&] {
    (void)slow.script->returned.wait(1);
    returned.open();
  });
  const bool shut_down = returned.wait_for(test::patience);
  runner.cancel_source.request_stop();  // release the hang either way
  REQUIRE(runner.thread->join() == nullptr);
  CHECK(shut_down);
}

// ---- 2. a complete pass forgets the history of a key whose process exits during it --------
//
// `prune_and_forget` (supervisor_reconcile.hpp): a history is dropped when `seen_pass() < pass`
// and the key has no process. A running key's probe in `run_pass` did not mark its history seen;
// if the process exits (and records a failure or a give-up into the old history) after the probe
// and before the pass ends, the pass erases that history: backoff, give-up and counts are lost.
TEST_CASE("review: a give-up recorded while a pass runs survives the end of the pass",
          "[operations][review]") {
  auto clock = std::make_shared<supervisor::ManualClock>();
  auto table = std::make_shared<HookTable>();
  Scripted key;
  std::stop_source let_exit;
  key.script->body = [&](int run, const std::stop_token&, supervisor::Ready& ready) {
    if (run == 1) {  // a clean exit after ready: the key gets a history
      std::stop_source now;
      now.request_stop();
      ready(now.get_token());
      return std::error_code{};
    }
    ready(let_exit.get_token());  // run 2: runs until the test lets it fail
    return make_error_code(supervisor::errc::do_not_restart);
  };
  table->rows->insert_or_assign("k", key);
  std::atomic<bool> hold{false};
  test::Event in_pass;
  Latch let_pass_end;
  table->on_next = [&](int /*iteration*/, std::size_t position) {
    if (position == 1 && hold.exchange(false)) {  // after the probe of "k"
      in_pass.notify();
      let_pass_end.wait();
    }
  };
  EventCounts events;
  test::Reports<std::string> reports;
  supervisor::Options<std::string> options;
  options.clock = clock;
  options.on_event = events.hook();
  options.on_error = reports.hook();
  Sup sup(table, options);
  Runner runner(sup);
  runner.start();
  REQUIRE(runner.in_callback.wait());
  REQUIRE(events[supervisor::EventKind::exited].wait(1));
  REQUIRE(test::eventually([&] { return !has_key(sup, "k"); }));

  REQUIRE(sup.reconcile() == std::error_code{});  // starts run 2 (marks the history seen)
  REQUIRE(events[supervisor::EventKind::ready].wait(2));

  hold = true;
  test::Background pass([&] { (void)sup.reconcile(); });
  REQUIRE(in_pass.wait());
  let_exit.request_stop();  // run 2 fails with do_not_restart: the key is given up
  REQUIRE(events[supervisor::EventKind::given_up].wait(1));
  REQUIRE(test::eventually([&] { return !has_key(sup, "k"); }));
  let_pass_end.open();
  REQUIRE(pass.join() == nullptr);

  const auto snap = sup.snapshot();
  CHECK(snap.count(supervisor::KeyState::given_up) == 1);
  // And the next pass must not start a given-up key.
  REQUIRE(sup.reconcile() == std::error_code{});
  CHECK_FALSE(has_key(sup, "k"));

  runner.finish_source.request_stop();
  REQUIRE(runner.thread->join() == nullptr);
}

// ---- 3. reconcile(key) waits for a start slot -----------------------------------------------
//
// README: "reconcile(key), reset(key): never waits for a start or a stop". With
// max_starts_in_flight, reconcile(key) calls start_in_background with no tracker
// (supervisor_reconcile.hpp), which blocked in StartPacer::acquire (`start_in_background`)
// until another start ends. Called from a paced runnable before its `ready`, it deadlocks.
TEST_CASE("review: reconcile(key) does not wait for a start slot", "[operations][review]") {
  auto clock = std::make_shared<supervisor::ManualClock>();
  auto table = std::make_shared<HookTable>();
  Scripted slow;
  slow.script->body = [](int, const std::stop_token& force, supervisor::Ready&) {
    block_until(force);
    return std::error_code{};
  };
  table->rows->insert_or_assign("a", slow);
  supervisor::Options<std::string> options;
  options.clock = clock;
  options.initial_wait = 0s;
  options.max_starts_in_flight = 1;
  options.on_error = nullptr;
  Sup sup(table, options);
  Runner runner(sup);
  runner.start();
  REQUIRE(runner.in_callback.wait());
  REQUIRE(slow.script->entered.wait(1));  // "a" holds the only slot, for as long as it starts

  table->rows->insert_or_assign("b", slow);
  Latch returned;
  test::Background call([&] {
    (void)sup.reconcile("b");
    returned.open();
  });
  const bool did_return = returned.wait_for(test::patience);
  runner.cancel_source.request_stop();  // frees the slot either way
  REQUIRE(call.join() == nullptr);
  REQUIRE(runner.thread->join() == nullptr);
  CHECK(did_return);
}

// ---- 4. a process failing after the callback returned escalates the run -------------------
//
// `process_exiting` counts an exit unless `parent_` is stopped or `shutting_down_`, but
// `shutting_down_` was set only in `shut_down`, after `loop.stop()`
// has joined the loop (which may be in the middle of a pass). A failure in that window is
// recorded and may escalate: run then fails with errc::escalated although its callback
// returned normally and shutdown had begun.
TEST_CASE("review: a failure after the callback returned does not escalate the run",
          "[operations][review]") {
  auto clock = std::make_shared<supervisor::ManualClock>();
  auto table = std::make_shared<HookTable>();
  Scripted key;
  std::stop_source let_fail;
  key.script->body = [&](int, const std::stop_token&, supervisor::Ready& ready) {
    ready(let_fail.get_token());
    if (!let_fail.stop_requested()) {
      return std::error_code{};  // stopped by the shutdown
    }
    return make_error_code(supervisor::errc::escalate);
  };
  table->rows->insert_or_assign("k", key);
  std::atomic<bool> hold{false};
  test::Event in_pass;
  Latch let_pass_end;
  table->on_next = [&](int, std::size_t) {
    if (hold.exchange(false)) {
      in_pass.notify();
      let_pass_end.wait();
    }
  };
  EventCounts events;
  supervisor::Options<std::string> options;
  options.clock = clock;
  options.on_event = events.hook();
  options.on_error = nullptr;
  Sup sup(table, options);
  std::error_code run_ec;
  std::stop_source finish;
  test::Event in_callback;
  test::Background runner([&] {
    sup.run(
        supervisor::Cancel{},
        [&](std::stop_token stopping) {
          in_callback.notify();
          test::wait_until_either(stopping, finish.get_token());
        },
        run_ec);
  });
  REQUIRE(in_callback.wait());
  REQUIRE(events[supervisor::EventKind::ready].wait(1));

  // A loop pass, held in the table.
  hold = true;
  REQUIRE(clock->wait_for_sleepers(1));
  clock->advance(std::chrono::minutes(1));
  REQUIRE(in_pass.wait());
  // The callback returns; run stops the loop, which waits for the held pass.
  finish.request_stop();
  REQUIRE(test::eventually([&] { return sup.reconcile() == supervisor::errc::not_running; }));
  let_fail.request_stop();  // the process fails now, after the callback returned
  REQUIRE(events[supervisor::EventKind::failed].wait(1));
  REQUIRE(test::eventually([&] { return !has_key(sup, "k"); }));
  let_pass_end.open();
  REQUIRE(runner.join() == nullptr);
  CHECK(events[supervisor::EventKind::escalated].count() == 0);
  CHECK(run_ec == std::error_code{});
}

// ---- 5. backoff_delay with max_backoff = duration::max() ------------------------------------
//
// restart_policy.hpp:206-215: the cap in double seconds rounds up past INT64_MAX nanoseconds, and
// duration_cast of it is undefined (x86: INT64_MIN, a negative delay; next_start_ = now + delay
// then overflows too). "Never negative" is promised.
TEST_CASE("review: backoff_delay with an unbounded max_backoff is not negative",
          "[operations][review]") {
  supervisor::RestartPolicy policy;
  policy.initial_backoff = 1s;
  policy.max_backoff = supervisor::RestartPolicy::duration::max();
  policy.jitter = 0.0;
  volatile std::uint32_t failures = 80;  // 2^79 s: past the cap
  const auto delay = supervisor::backoff_delay(policy, failures, 0.0);
  CHECK(delay >= supervisor::RestartPolicy::duration::zero());
}
