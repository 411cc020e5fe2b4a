// A start that cannot get a thread is a failed start: it records the failure in its key's
// history, then frees the key. A pass that found the start's record, and ends between those two
// steps, looks for a process (the history's mark is older than the pass), finds none, and would
// forget the key's old history: its restarts, its backoff. So the failure is recorded while the
// record still holds the key. Here `reconcile(key)`'s thread is held where its launch asks for a
// thread (the library's seam), while a pass finds the record and is held in its cursor's
// `close()`; then the launch fails, and the thread is held again at the history's lookup (its
// first comparison of keys) while the pass ends. The key's restarts must survive: the one before
// and the failed one.

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "../catch_shim.hpp"
#include "../held_key.hpp"
#include "../hook_table.hpp"
#include "../support.hpp"

namespace {

thread_local bool t_starter = false;  // the thread whose launch fails
test::Event* g_launching = nullptr;   // notified when its launch asks for a thread
test::Event* g_launch_go = nullptr;   // what the launch waits for before it fails

void fail_the_starters_launch(supervisor::detail::FaultPoint point) {
  if (point != supervisor::detail::FaultPoint::thread_create || !t_starter) {
    return;
  }
  t_starter = false;
  g_launching->notify();
  (void)g_launch_go->wait();
  test::t_hold_compare = true;  // the history's lookup, next on this thread, holds
  throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
}

/// Fails `late`'s first start; runs it from the second.
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

}  // namespace

TEST_CASE("a start that fails to launch keeps its key's history from a pass that saw its record",
          "[reconcile][history]") {
  const test::HeldKey late("late");
  auto table = std::make_shared<test::HookTable>();
  const test::Probe flaky = fails_first();
  table->rows->insert_or_assign(late, flaky);

  test::Event launching;
  test::Event launch_go;
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
    test::Event* held[3];
    Seam(test::Event& launch, test::Event& go, test::Event& pass, test::Event& compare,
         test::Event& compare_released)
        : held{&go, &pass, &compare_released} {
      g_launching = &launch;
      g_launch_go = &go;
      test::g_compared = &compare;
      test::g_compare_go = &compare_released;
      supervisor::detail::fault_hook.store(&fail_the_starters_launch);
    }
    Seam(const Seam&) = delete;
    Seam& operator=(const Seam&) = delete;
    ~Seam() {
      for (test::Event* event : held) {
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
  std::optional<std::uint32_t> restarts_before;
  std::optional<std::uint32_t> restarts_after;
  auto restarts_of_late = [&]() -> std::optional<std::uint32_t> {
    for (const auto& status : sup.snapshot().keys) {
      if (status.key == late) {
        return status.restarts;
      }
    }
    return std::nullopt;
  };
  std::error_code reconciled = supervisor::errc::not_running;
  {
    const Seam seam(launching, launch_go, pass_go, compared, compare_go);
    std::optional<test::Background> starter;
    sup.run([&] {
      REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over: `late` failed once
      // ... and its process has left the map (else the next pass finds it leaving, and skips it)
      REQUIRE(test::eventually([&] { return sup.keys().empty(); }));
      auto arms = clock->arms();
      clock->advance(options.restart_interval);  // `late` starts again: its first restart
      REQUIRE(flaky.state->readied.wait());
      REQUIRE(clock->wait_for_arms(arms + 1));
      sup.stop(late);
      restarts_before = restarts_of_late();
      starter.emplace([&] {
        t_starter = true;
        reconciled = sup.reconcile(late);
      });
      REQUIRE(launching.wait());  // its record holds the key
      arms = clock->arms();
      hold_pass = true;
      clock->advance(options.restart_interval);
      REQUIRE(pass_at_close.wait());  // the pass found the record
      launch_go.notify();             // the launch fails
      REQUIRE(compared.wait());       // the starter is in the history's lookup
      pass_go.notify();
      REQUIRE(clock->wait_for_arms(arms + 1));  // that pass is over, its forgetting included
      compare_go.notify();
      REQUIRE(starter->wait());
      restarts_after = restarts_of_late();
    });
  }
  CHECK(reconciled == std::error_code());
  REQUIRE(restarts_before == std::optional<std::uint32_t>(1));
  CHECK(restarts_after == std::optional<std::uint32_t>(2));  // the failed start counts too
}
