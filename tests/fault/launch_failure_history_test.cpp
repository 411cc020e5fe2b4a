// A start that cannot get a thread is a failed start: it records the failure in its key's
// history, then frees the key. A pass that found the start's record and ends once the key is
// free looks for a process (the history's mark being older than the pass), finds none, and would
// forget the key's old history: its restarts, its backoff. Two windows:
// - The pass finds the record before the history is marked and ends before it is. So the
//   failure is recorded while the record still holds the key (it was recorded after).
// - The pass begins after the mark and finds the record before the key is freed. So the record
//   is claimed first, as an exiting process's is: a pass that finds a claimed record marks the
//   history itself.
// `reconcile(key)`'s thread is held at the library's seams (its launch asking for a thread; the
// failure recorded) or at the history's lookup (its first comparison of keys), while a loop pass
// finds the record and is held in its cursor's `close()`. The key's restarts must survive: the
// one before and the failed start.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <system_error>

#include "../catch_shim.hpp"
#include "../held_key.hpp"
#include "../hook_table.hpp"
#include "../support.hpp"

namespace {

/// Where the starter's thread is held.
enum class HoldAt {
  launch,           // as its launch asks for a thread, then at the history's lookup
  after_recording,  // once the failure is in the history, before the key is freed
};

thread_local bool t_starter = false;  // the thread whose launch fails
HoldAt g_hold_at = HoldAt::launch;
test::Event* g_held = nullptr;  // notified when the starter holds
test::Event* g_go = nullptr;    // what it waits for

void fail_the_starters_launch(supervisor::detail::FaultPoint point) {
  using supervisor::detail::FaultPoint;
  if (!t_starter) {
    return;
  }
  if (point == FaultPoint::thread_create) {
    if (g_hold_at == HoldAt::launch) {
      g_held->notify();
      (void)g_go->wait();
      test::t_hold_compare = true;  // the history's lookup, next on this thread, holds
    }
    throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
  }
  if (point == FaultPoint::failed_launch_recorded && g_hold_at == HoldAt::after_recording) {
    t_starter = false;
    g_held->notify();
    (void)g_go->wait();
  }
}

/// Fails its first start; runs from the second.
test::Probe fails_first() {
  test::Probe probe = test::Probe::with(test::Startup::ready);
  auto entries = std::make_shared<std::atomic<int>>(0);
  probe.state->on_enter = [entries] {
    if (++*entries == 1) {
      throw std::runtime_error("first start fails");
    }
  };
  return probe;
}

struct Outcome {
  std::error_code reconciled = supervisor::errc::not_running;
  std::optional<std::uint32_t> restarts_before;  // after the one restart, before the failure
  std::optional<std::uint32_t> restarts_after;
};

Outcome fail_a_launch_beside_a_pass(HoldAt hold_at) {
  const test::HeldKey late("late");
  auto table = std::make_shared<test::HookTable>();
  const test::Probe flaky = fails_first();
  table->rows->insert_or_assign(late, flaky);

  test::Event held;
  test::Event go;
  test::Event pass_at_close;
  test::Event pass_go;
  test::Event compared;
  test::Event compare_go;
  std::atomic<bool> hold_pass{false};
  table->on_close = [&] {
    if (hold_pass.exchange(false)) {
      pass_at_close.notify();
      (void)pass_go.wait();
    }
  };
  struct Seam {  // whatever fails, nothing stays held, and the hook is put back
    decltype(supervisor::detail::fault_hook.load()) saved = supervisor::detail::fault_hook.load();
    test::Event* releases[3];
    Seam(HoldAt at, test::Event& starter_held, test::Event& starter_go, test::Event& pass,
         test::Event& compare, test::Event& compare_released)
        : releases{&starter_go, &pass, &compare_released} {
      g_hold_at = at;
      g_held = &starter_held;
      g_go = &starter_go;
      test::g_compared = &compare;
      test::g_compare_go = &compare_released;
      supervisor::detail::fault_hook.store(&fail_the_starters_launch);
    }
    Seam(const Seam&) = delete;
    Seam& operator=(const Seam&) = delete;
    ~Seam() {
      for (test::Event* event : releases) {
        event->notify();
      }
      supervisor::detail::fault_hook.store(saved);
    }
  };

  auto clock = std::make_shared<supervisor::ManualClock>();
  supervisor::Options<test::HeldKey> options;
  options.clock = clock;
  options.restart_interval = std::chrono::minutes(1);
  options.reuse_threads = false;  // every start asks for a thread
  options.on_error = [](const supervisor::ErrorReport<test::HeldKey>& /*report*/) {};
  supervisor::Supervisor<test::HeldKey, test::Probe, test::HeldKeyHash> sup(table, options);
  auto restarts_of_late = [&]() -> std::optional<std::uint32_t> {
    for (const auto& status : sup.snapshot().keys) {
      if (status.key == late) {
        return status.restarts;
      }
    }
    return std::nullopt;
  };
  Outcome outcome;
  const Seam seam(hold_at, held, go, pass_go, compared, compare_go);
  std::optional<test::Background> starter;  // joined before the seam lets go
  sup.run([&] {
    REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over: `late` failed once
    // ... and its process has left the map (else the next pass finds it leaving, and skips it)
    REQUIRE(test::eventually([&] { return sup.keys().empty(); }));
    auto arms = clock->arms();
    clock->advance(options.restart_interval);  // `late` starts again: its first restart
    REQUIRE(flaky.state->readied.wait());
    REQUIRE(clock->wait_for_arms(arms + 1));
    sup.stop(late);
    outcome.restarts_before = restarts_of_late();
    starter.emplace([&] {
      t_starter = true;
      outcome.reconciled = sup.reconcile(late);
    });
    REQUIRE(held.wait());  // its record holds the key
    arms = clock->arms();
    hold_pass = true;
    clock->advance(options.restart_interval);
    REQUIRE(pass_at_close.wait());  // the pass has found the record
    if (hold_at == HoldAt::launch) {
      go.notify();               // the launch fails
      REQUIRE(compared.wait());  // the starter is in the history's lookup
      pass_go.notify();
      REQUIRE(clock->wait_for_arms(arms + 1));  // that pass is over, its forgetting included
      compare_go.notify();
      REQUIRE(starter->wait());
    } else {
      go.notify();  // the key is freed
      REQUIRE(starter->wait());
      pass_go.notify();
      REQUIRE(clock->wait_for_arms(arms + 1));
    }
    outcome.restarts_after = restarts_of_late();
  });
  return outcome;
}

}  // namespace

TEST_CASE("a start refused a thread records its failure before it frees its key",
          "[reconcile][history]") {
  const Outcome outcome = fail_a_launch_beside_a_pass(HoldAt::launch);
  CHECK(outcome.reconciled == std::error_code());
  REQUIRE(outcome.restarts_before == std::optional<std::uint32_t>(1));
  CHECK(outcome.restarts_after == std::optional<std::uint32_t>(2));  // the failed start counts
}

TEST_CASE("a start refused a thread is claimed so that a pass finding it marks the history",
          "[reconcile][history]") {
  const Outcome outcome = fail_a_launch_beside_a_pass(HoldAt::after_recording);
  CHECK(outcome.reconciled == std::error_code());
  REQUIRE(outcome.restarts_before == std::optional<std::uint32_t>(1));
  CHECK(outcome.restarts_after == std::optional<std::uint32_t>(2));
}
