// Failure paths of Supervisor, one defect each: user code that throws at the worst moment (a
// hash or equality on a process's exit path, a copy after the process is published, a table
// during a start), calls that would wait for themselves, and runnables destroyed where a start
// is registering. Each test fails (or ends the program) without the fix it guards.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "catch_shim.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ErrorSource;
using test::eventually;
using test::Probe;
using test::Startup;

namespace {

/// Switches that make the user's key operations throw. A countdown throws at the call that takes
/// it from 0 (negative: never); `always` throws at every call while set.
struct Fault {
  std::atomic<int> countdown{-1};
  std::atomic<bool> always{false};

  void fire(const char* what) {
    if (always.load() || (countdown.load() >= 0 && countdown.fetch_sub(1) == 0)) {
      throw std::runtime_error(what);
    }
  }
  void reset() {
    countdown = -1;
    always = false;
  }
};

Fault g_hash;
Fault g_equal;
Fault g_copy;  // copies of `BombProbe`

struct Key {
  std::string name;
};

struct KeyHash {
  std::size_t operator()(const Key& key) const {
    g_hash.fire("hash failed");
    return std::hash<std::string>{}(key.name);
  }
};

struct KeyEqual {
  bool operator()(const Key& a, const Key& b) const {
    g_equal.fire("equality failed");
    return a.name == b.name;
  }
};

/// A `Probe` whose copies throw when `g_copy` says so; moves never throw.
struct BombProbe {
  Probe probe;

  BombProbe() = default;
  explicit BombProbe(Probe p) : probe(std::move(p)) {}
  BombProbe(const BombProbe& other) : probe(other.probe) { g_copy.fire("runnable copy failed"); }
  BombProbe(BombProbe&&) noexcept = default;
  BombProbe& operator=(const BombProbe&) = delete;
  BombProbe& operator=(BombProbe&&) noexcept = default;  // for MapTable only
  ~BombProbe() = default;

  void run(std::stop_token force, supervisor::Ready& ready) const {
    probe.run(std::move(force), ready);
  }
};

/// A `MapTable` whose `get` throws while `fail` is set.
template <class R>
struct FailingTable {
  using Rows = supervisor::MapTable<Key, R, KeyHash, KeyEqual>;
  std::shared_ptr<Rows> rows = std::make_shared<Rows>();
  std::shared_ptr<std::atomic<bool>> fail = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<std::atomic<bool>> fail_iterate = std::make_shared<std::atomic<bool>>(false);

  std::optional<R> get(const Key& key) const {
    if (fail->load()) {
      throw std::runtime_error("table get failed");
    }
    return rows->get(key);
  }
  auto iterate() const {
    if (fail_iterate->load()) {
      throw std::runtime_error("table iterate failed");
    }
    return rows->iterate();
  }
};

template <class R>
using Sup = supervisor::Supervisor<Key, R, KeyHash, KeyEqual>;

template <class R>
supervisor::Options<Key> quiet_options(const std::shared_ptr<std::atomic<int>>& reports) {
  supervisor::Options<Key> options;
  options.clock = std::make_shared<supervisor::ManualClock>();
  options.on_error = [reports](const supervisor::ErrorReport<Key>&) { ++*reports; };
  return options;
}

/// A `Probe` that, once armed, calls `on_destroy` when the next of its kind is destroyed.
struct Armed {
  Probe probe;
  static inline std::atomic<bool> armed{false};
  static inline std::function<void()> on_destroy;

  explicit Armed(Probe p) : probe(std::move(p)) {}
  Armed(const Armed&) = default;
  Armed(Armed&&) noexcept = default;
  Armed& operator=(const Armed&) = delete;
  Armed& operator=(Armed&&) noexcept = default;  // for MapTable only
  ~Armed() {
    if (armed.exchange(false)) {
      on_destroy();
    }
  }

  void run(std::stop_token force, supervisor::Ready& ready) const {
    probe.run(std::move(force), ready);
  }
};

struct ResetFaults {
  ~ResetFaults() {
    g_hash.reset();
    g_equal.reset();
    g_copy.reset();
    Armed::armed = false;
    Armed::on_destroy = nullptr;
  }
};

}  // namespace

TEST_CASE("a hash or equality that throws while a process exits strands no key",
          "[supervisor][failure]") {
  const ResetFaults reset;
  const bool equality = GENERATE(false, true);
  FailingTable<Probe> table;
  auto probe = Probe::with(Startup::ready);
  probe.state->use_early = true;
  table.rows->insert_or_assign(Key{"a"}, probe);
  auto reports = std::make_shared<std::atomic<int>>(0);
  Sup<Probe> sup(table, quiet_options<Probe>(reports));
  sup.run([&] {
    REQUIRE(probe.state->readied.wait());
    (equality ? g_equal : g_hash).always = true;
    probe.state->early.request_stop();  // `ready` returns; the runnable returns cleanly.
    // The watchdog removes the key on the process's thread without a hash or an equality.
    // (`keys` walks the map without either.)
    CHECK(eventually([&] { return sup.keys().empty(); }));
    (equality ? g_equal : g_hash).always = false;
    CHECK(sup.start(Key{"a"}).state == probe.state);  // Free, and startable again.
  });
  CHECK(probe.state->live == 0);
  CHECK(*reports == 0);
}

TEST_CASE("a hash that throws during a failed start's clean-up strands no key",
          "[supervisor][failure]") {
  const ResetFaults reset;
  FailingTable<Probe> table;
  auto probe = Probe::with(Startup::ready);
  table.rows->insert_or_assign(Key{"a"}, probe);
  table.rows->insert_or_assign(Key{"b"}, Probe::with(Startup::ready));
  auto reports = std::make_shared<std::atomic<int>>(0);
  Sup<Probe> sup(table, quiet_options<Probe>(reports));
  sup.run([&] {
    REQUIRE(sup.keys().size() == 2);
    sup.stop(Key{"a"});
    // Fail the table's get, and each hash and equality call of the start in turn.
    for (int n = 0; n < 6; ++n) {
      for (Fault* fault : {&g_hash, &g_equal}) {
        *table.fail = true;
        fault->countdown = n;
        std::error_code ec;
        CHECK_THROWS_AS(sup.start(Key{"a"}, ec), std::runtime_error);
        *table.fail = false;
        fault->reset();
        CHECK(sup.keys().size() == 1);
        std::error_code got;
        (void)sup.get(Key{"a"}, got);
        CHECK(got == errc::process_not_found);
        CHECK(sup.start(Key{"a"}).state == probe.state);  // The key was left free.
        sup.stop(Key{"a"});
      }
    }
  });
  CHECK(probe.state->live == 0);
}

TEST_CASE(
    "a copy of the runnable that throws after the start leaves the key free and nothing "
    "running",
    "[supervisor][failure]") {
  const ResetFaults reset;
  FailingTable<BombProbe> table;
  auto probe = Probe::with(Startup::ready);
  table.rows->insert_or_assign(Key{"a"}, BombProbe(probe));
  auto reports = std::make_shared<std::atomic<int>>(0);
  Sup<BombProbe> sup(table, quiet_options<BombProbe>(reports));
  sup.run([&] {
    sup.stop(Key{"a"});
    // Every copy a start makes, in turn: the table's, and the one `start` returns.
    int threw = 0;
    for (int n = 0; n < 4; ++n) {
      for (const bool throwing_overload : {true, false}) {
        g_copy.countdown = n;
        try {
          if (throwing_overload) {
            (void)sup.start(Key{"a"});
          } else {
            std::error_code ec;
            (void)sup.start(Key{"a"}, ec);
          }
          g_copy.reset();
          sup.stop(Key{"a"});
        } catch (const std::runtime_error&) {
          ++threw;
          g_copy.reset();
        }
        // Whatever copy failed, nothing of this start is left: no live runnable, key free.
        CHECK(probe.state->live == 0);
        CHECK(sup.keys().empty());
      }
    }
    CHECK(threw >= 4);  // The table's copy and the returned copy each failed for some n.
    CHECK(sup.start(Key{"a"}).probe.state == probe.state);
  });
  CHECK(probe.state->live == 0);
}

TEST_CASE("run from inside its own callback fails at once", "[supervisor][failure]") {
  FailingTable<Probe> table;
  auto reports = std::make_shared<std::atomic<int>>(0);
  Sup<Probe> sup(table, quiet_options<Probe>(reports));
  std::error_code nested;
  sup.run([&] {
    // A deadline only so that a regression fails instead of hanging.
    sup.run(
        supervisor::Cancel(60s), [] {}, nested);
  });
  CHECK(nested == std::errc::resource_deadlock_would_occur);
}

TEST_CASE("run from the error hook on the restart loop's thread fails at once",
          "[supervisor][failure]") {
  auto clock = std::make_shared<supervisor::ManualClock>();
  FailingTable<Probe> table;
  using S = Sup<Probe>;
  std::unique_ptr<S> sup;
  std::error_code nested;
  test::Event hooked;
  supervisor::Options<Key> options;
  options.clock = clock;
  options.on_error = [&](const supervisor::ErrorReport<Key>& report) {
    if (report.source == ErrorSource::iterate) {  // Reported by the restart loop's thread.
      sup->run(
          supervisor::Cancel(60s), [] {}, nested);
      hooked.notify();
    }
  };
  sup = std::make_unique<S>(table, options);
  sup->run([&] {
    *table.fail_iterate = true;  // The next pass fails on the loop's thread.
    REQUIRE(clock->wait_for_sleepers(1));
    clock->advance(1min);
    REQUIRE(hooked.wait());
  });
  CHECK(nested == std::errc::resource_deadlock_would_occur);
}

TEST_CASE("a process of a nested supervisor cannot stop the outer key it runs in",
          "[supervisor][failure]") {
  using Inner = supervisor::Supervisor<std::string, Probe>;
  using InnerPtr = std::shared_ptr<Inner>;
  using Outer = supervisor::Supervisor<std::string, InnerPtr>;
  auto clock = std::make_shared<supervisor::ManualClock>();
  supervisor::Options<std::string> options;
  options.clock = clock;
  auto inner_table = std::make_shared<supervisor::MapTable<std::string, Probe>>();
  auto worker = Probe::with(Startup::ready);
  inner_table->insert_or_assign("worker", worker);
  auto outer_table = std::make_shared<supervisor::MapTable<std::string, InnerPtr>>();
  outer_table->insert_or_assign("tenant", std::make_shared<Inner>(inner_table, options));
  Outer outer(outer_table, options);
  std::error_code from_worker;
  worker.state->on_enter = [&] { outer.stop("tenant", from_worker); };
  outer.run([&] {
    REQUIRE(worker.state->readied.wait());
    CHECK(eventually([&] {  // The self-stop had no effect: the tenant comes up.
      std::error_code state;
      (void)outer.get("tenant", state);
      return state == std::error_code{};
    }));
  });
  CHECK(from_worker == std::errc::resource_deadlock_would_occur);
  CHECK(worker.state->live == 0);
}

TEST_CASE("a runnable destroyed during a start is destroyed outside the start gate",
          "[supervisor][failure]") {
  // The first runnable destroyed once armed (the table's copy that `start` moved from) waits
  // until `run`'s shutdown has closed the start gate, seen as `start` answering not_running.
  // Destroyed inside the gate, it would wait for ever: shutdown waits for the gate to drain.
  const ResetFaults reset;
  FailingTable<Armed> table;
  auto probe = Probe::with(Startup::ready);
  table.rows->insert_or_assign(Key{"a"}, Armed{probe});
  auto reports = std::make_shared<std::atomic<int>>(0);
  Sup<Armed> sup(table, quiet_options<Armed>(reports));
  std::error_code seen_in_destructor;
  test::Event destroying;
  Armed::on_destroy = [&] {
    destroying.notify();
    (void)eventually([&] {
      std::error_code ec;
      (void)sup.start(Key{"other"}, ec);
      seen_in_destructor = ec;
      return ec == errc::not_running;
    });
  };
  std::optional<test::Background> starter;
  sup.run([&] {
    sup.stop(Key{"a"});
    starter.emplace([&] {
      Armed::armed = true;
      std::error_code ec;
      (void)sup.start(Key{"a"}, ec);
    });
    REQUIRE(destroying.wait());  // Then return: `run` shuts down.
  });
  REQUIRE(starter->wait());
  CHECK(starter->join() == nullptr);
  CHECK(seen_in_destructor == errc::not_running);
  CHECK(probe.state->live == 0);
}

TEST_CASE("a leaf body or a parallel child cannot stop the key it runs in",
          "[supervisor][failure]") {
  using Any = supervisor::AnyRunnable;
  auto table = std::make_shared<supervisor::MapTable<std::string, Any>>();
  supervisor::Options<std::string> options;
  options.clock = std::make_shared<supervisor::ManualClock>();
  supervisor::Supervisor<std::string, Any> sup(table, options);
  std::error_code from_leaf;
  std::error_code from_child;
  test::Event leaf_tried;
  test::Event child_tried;
  auto self_stopping_body = [&sup](const char* key, std::error_code& got, test::Event& tried) {
    return supervisor::leaf([&sup, key, &got, &tried](const std::stop_token& stop) {
      sup.stop(key, got);  // From the body's own thread, not the process's.
      tried.notify();
      Probe::wait_for(stop);
    });
  };
  table->insert_or_assign("leaf", self_stopping_body("leaf", from_leaf, leaf_tried));
  table->insert_or_assign(
      "group", supervisor::parallel(supervisor::nop(),
                                    self_stopping_body("group", from_child, child_tried)));
  sup.run([&] {
    REQUIRE(leaf_tried.wait());
    REQUIRE(child_tried.wait());
    CHECK(sup.keys().size() == 2);  // Neither self-stop had an effect.
  });
  CHECK(from_leaf == std::errc::resource_deadlock_would_occur);
  CHECK(from_child == std::errc::resource_deadlock_would_occur);
}

TEST_CASE("a key taken by a start that never launched is invisible, even after run stopped it",
          "[supervisor][failure]") {
  // The table's `get` holds the start between its two steps while `run` shuts down, which stops
  // the record before it ever had a runnable.
  struct HeldTable {
    std::shared_ptr<test::Event> entered = std::make_shared<test::Event>();
    std::shared_ptr<test::Event> release = std::make_shared<test::Event>();
    std::optional<Probe> get(const Key& /*key*/) const {
      entered->notify();
      (void)release->wait();
      return Probe::with(Startup::ready);
    }
    [[nodiscard]] supervisor::MapTable<Key, Probe, KeyHash, KeyEqual>::Cursor iterate() const {
      return supervisor::MapTable<Key, Probe, KeyHash, KeyEqual>{}.iterate();
    }
  };
  HeldTable table;
  auto reports = std::make_shared<std::atomic<int>>(0);
  Sup<Probe> sup(table, quiet_options<Probe>(reports));
  std::error_code started;
  std::optional<test::Background> starter;
  auto lookups = [&] {
    std::error_code got;
    (void)sup.get(Key{"a"}, got);
    std::error_code visited = sup.visit(Key{"a"}, [](const Probe&) {});
    std::error_code stopped;
    sup.stop(Key{"a"}, stopped);
    return got == errc::process_not_found && visited == errc::process_not_found &&
           stopped == errc::process_not_found && sup.keys().empty();
  };
  sup.run([&] {
    starter.emplace([&] { (void)sup.start(Key{"a"}, started); });
    REQUIRE(table.entered->wait());
    CHECK(lookups());  // Taken, not launched: nothing to see.
  });
  CHECK(lookups());  // Stopped by the shutdown before it ever had a runnable.
  table.release->notify();
  REQUIRE(starter->wait());
  CHECK(starter->join() == nullptr);
  CHECK(started == errc::not_running);
  CHECK(lookups());
}
