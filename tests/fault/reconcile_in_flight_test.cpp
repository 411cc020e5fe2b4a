// A `reconcile()` that `run` admitted must not outlive `run`: its pass would overlap the next
// run's passes (and read the table on a second thread at once, against `Table`'s contract). The
// pass is held in the table before it reads a row while `run`'s callback returns; `run` must wait
// for it. The library's seam (SUPERVISOR_FAULT_INJECTION) says when `run` begins that wait, and
// only then is the pass let go: without the wait, `run` returns with the pass still held. And a
// `run` called from inside such a pass fails at once, as from anything else `run` waits for.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <stop_token>
#include <system_error>

#include "../catch_shim.hpp"
#include "../held_key.hpp"
#include "../hook_table.hpp"
#include "../support.hpp"

namespace {

test::Event* g_run_waits = nullptr;  // notified when `run` waits for calls still inside
test::Event* g_pass_go = nullptr;    // lets the held pass go on

void on_run_waits(supervisor::detail::FaultPoint point) {
  if (point == supervisor::detail::FaultPoint::run_waits_for_calls && g_run_waits != nullptr) {
    g_run_waits->notify();
    g_pass_go->notify();
  }
}

thread_local bool t_reconciler = false;

}  // namespace

TEST_CASE("run waits for a reconcile call it admitted before it shuts down", "[reconcile]") {
  auto table = std::make_shared<test::HookTable>();
  table->rows->insert_or_assign(test::HeldKey("early"), test::Probe::with(test::Startup::ready));
  test::Event pass_held;
  test::Event pass_go;
  test::Event run_waits;
  std::atomic<bool> pass_closed{false};
  table->on_next = [&](std::size_t position) {
    if (t_reconciler && position == 0) {  // before it reads a row
      pass_held.notify();
      (void)pass_go.wait();
    }
  };
  table->on_close = [&] {
    if (t_reconciler) {
      pass_closed = true;
    }
  };
  auto clock = std::make_shared<supervisor::ManualClock>();
  supervisor::Options<test::HeldKey> options;
  options.clock = clock;
  options.restart_interval = std::chrono::minutes(1);
  supervisor::Supervisor<test::HeldKey, test::Probe, test::HeldKeyHash> sup(table, options);

  std::error_code reconciled = supervisor::errc::not_running;
  std::optional<test::Background> reconciler;
  struct Seam {  // declared after `reconciler`: the pass is let go before that thread is joined
    decltype(supervisor::detail::fault_hook.load()) saved = supervisor::detail::fault_hook.load();
    test::Event& go;
    Seam(test::Event& waits, test::Event& pass_go) : go(pass_go) {
      g_run_waits = &waits;
      g_pass_go = &pass_go;
      supervisor::detail::fault_hook.store(&on_run_waits);
    }
    Seam(const Seam&) = delete;
    Seam& operator=(const Seam&) = delete;
    ~Seam() {
      supervisor::detail::fault_hook.store(saved);
      g_run_waits = nullptr;
      go.notify();
    }
  } seam{run_waits, pass_go};

  sup.run([&] {
    REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over
    reconciler.emplace([&] {
      t_reconciler = true;
      reconciled = sup.reconcile();
    });
    REQUIRE(pass_held.wait());
  });
  const bool closed_before_run_returned = pass_closed.load();
  pass_go.notify();  // without the wait, the pass is still held here
  REQUIRE(reconciler->wait());
  CHECK(run_waits.count() == 1);
  CHECK(closed_before_run_returned);  // the pass ended, its cursor closed, before `run` returned
  CHECK(reconciled == std::error_code());
  CHECK(sup.reconcile() == supervisor::errc::not_running);
}

TEST_CASE("run called from a reconcile pass fails at once instead of waiting for itself",
          "[reconcile]") {
  // The pass's table calls `run` (with its cancel already requested, so that a call that waited
  // would end at once, `canceled`, and not hang the test): `run` waits for the pass, so a `run`
  // from inside it must fail with `resource_deadlock_would_occur`, not wait for the run lock.
  auto table = std::make_shared<test::HookTable>();
  table->rows->insert_or_assign(test::HeldKey("early"), test::Probe::with(test::Startup::ready));
  auto clock = std::make_shared<supervisor::ManualClock>();
  supervisor::Options<test::HeldKey> options;
  options.clock = clock;
  options.restart_interval = std::chrono::minutes(1);
  supervisor::Supervisor<test::HeldKey, test::Probe, test::HeldKeyHash> sup(table, options);
  std::stop_source requested;
  requested.request_stop();
  std::error_code inner = supervisor::errc::not_running;
  bool called = false;
  table->on_next = [&](std::size_t position) {
    if (t_reconciler && position == 0) {
      called = true;
      sup.run(
          supervisor::Cancel(requested.get_token()), [] {}, inner);
    }
  };
  std::error_code reconciled = supervisor::errc::not_running;
  sup.run([&] {
    REQUIRE(clock->wait_for_sleepers(1));  // the initial pass is over
    test::Background reconciler([&] {
      t_reconciler = true;
      reconciled = sup.reconcile();
    });
    REQUIRE(reconciler.wait());
  });
  CHECK(called);
  CHECK(inner == std::errc::resource_deadlock_would_occur);
  CHECK(reconciled == std::error_code());
}
