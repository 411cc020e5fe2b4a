// Operations: reconcile() (a pass now, coalesced), reconcile(key), pruning, and paced starts
// (Options::max_starts_in_flight), on the manual clock.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "catch_shim.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::EventKind;
using test::Probe;
using test::Shutdown;
using test::Startup;

namespace {

/// A `MapTable` that counts its `iterate` calls, and can hold the `hold_at`-th one until
/// `release` is notified.
template <class R>
struct CountingTable {
  using Rows = supervisor::MapTable<std::string, R>;
  std::shared_ptr<Rows> rows = std::make_shared<Rows>();
  std::atomic<int> iterates{0};
  int hold_at = 0;  // zero: hold none
  test::Event held;
  test::Event release;

  std::optional<R> get(const std::string& key) { return rows->get(key); }
  typename Rows::Cursor iterate() {
    const int n = ++iterates;
    if (n == hold_at) {
      held.notify();
      (void)release.wait();
    }
    return rows->iterate();
  }
};

/// A supervisor of `R` on a manual clock over a `CountingTable`, recording the keys of
/// `stop_requested` events, with `run` on a thread of its own whose callback lasts until
/// `finish()`.
template <class R>
struct Rig {
  using Sup = supervisor::Supervisor<std::string, R>;
  std::shared_ptr<supervisor::ManualClock> clock = std::make_shared<supervisor::ManualClock>();
  std::shared_ptr<CountingTable<R>> table = std::make_shared<CountingTable<R>>();
  std::unique_ptr<Sup> sup;
  std::stop_source cancel_source;
  std::stop_source finish_source;
  test::Event in_callback;
  test::Event restart_scheduled;
  std::unique_ptr<test::Background> runner;
  mutable std::mutex mutex;
  std::vector<std::string> stop_requested;

  explicit Rig(const std::function<void(supervisor::Options<std::string>&)>& tweak = {}) {
    supervisor::Options<std::string> o;
    o.clock = clock;
    o.on_error = {};
    o.on_event = [this](const supervisor::Event<std::string>& e) {
      if (e.kind == EventKind::stop_requested) {
        std::lock_guard lock(mutex);
        stop_requested.push_back(e.key);
      } else if (e.kind == EventKind::restart_scheduled) {
        restart_scheduled.notify();
      }
    };
    if (tweak) {
      tweak(o);
    }
    sup = std::make_unique<Sup>(table, o);
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;
  ~Rig() {
    table->release.notify();       // a held pass goes on
    cancel_source.request_stop();  // a failed REQUIRE must not leave `run` hanging
    runner.reset();
  }

  void start_run(bool wait_for_callback = true) {
    runner = std::make_unique<test::Background>([this] {
      sup->run(supervisor::Cancel(cancel_source.get_token()), [this](std::stop_token stopping) {
        in_callback.notify();
        test::wait_until_either(stopping, finish_source.get_token());
      });
    });
    if (wait_for_callback) {
      REQUIRE(in_callback.wait());
    }
  }

  /// Ends the callback (graceful shutdown); "" once `run` has returned without an exception,
  /// else what went wrong.
  std::string finish() {
    finish_source.request_stop();
    if (!runner->wait()) {
      return "run did not return";
    }
    const std::exception_ptr failure = runner->join();
    return failure ? test::what(failure) : "";
  }

  /// Lets the restart loop run one pass, and waits until it has armed its next wait.
  void restart_pass() {
    REQUIRE(clock->wait_for_sleepers(1));
    const auto arms = clock->arms();
    clock->advance(1min);
    REQUIRE(clock->wait_for_arms(arms + 1));
  }

  std::vector<std::string> stops() const {
    std::lock_guard lock(mutex);
    return stop_requested;
  }

  bool has_key(const std::string& key) const {
    auto keys = sup->keys();
    return std::find(keys.begin(), keys.end(), key) != keys.end();
  }

  std::error_code get_code(const std::string& key) const {
    std::error_code ec;
    (void)sup->get(key, ec);
    return ec;
  }
};

using ProbeRig = Rig<Probe>;

}  // namespace

// ---- reconcile() -------------------------------------------------------------------------------

TEST_CASE("reconcile outside run fails with not_running", "[operations][reconcile]") {
  ProbeRig rig;
  rig.table->rows->insert_or_assign("a", Probe::with(Startup::ready));
  CHECK(rig.sup->reconcile() == errc::not_running);
  CHECK(rig.sup->reconcile("a") == errc::not_running);
  rig.start_run();
  REQUIRE(rig.finish() == "");
  CHECK(rig.sup->reconcile() == errc::not_running);
  CHECK(rig.sup->reconcile("a") == errc::not_running);
  CHECK(rig.table->iterates == 1);  // the initial pass only
}

TEST_CASE("reconcile() starts a new row now, without the clock", "[operations][reconcile]") {
  ProbeRig rig;
  rig.start_run();
  const auto before = rig.clock->now();
  auto b = Probe::with(Startup::ready);
  rig.table->rows->insert_or_assign("b", b);
  CHECK(rig.sup->reconcile() == std::error_code{});
  CHECK(rig.table->iterates == 2);
  REQUIRE(b.state->readied.wait());
  CHECK(rig.clock->now() == before);
  REQUIRE(rig.finish() == "");
}

TEST_CASE("reconcile() calls during a pass coalesce into one more pass",
          "[operations][reconcile]") {
  ProbeRig rig;
  rig.table->hold_at = 2;  // the first pass after the initial one
  rig.table->rows->insert_or_assign("a", Probe::with(Startup::ready));
  rig.start_run();
  REQUIRE(rig.table->iterates == 1);

  std::error_code holder_code = make_error_code(errc::invalid_state);
  test::Background holder([&] { holder_code = rig.sup->reconcile(); });
  REQUIRE(rig.table->held.wait());

  constexpr int threads = 4;
  constexpr int calls = 25;
  std::atomic<int> failures{0};
  {
    std::vector<std::unique_ptr<test::Background>> callers;
    for (int t = 0; t < threads; ++t) {
      callers.push_back(std::make_unique<test::Background>([&] {
        for (int i = 0; i < calls; ++i) {
          if (rig.sup->reconcile()) {
            ++failures;
          }
        }
      }));
    }
    for (auto& caller : callers) {  // they return while the pass is still held
      REQUIRE(caller->wait());
    }
  }
  CHECK(failures == 0);
  CHECK_FALSE(holder.finished());
  CHECK(rig.table->iterates == 2);

  rig.table->release.notify();
  REQUIRE(holder.wait());
  REQUIRE(holder.join() == nullptr);
  CHECK(holder_code == std::error_code{});
  const int extra = rig.table->iterates - 2;
  CHECK(extra <= 1);
  CHECK(extra >= 1);  // the calls were not lost: one more pass ran
  REQUIRE(rig.finish() == "");
}

// ---- reconcile(key)
// ------------------------------------------------------------------------------

TEST_CASE("reconcile(key) starts the key in the background if its row exists",
          "[operations][reconcile]") {
  ProbeRig rig;
  rig.start_run();
  auto k = Probe::with(Startup::hang_then_ready);
  rig.table->rows->insert_or_assign("k", k);
  CHECK(rig.sup->reconcile("missing") == std::error_code{});
  CHECK_FALSE(rig.has_key("missing"));
  CHECK(rig.sup->reconcile("k") == std::error_code{});  // does not wait for the start
  CHECK(rig.has_key("k"));
  REQUIRE(k.state->entered.wait());
  CHECK(k.state->readied.count() == 0);
  k.state->release.notify();
  REQUIRE(k.state->readied.wait());
  CHECK(rig.table->iterates == 1);  // no pass
  REQUIRE(rig.finish() == "");
}

TEST_CASE("reconcile(key) leaves a running key alone without prune", "[operations][reconcile]") {
  ProbeRig rig;
  auto k = Probe::with(Startup::ready);
  rig.table->rows->insert_or_assign("k", k);
  rig.start_run();
  REQUIRE(k.state->readied.wait());
  CHECK(rig.sup->reconcile("k") == std::error_code{});
  rig.table->rows->erase("k");
  CHECK(rig.sup->reconcile("k") == std::error_code{});
  CHECK(rig.stops().empty());
  CHECK(rig.get_code("k") == std::error_code{});
  CHECK(k.state->entered.count() == 1);
  CHECK(k.state->returned.count() == 0);
  REQUIRE(rig.finish() == "");
}

TEST_CASE("reconcile(key) with prune stops a key whose row is gone", "[operations][reconcile]") {
  ProbeRig rig([](auto& o) { o.prune = true; });
  auto k = Probe::with(Startup::ready);
  rig.table->rows->insert_or_assign("k", k);
  rig.start_run();
  REQUIRE(k.state->readied.wait());
  CHECK(rig.sup->reconcile("k") == std::error_code{});  // row still there: nothing
  CHECK(rig.stops().empty());

  rig.table->rows->erase("k");
  CHECK(rig.sup->reconcile("k") == std::error_code{});
  CHECK(rig.stops() == std::vector<std::string>{"k"});  // asked before it returned
  REQUIRE(k.state->returned.wait());
  CHECK_FALSE(k.state->force_seen);
  CHECK(test::eventually([&] { return !rig.has_key("k"); }));
  CHECK(rig.get_code("k") == errc::process_not_found);
  REQUIRE(rig.finish() == "");
}

TEST_CASE("reconcile(key) does not start a key that backs off", "[operations][reconcile]") {
  ProbeRig rig([](auto& o) {
    o.restart.initial_backoff = 10s;
    o.restart.jitter = 0;
  });
  auto k = Probe::with(Startup::throw_error);
  rig.table->rows->insert_or_assign("k", k);
  rig.start_run();
  REQUIRE(k.state->returned.wait());
  REQUIRE(rig.restart_scheduled.wait(1));  // its history says: not before 10 s
  REQUIRE(test::eventually([&] { return !rig.has_key("k"); }));

  CHECK(rig.sup->reconcile("k") == std::error_code{});
  CHECK_FALSE(rig.has_key("k"));  // a start would have registered it before returning
  CHECK(k.state->entered.count() == 1);

  rig.clock->advance(10s);  // the backoff is over (the loop's interval is not)
  CHECK(rig.sup->reconcile("k") == std::error_code{});
  REQUIRE(k.state->entered.wait(2));
  CHECK(rig.table->iterates == 1);  // no pass did it
  REQUIRE(rig.finish() == "");
}

// ---- prune -----------------------------------------------------------------------------------

TEST_CASE("with prune, the next pass stops the process of an erased row", "[operations][prune]") {
  ProbeRig rig([](auto& o) { o.prune = true; });
  auto a = Probe::with(Startup::ready);
  auto b = Probe::with(Startup::ready);
  rig.table->rows->insert_or_assign("a", a);
  rig.table->rows->insert_or_assign("b", b);
  rig.start_run();
  REQUIRE(a.state->readied.wait());
  REQUIRE(b.state->readied.wait());

  rig.table->rows->erase("a");
  rig.restart_pass();
  CHECK(rig.stops() == std::vector<std::string>{"a"});
  REQUIRE(a.state->returned.wait());
  CHECK(a.state->ready_returned.count() == 1);  // ready returned: a graceful stop
  CHECK_FALSE(a.state->force_seen);
  CHECK(b.state->returned.count() == 0);
  CHECK(rig.get_code("b") == std::error_code{});
  REQUIRE(rig.finish() == "");
}

TEST_CASE("with prune, a pass stops an explicitly started key that has no row",
          "[operations][prune]") {
  ProbeRig rig([](auto& o) { o.prune = true; });
  rig.start_run();
  auto x = Probe::with(Startup::ready);
  rig.table->rows->insert_or_assign("x", x);
  std::error_code start_code;
  (void)rig.sup->start("x", start_code);
  REQUIRE(start_code == std::error_code{});
  rig.table->rows->erase("x");
  CHECK(rig.stops().empty());

  CHECK(rig.sup->reconcile() == std::error_code{});  // a complete pass, on this thread
  CHECK(rig.stops() == std::vector<std::string>{"x"});
  REQUIRE(x.state->returned.wait());
  CHECK_FALSE(x.state->force_seen);
  REQUIRE(rig.finish() == "");
}

TEST_CASE("without prune (the default), passes stop nothing", "[operations][prune]") {
  ProbeRig rig;
  auto a = Probe::with(Startup::ready);
  rig.table->rows->insert_or_assign("a", a);
  rig.start_run();
  REQUIRE(a.state->readied.wait());
  auto x = Probe::with(Startup::ready);
  rig.table->rows->insert_or_assign("x", x);
  std::error_code start_code;
  (void)rig.sup->start("x", start_code);
  REQUIRE(start_code == std::error_code{});

  rig.table->rows->erase("a");
  rig.table->rows->erase("x");
  rig.restart_pass();
  CHECK(rig.sup->reconcile() == std::error_code{});
  CHECK(rig.table->iterates == 3);
  CHECK(rig.stops().empty());
  CHECK(rig.get_code("a") == std::error_code{});
  CHECK(rig.get_code("x") == std::error_code{});
  CHECK(a.state->returned.count() == 0);
  CHECK(x.state->returned.count() == 0);
  REQUIRE(rig.finish() == "");
}

// ---- paced starts ------------------------------------------------------------------------------

namespace {

/// Shared by every `Slow` runnable of a test: how many are starting now, and the most ever.
struct SlowState {
  std::atomic<int> starting{0};
  std::atomic<int> most{0};
  test::Event entered;
  test::Event readied;
  test::Event release;  // once notified, every start (now or later) goes on to ready
};

/// Hangs before `ready` until `release` (or a stop), counting how many do so at once.
struct Slow {
  std::shared_ptr<SlowState> state;

  void run(std::stop_token /*force*/, supervisor::Ready& ready) const {
    SlowState& s = *state;
    const std::stop_token stopping = ready.stop_token();  // graceful stop or force
    const int now = ++s.starting;
    int most = s.most.load();
    while (now > most && !s.most.compare_exchange_weak(most, now)) {
    }
    s.entered.notify();
    const bool released = s.release.wait_or(stopping);
    --s.starting;
    if (!released) {
      return;
    }
    s.readied.notify();
    ready();
  }
};

}  // namespace

TEST_CASE("paced starts: never more than max_starts_in_flight starting at once",
          "[operations][pacing]") {
  Rig<Slow> rig([](auto& o) { o.max_starts_in_flight = 2; });
  auto state = std::make_shared<SlowState>();
  for (int i = 0; i < 10; ++i) {
    rig.table->rows->insert_or_assign("k" + std::to_string(i), Slow{state});
  }
  rig.start_run(false);

  // The initial pass ends early, out of slots, and waits (initial_wait, on the clock) for the
  // two starts it began.
  REQUIRE(state->entered.wait(2));
  REQUIRE(rig.clock->wait_for_sleepers(1));
  CHECK(rig.sup->keys().size() == 2);
  CHECK(rig.table->iterates == 1);
  CHECK(state->most == 2);

  rig.clock->advance(1s);  // the initial wait is over: the callback runs
  REQUIRE(rig.in_callback.wait());
  // The loop runs the next pass at once, not after restart_interval: it waits for a slot.
  REQUIRE(test::eventually([&] { return rig.table->iterates >= 2; }));
  CHECK(state->entered.count() == 2);

  state->release.notify();
  REQUIRE(state->readied.wait(10));
  CHECK(rig.sup->keys().size() == 10);
  CHECK(state->most == 2);
  CHECK(rig.clock->now() - std::chrono::steady_clock::time_point{} == 1s);
  REQUIRE(rig.finish() == "");
}

TEST_CASE("paced starts: run's shutdown ends a pass waiting for a slot", "[operations][pacing]") {
  Rig<Slow> rig([](auto& o) { o.max_starts_in_flight = 2; });
  auto state = std::make_shared<SlowState>();
  for (int i = 0; i < 10; ++i) {
    rig.table->rows->insert_or_assign("k" + std::to_string(i), Slow{state});
  }
  rig.start_run(false);
  REQUIRE(state->entered.wait(2));
  REQUIRE(rig.clock->wait_for_sleepers(1));
  rig.clock->advance(1s);
  REQUIRE(rig.in_callback.wait());
  REQUIRE(test::eventually([&] { return rig.table->iterates >= 2; }));  // the loop's pass

  // Nothing is released: the loop's pass waits for a slot until the shutdown ends it.
  REQUIRE(rig.finish() == "");
  CHECK(state->readied.count() == 0);
  CHECK(state->starting == 0);
  CHECK(state->most == 2);
}

TEST_CASE("paced starts: a reconcile() waiting for a slot returns at shutdown",
          "[operations][pacing]") {
  Rig<Slow> rig([](auto& o) { o.max_starts_in_flight = 1; });
  auto state = std::make_shared<SlowState>();
  rig.start_run();
  rig.table->rows->insert_or_assign("a", Slow{state});
  rig.table->rows->insert_or_assign("b", Slow{state});
  std::error_code code = make_error_code(errc::invalid_state);
  test::Background caller([&] { code = rig.sup->reconcile(); });
  REQUIRE(state->entered.wait(1));  // one start holds the only slot; the pass waits

  rig.finish_source.request_stop();
  REQUIRE(caller.wait());
  REQUIRE(caller.join() == nullptr);
  CHECK(code == std::error_code{});
  REQUIRE(rig.runner->wait());
  REQUIRE(rig.runner->join() == nullptr);
  CHECK(state->entered.count() == 1);
}
