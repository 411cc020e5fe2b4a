// `run`'s cancellation forces every process through one walk of the map, on the thread that
// requests it (`ParentLink::by_owner`), not through a callback per process. The walk must reach
// every process, and a start under way that the walk misses (its record not yet in the map) must
// see the request itself once it is `starting`: the start is held at each copy of its key in
// turn, and run is canceled meanwhile from a thread that has never touched a supervisor.

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "catch_shim.hpp"
#include "held_key.hpp"
#include "support.hpp"

using test::HeldKey;
using test::HeldKeyHash;

namespace {

/// Records whether force was already requested when `run` began, and keeps its force token.
struct ForceProbe {
  struct State {
    std::atomic<int> forced_at_start{-1};  // -1: run not called
    std::stop_token force;
    test::Event ready_called;
  };
  std::shared_ptr<State> state = std::make_shared<State>();

  void run(std::stop_token force, supervisor::Ready& ready) const {
    state->forced_at_start = force.stop_requested() ? 1 : 0;
    state->force = std::move(force);
    state->ready_called.notify();
    ready();  // until a stop or force
  }
};

using Table = supervisor::MapTable<HeldKey, ForceProbe, HeldKeyHash>;
using Sup = supervisor::Supervisor<HeldKey, ForceProbe, HeldKeyHash>;

/// A coroutine process that keeps its force token where the test can read it, then idles.
struct CoForceProbe {
  struct Tokens {
    std::mutex mutex;
    std::vector<std::stop_token> all;
    std::atomic<std::size_t> count{0};
  };
  std::shared_ptr<Tokens> tokens;

  supervisor::Task<> run(std::stop_token force, supervisor::AsyncReady& ready) const {
    {
      const std::lock_guard lock(tokens->mutex);
      tokens->all.push_back(force);
    }
    tokens->count.fetch_add(1);
    tokens->count.notify_all();
    co_await ready;
  }
};

using Epoch = supervisor::detail::EpochDomain;

}  // namespace

TEST_CASE("canceling run forces every running process before the request returns",
          "[supervisor][force]") {
  auto table = std::make_shared<Table>();
  std::vector<ForceProbe> probes(3);
  for (std::size_t i = 0; i < probes.size(); ++i) {
    table->insert_or_assign(HeldKey("k" + std::to_string(i)), probes[i]);
  }
  auto clock = std::make_shared<supervisor::ManualClock>();
  supervisor::Options<HeldKey> options;
  options.clock = clock;
  Sup sup(table, options);
  std::stop_source cancel;
  std::vector<bool> forced;
  std::error_code ec;
  { const Epoch::Pin own; }  // this thread's record (`run`'s thread takes one) is in the count
  const std::size_t records_before = Epoch::instance().records();
  sup.run(
      supervisor::Cancel(cancel.get_token()),
      [&] {
        for (const ForceProbe& probe : probes) {
          REQUIRE(probe.state->ready_called.wait());
        }
        // From a thread of its own (no epoch record yet: the walk pins with the one run reserved,
        // lent for the walk only).
        bool record_before = true;
        bool record_after = true;
        test::Background canceler([&] {
          record_before = Epoch::thread_has_record();
          cancel.request_stop();
          record_after = Epoch::thread_has_record();
        });
        REQUIRE(canceler.wait());
        CHECK_FALSE(record_before);
        CHECK_FALSE(record_after);
        for (const ForceProbe& probe : probes) {
          forced.push_back(probe.state->force.stop_requested());
        }
      },
      ec);
  CHECK(forced == std::vector<bool>{true, true, true});
  CHECK(Epoch::instance().records() <= records_before);  // the reserved record went back
}

TEST_CASE("canceling run forces every coroutine process of a grown map before the request returns",
          "[supervisor][force][coroutine]") {
  // Started one by one with `start`, which reserves nothing (a pass reserves for the table's
  // size): the map's shards grow from 8 buckets to 32, and the walk reads the grown tables.
  constexpr std::size_t keys = 2000;
  auto tokens = std::make_shared<CoForceProbe::Tokens>();
  auto table = std::make_shared<supervisor::MapTable<std::size_t, CoForceProbe>>();
  auto clock = std::make_shared<supervisor::ManualClock>();
  supervisor::Options<std::size_t> options;
  options.clock = clock;
  supervisor::Supervisor<std::size_t, CoForceProbe> sup(table, options);
  std::stop_source cancel;
  std::size_t started = 0;
  std::size_t forced = 0;
  std::size_t seen = 0;
  std::error_code ec;
  sup.run(
      supervisor::Cancel(cancel.get_token()),
      [&] {
        REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over (an empty table)
        for (std::size_t i = 0; i < keys; ++i) {
          table->insert_or_assign(i, CoForceProbe{tokens});
        }
        test::Background starter([&] {
          for (std::size_t i = 0; i < keys; ++i) {
            std::error_code start_ec;
            (void)sup.start(i, start_ec);
            started += start_ec ? 0 : 1;
          }
        });
        REQUIRE(starter.wait());
        test::Background canceler([&] { cancel.request_stop(); });
        REQUIRE(canceler.wait());
        const std::lock_guard lock(tokens->mutex);
        seen = tokens->all.size();
        for (const std::stop_token& force : tokens->all) {
          forced += force.stop_requested() ? 1 : 0;
        }
      },
      ec);
  CHECK(started == keys);
  CHECK(seen == keys);
  CHECK(forced == keys);
}

TEST_CASE("canceling run forces a process whose start the walk missed", "[supervisor][force]") {
  const HeldKey late("late");
  int held_in_start = 0;
  for (int hold_at = 1; hold_at <= 6; ++hold_at) {
    CAPTURE(hold_at);
    test::KeyHold hold;
    auto table = std::make_shared<Table>();
    auto clock = std::make_shared<supervisor::ManualClock>();
    supervisor::Options<HeldKey> options;
    options.clock = clock;
    Sup sup(table, options);
    const ForceProbe probe;
    std::stop_source cancel;
    bool held_here = false;
    std::error_code ec;
    sup.run(
        supervisor::Cancel(cancel.get_token()),
        [&] {
          REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over (an empty table)
          table->insert_or_assign(late, probe);
          test::KeyHold::arm(hold_at);
          test::Event start_over;
          test::Background starter([&] {
            test::t_may_hold = true;
            std::error_code started;
            (void)sup.start(late, started);
            start_over.notify();
            hold.held.notify();  // no copy held: let the test go on
          });
          REQUIRE(hold.held.wait());
          held_here = start_over.count() == 0;
          test::Background canceler([&] { cancel.request_stop(); });
          REQUIRE(canceler.wait());
          hold.release.notify();
          REQUIRE(starter.wait());
        },
        ec);
    if (!held_here) {
      continue;  // past the start's copies of its key: nothing held
    }
    ++held_in_start;
    // Canceled before it began: force was requested before its runnable was called.
    CHECK(probe.state->forced_at_start.load() == 1);
  }
  CHECK(held_in_start >= 2);
}
