#pragma once

/// \file
/// `Supervisor<Key, R>`: keeps one process running per key of a user-owned `Table`.

#include <atomic>
#include <cassert>
#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <system_error>
#include <utility>
#include <vector>

#include "supervisor/async_calls.hpp"
#include "supervisor/async_ready.hpp"
#include "supervisor/cancel.hpp"
#include "supervisor/detail/call_admission.hpp"
#include "supervisor/detail/coroutine_host.hpp"
#include "supervisor/detail/epoch.hpp"
#include "supervisor/detail/invoke.hpp"
#include "supervisor/detail/key_history.hpp"
#include "supervisor/detail/managed_process.hpp"
#include "supervisor/detail/restart_loop.hpp"
#include "supervisor/detail/run_lock.hpp"
#include "supervisor/detail/sharded_map.hpp"
#include "supervisor/detail/start_gate.hpp"
#include "supervisor/detail/start_pacer.hpp"
#include "supervisor/detail/start_registration.hpp"
#include "supervisor/detail/thread_group.hpp"
#include "supervisor/detail/work_context.hpp"
#include "supervisor/errors.hpp"
#include "supervisor/events.hpp"
#include "supervisor/options.hpp"
#include "supervisor/process_state.hpp"
#include "supervisor/report.hpp"
#include "supervisor/runnable.hpp"
#include "supervisor/snapshot.hpp"
#include "supervisor/table.hpp"
#include "supervisor/task.hpp"

namespace supervisor {

/// Keeps the running processes equal to a table that the user owns: one process per key, started
/// from the table, restarted by periodic passes when it has exited, stopped on request and when
/// `run` ends.
///
/// `Key` is any hashable, equality-comparable, copyable type. `R` is a cheap-to-copy `Runnable`
/// handle (for example `std::shared_ptr<Worker>`): `start` and `get` hand a copy back so that
/// callers can talk to the running process.
///
/// Life cycle: `start`, `stop`, `get`, `visit` and `keys` are meaningful while `run` is active;
/// `run` restores the table, calls your callback, and on its return stops everything. A
/// `Supervisor` is itself `Runnable` (through a pointer-like handle), so supervisors nest.
///
/// Threads: each process runs its runnable on a thread of its own; a completion step on that
/// thread (the watchdog) removes the key when the runnable returns and reports its error. `run`
/// adds a restart-loop thread (and a timer thread when given a deadline), both created before any
/// process, and returns only after every thread it started has finished. Coroutine processes
/// (async_ready.hpp) run on `Options::executor` instead: from its threads, `start`, `stop`, `run`
/// and `reconcile` fail at once with `resource_deadlock_would_occur`; coroutines await the forms
/// of `AsyncCalls` (async_calls.hpp).
///
/// Thread-safety: every member may be called from any thread concurrently, including from inside
/// a runnable or a hook. The calls that would wait for the calling thread itself fail at once
/// with `std::errc::resource_deadlock_would_occur`: `stop` of a key whose runnable the caller is
/// part of (its own thread, a `leaf` body it started, a process of a supervisor nested in it),
/// and `run` from anything that `run` waits for (its callback, its processes, its hooks).
///
/// Happens-before: what a runnable did before calling `ready` is visible to the caller that
/// `start` returns to, and to a `get`/`visit` that finds it running; what it did before
/// returning is visible to the caller that `stop` returns to, and to the caller of `run` once
/// `run` returns. What a caller did before `start` is visible to the runnable.
///
/// User code under our locks: `Hash`, `KeyEqual` and copies of `Key` run on the calling thread;
/// `KeyEqual`, and the copies of keys a growing shard makes, may run under a short internal
/// lock, so they must not call back into the supervisor (as for any container). Nothing else of
/// yours runs under a lock of ours, and runnables are destroyed outside every lock.
///
/// Errors: the throwing overloads throw `std::system_error` with a `supervisor::errc` code for
/// the expected outcomes and rethrow the user's own exceptions (from the table, a runnable, the
/// callback, a hash or a copy) intact. The `std::error_code&` overloads set `ec` for the expected
/// outcomes and still rethrow the user's own exceptions. Errors that no caller can receive go to
/// `Options::on_error`. No failure of user code leaves a key taken without a live process.
///
/// Lifetime: destroying a `Supervisor` while `run` is active is a precondition violation
/// (asserted in debug builds). Lookups take no lock, so the record of a stopped process, with
/// its copy of the runnable, is freed once no lookup in flight may hold it: usually before
/// `stop` returns, else at a later write to its shard, after the next restart pass, when `run`
/// returns, or at the latest at destruction. The table is shared with the caller.
template <class Key, SupervisedRunnable R, class Hash = std::hash<Key>,
          class KeyEqual = std::equal_to<Key>>
requires std::copy_constructible<Key>
class Supervisor : public AsyncCalls<Supervisor<Key, R, Hash, KeyEqual>, Key, R> {
 public:
  using key_type = Key;
  using runnable_type = R;
  using options_type = Options<Key>;

  /// Supervises the rows of `table`, which the caller may keep using (to insert and erase rows).
  template <Table<Key, R> T>
  explicit Supervisor(std::shared_ptr<T> table, Options<Key> options = {})
      : table_(std::make_shared<detail::TableModel<Key, R, T>>(std::move(table))),
        options_(std::move(options)),
        threads_(detail::ThreadReuse{options_.reuse_threads, options_.thread_idle_timeout,
                                     handoff_spin_}),
        coroutines_(options_.executor),
        pacer_(options_.max_starts_in_flight) {
    (void)exited_before_ready_error();  // made now: an exit must not allocate for it
  }

  /// Supervises a table moved or copied into the supervisor.
  template <Table<Key, R> T>
  explicit Supervisor(T table, Options<Key> options = {})
      : Supervisor(std::make_shared<T>(std::move(table)), std::move(options)) {}

  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  ~Supervisor() {
    // Precondition: `run` has returned. Its threads refer to this object.
    assert(!run_lock_.held() && "supervisor::Supervisor destroyed while run() is active");
  }
  /// The busy-wait bound in effect: `Options::handoff_spin`, or the default of `R`'s kind.
  [[nodiscard]] std::chrono::nanoseconds handoff_spin() const noexcept { return handoff_spin_; }

  /// The life of the supervisor. Blocks the calling thread until `callback` has returned and
  /// everything the supervisor started has stopped.
  ///
  /// 1. Takes the run lock: a second concurrent `run` waits here until the first returns, or
  ///    until `cancel` fires (`errc::canceled` / `errc::deadline_exceeded`).
  /// 2. Creates its own threads (restart loop, deadline timer): if the machine has none left,
  ///    `run` throws `std::system_error` here, having started nothing.
  /// 3. Opens the start gate, then the initial pass: starts, in the background, every table row
  ///    that has no process, and waits until all of those starts have finished, or
  ///    `Options::initial_wait` has passed on the supervisor's clock, or `cancel` fires. A row
  ///    that cannot start (its runnable fails, or no thread can be made for it) is reported to
  ///    `on_error` and tried again by later passes; `run` goes on with the rest.
  /// 4. Starts the restart loop: every `Options::restart_interval`, a pass like the initial one
  ///    that does not wait.
  /// 5. Calls `callback` on this thread, with a `std::stop_token` if it takes one: requested when
  ///    `cancel`'s token is requested or its deadline passes.
  /// 6. When it returns (or throws): refuses later `reconcile` calls, stops the loop, waits for
  ///    the `reconcile` calls under way, closes the gate (later starts fail with
  ///    `errc::not_running`), stops every process (gracefully; forced once `cancel` fires), and
  ///    waits for all of them and every thread the supervisor started. It neither allocates nor
  ///    fails half-way. A pass holds it up as long as its table's reads and hooks take.
  ///
  /// `cancel` is the parent of every process: when its token is requested or its deadline
  /// passes, every process is forced. It does not interrupt `callback`; the callback should
  /// watch the token it is given (a nested supervisor's `Ready` does).
  ///
  /// Outcome: the callback's: its exception is rethrown intact after shutdown, and a
  /// `std::error_code` it returns is thrown as `std::system_error` (or stored in `ec`).
  /// `std::errc::resource_deadlock_would_occur`, at once and with no effect, if called from
  /// anything this `run` waits for: its callback or hooks, a process, a `reconcile` under way.
  template <class Callback>
  void run(Cancel cancel, Callback&& callback) {
    std::error_code ec;
    run(std::move(cancel), std::forward<Callback>(callback), ec);
    detail::throw_if(ec, "supervisor::Supervisor::run");
  }

  template <class Callback>
  void run(Callback&& callback) {
    run(Cancel{}, std::forward<Callback>(callback));
  }

  template <class Callback>
  void run(Cancel cancel, Callback&& callback, std::error_code& ec);

  /// `run` for the common service shape: runs until `stop` is requested (by a SIGTERM handler,
  /// say), then shuts down gracefully, and forces whatever still runs `grace` later. Blocks like
  /// `run`; throws like `run`.
  ///
  /// With a `callback`, it runs as `run`'s does, with a token requested when `stop` is (or when
  /// the shutdown is forced); the shutdown begins when it returns, and the grace period with it.
  template <class Rep, class Period, class Callback>
  void run_until(std::stop_token stop, std::chrono::duration<Rep, Period> grace,
                 Callback&& callback);

  template <class Rep, class Period>
  void run_until(std::stop_token stop, std::chrono::duration<Rep, Period> grace) {
    run_until(std::move(stop), grace, &detail::wait_for_stop);
  }

  /// Starts the process for `key`, with the runnable that `Table::get(key)` returns, and blocks
  /// until it is ready. Returns a copy of its runnable. The table's `get` runs on the calling
  /// thread, outside every lock of the supervisor; the runnable runs on a thread of its own.
  /// Happens-before: what the caller did before `start` is visible to the runnable; what the
  /// runnable did before calling `ready` is visible when `start` returns.
  ///
  /// Outcomes: `errc::not_running` unless `run` is active; `errc::process_exists` if `key` has a
  /// process (running, starting, stopping, or taken by another start in flight);
  /// `errc::not_in_table` if the table has no row for `key`; the table's exception, rethrown;
  /// the runnable's exception, rethrown, or `errc::exited_before_ready`, if it returned before
  /// `ready`; `errc::canceled` / `errc::deadline_exceeded` if `cancel` fired first (the process
  /// is forced, and the call blocks until its `run` has returned); `std::system_error` if no
  /// thread could be made; the exception of `Hash`, `KeyEqual` or a copy of the key or the
  /// runnable. On any failure the key is free again and no process of this call runs: if the
  /// copy of the runnable that `start` returns throws, the process it started is forced down
  /// and waited for first.
  R start(const Key& key, Cancel cancel = {}) {
    std::error_code ec;
    auto managed = start_process(key, cancel, ec);
    detail::throw_if(ec, "supervisor::Supervisor::start");
    try {
      return managed->runnable();
    } catch (...) {
      abandon(*managed);
      throw;
    }
  }
  std::optional<R> start(const Key& key, std::error_code& ec) { return start(key, Cancel{}, ec); }
  std::optional<R> start(const Key& key, Cancel cancel, std::error_code& ec);

  /// Stops the process for `key` and blocks until its runnable has returned. Works whether or
  /// not `run` is active. Erase the key from the table first, or the next pass starts it again.
  /// Happens-before: what the runnable did before returning is visible when `stop` returns.
  ///
  /// The key stays taken until the runnable has returned (`get` then reports
  /// `errc::process_not_running`, `start` `errc::process_exists`), so there is never more than one
  /// live runnable per key; once `stop` returns, the key is free.
  ///
  /// Outcomes: `errc::process_not_found` if `key` has no process, is only taken by a start that
  /// has not launched it yet, or is already being stopped by someone else (another `stop`,
  /// `run`'s shutdown, or its own exit); the runnable's exception, rethrown; `errc::canceled` /
  /// `errc::deadline_exceeded` if `cancel` fired first (force is requested, and the call still
  /// blocks until `run` has returned); `std::errc::resource_deadlock_would_occur`, with no
  /// effect, if the calling thread is part of that runnable (see the class comment); the
  /// exception of `Hash` or `KeyEqual`, with no effect.
  void stop(const Key& key, Cancel cancel = {}) {
    std::error_code ec;
    stop(key, std::move(cancel), ec);
    detail::throw_if(ec, "supervisor::Supervisor::stop");
  }
  void stop(const Key& key, std::error_code& ec) { stop(key, Cancel{}, ec); }
  void stop(const Key& key, Cancel cancel, std::error_code& ec);

  /// The runnable of the process for `key`, copied on the calling thread. Happens-before: what
  /// the runnable did before `ready` is visible once `get` finds it running. Never blocks: takes
  /// no lock, and writes no memory
  /// that another thread's lookup reads (copying `R` aside: see `visit`). (A thread's first
  /// lookup registers the thread once, under a short lock; that may throw `std::bad_alloc`.)
  ///
  /// Outcomes: `errc::process_not_found` if `key` has no process (or a start has only taken it);
  /// `errc::process_not_running` if the process is still starting or already stopped: the
  /// `error_code&` form then still returns the runnable. The exception of `Hash`, `KeyEqual` or
  /// the copy of `R`.
  R get(const Key& key) const {
    std::error_code ec;
    auto runnable = get(key, ec);
    detail::throw_if(ec, "supervisor::Supervisor::get");
    return std::move(*runnable);
  }
  std::optional<R> get(const Key& key, std::error_code& ec) const;

  /// Calls `f(const R&)` with the runnable of the process for `key`, without copying it, if that
  /// process is running. For hot paths whose handle is costly to copy (a `std::shared_ptr`'s
  /// copy writes its reference count, a cache line that every thread using the key then
  /// shares). Runs `f` on the calling thread; never blocks.
  ///
  /// Outcomes (`f` is not called): `errc::process_not_found` if `key` has no process (or a start
  /// has only taken it); `errc::process_not_running` if it is still starting or already stopped.
  /// What `f`, `Hash` or `KeyEqual` throw propagates.
  ///
  /// `f` may call any member of this supervisor. The runnable stays valid while `f` runs even if
  /// the process is stopped meanwhile; do not keep the reference past `f`'s return. Keep `f`
  /// short: while it runs, no supervisor in the program frees the records of processes stopped
  /// meanwhile (memory waits; nothing else does).
  template <std::invocable<const R&> F>
  std::error_code visit(const Key& key, F&& f) const;

  /// The keys that have a process right now (starting, running, or stopping), not those only
  /// taken by a start in flight. A snapshot: it may be stale at once. Takes no lock (copies of
  /// the keys run under none). Throws what copying a key or the vector throws.
  [[nodiscard]] std::vector<Key> keys() const;

  // ---- Operations (see `Options` for the policy, events and shutdown settings) ------------

  /// Runs a restart pass now, on the calling thread, and returns when it has begun every start
  /// it will begin (it does not wait for them). If a pass is already running (the loop's, or
  /// another caller's), it makes that pass run once more and returns at once: calls are
  /// coalesced, at most one pass runs and at most one more is pending. The table's `iterate`
  /// runs on the thread that runs the pass. `errc::not_running` unless `run` is active. `run`'s
  /// shutdown waits until a call it admitted is done with the supervisor (table reads and hooks
  /// included): never make a pass wait for what only that shutdown ends.
  [[nodiscard]] std::error_code reconcile();

  /// Checks one key against the table now, on the calling thread: starts its process in the
  /// background if its row exists, it has no process, and it is neither backing off nor given
  /// up; with `Options::prune`, asks its process to stop (without waiting) if the row is gone.
  /// Does not wait for the start; a failed start is reported (`ErrorSource::start`), as a pass's.
  /// `errc::not_running` unless `run` is active; the table's, `Hash`'s or `KeyEqual`'s exception.
  /// `run` waits for it as for `reconcile()`.
  [[nodiscard]] std::error_code reconcile(const Key& key);

  /// Forgets the key's failures: its backoff, its count of consecutive failures, and its
  /// give-up, so the next pass starts it. Returns whether there was anything to forget. Never
  /// blocks on a process.
  bool reset(const Key& key);

  /// Every key the supervisor knows, with its state and failure history (see `Snapshot`).
  /// Taken without stopping anything and without a lock held across keys. Throws what copying a
  /// key or growing the vector throws.
  [[nodiscard]] Snapshot<Key> snapshot() const;

 private:
  using Managed = detail::ManagedProcess<Supervisor, Key, R>;
  using ManagedPtr = std::shared_ptr<Managed>;
  using RunHere = std::coroutine_handle<>*;  // a coroutine process for its caller to resume
  friend Managed;
  friend class AsyncCalls<Supervisor, Key, R>;

  /// `run_until`, with its expected outcomes in `ec`.
  template <class Rep, class Period, class Callback>
  void run_until(std::stop_token stop, std::chrono::duration<Rep, Period> grace,
                 Callback&& callback, std::error_code& ec);

  /// Removes the entry of `managed` if it is still there. Calls no user code; never throws.
  void forget(const Managed& managed) noexcept;

  void report(ErrorSource source, const Key* key, std::exception_ptr error) noexcept;

  /// Registers and launches a process for `key`, then waits for its start. Null (and `ec`) on
  /// an expected failure; throws the user's failures. Either way, on failure the key is free.
  ManagedPtr start_process(const Key& key, const Cancel& cancel, std::error_code& ec);
  /// Its first half: registers and launches, without waiting. From a successful return on, the
  /// watchdog frees the key when the runnable returns.
  ManagedPtr launch_process(const Key& key, std::error_code& ec, RunHere run_here = nullptr);
  /// Claims the stop of `key`'s process and requests it; null (and `ec`) if this caller may not
  /// (`caller_task`: the awaiting task's owner, if the caller is a task). `run_here`: see
  /// `ProcessCore::begin_start` and `request_stop`.
  ManagedPtr claim_for_stop(const Key& key, const detail::WorkContext* caller_task,
                            std::error_code& ec);
  ManagedPtr find_launched(const Key& key, const detail::WorkContext* caller_task,
                           std::error_code& ec);
  bool claim_stop(Managed& managed, std::error_code& ec, RunHere run_here = nullptr);

  /// Undoes a start whose caller cannot be told: forces it, and waits until its key is free.
  void abandon(Managed& managed) noexcept;

  /// The runnable's own error, to `on_error` when its stop's claimer hears something else.
  void report_unheard(Managed& managed, ErrorSource source) noexcept;

  /// Requests the stop of a claimed process: its watchdog frees the key (at once if unstarted).
  void stop_claimed(Managed& managed, bool forced, RunHere run_here = nullptr) noexcept;

  using Registration = detail::StartRegistration<Supervisor, ManagedPtr>;  // a key taken
  friend Registration;

  /// Launches a registered process on a thread of the group. `errc::invalid_state` if `run`'s
  /// shutdown stopped it first; throws if no thread can be made.
  std::error_code launch(const ManagedPtr& record, RunHere run_here = nullptr);

  /// How a pass ended: through the whole table (only then does it prune), cut short by a failing
  /// table or the shutdown, or (initial pass only) for want of a start slot.
  enum class PassEnd : std::uint8_t { complete, partial, out_of_slots };
  PassEnd run_pass(const std::shared_ptr<detail::PassTracker>& tracker) noexcept;
  /// False if the pass must end early: shutting down, or no free start slot and `!wait_for_slot`
  /// (the key is left to a later pass; else it waits). Moves `runnable` only to start it.
  bool start_in_background(std::uint64_t hash, const Key& key, R&& runnable,
                           const std::shared_ptr<detail::PassTracker>& tracker, std::uint64_t pass,
                           bool wait_for_slot) noexcept;
  void shut_down(bool forced) noexcept;

  // ---- The operations layer (detail/supervisor_operations.hpp) ----
  using time_point = std::chrono::steady_clock::time_point;
  using History = detail::KeyHistory<R>;
  using HistoryPtr = std::shared_ptr<History>;

  [[nodiscard]] time_point now() const noexcept;
  [[nodiscard]] time_point stamp() const noexcept;  // a process's start, readiness or stop
  void emit(const Event<Key>& event) noexcept;
  void emit_foreign(Managed& managed, EventKind kind, time_point at) noexcept;
  void mark_stop_requested(Managed& managed) noexcept;
  void process_starting(Managed& managed) noexcept;
  void process_becoming_ready(Managed& managed) noexcept;
  void process_ready(Managed& managed) noexcept;
  void process_exiting(Managed& managed, detail::Claim claim, bool became_ready,
                       const std::exception_ptr& failure) noexcept;
  void process_gone() noexcept;
  void process_settled() noexcept { coroutines_.settled(); }
  [[nodiscard]] bool would_block_executor() const noexcept;  // refuse: blocking on the executor
  void start_settled() noexcept { pacer_.release(); }
  static const std::exception_ptr& exited_before_ready_error();
  double draw_spread() noexcept;
  typename History::Verdict record_history(Managed& managed, time_point at, bool failed,
                                           const std::exception_ptr& error, bool give_up) noexcept;
  bool count_for_escalation(time_point at) noexcept;
  void escalate(const Key& key, time_point at, const std::exception_ptr& error) noexcept;
  bool may_start_automatically(std::uint64_t hash, const Key& key, const R& row,
                               std::uint64_t pass);
  void count_restart(const Managed& managed);
  void mark_history_seen(std::uint64_t hash, const Key& key, std::uint64_t pass);
  [[nodiscard]] std::optional<time_point> next_retry_due() const noexcept;
  void finish_complete_pass(std::uint64_t pass) noexcept;
  void prune_and_forget(std::uint64_t pass);
  [[nodiscard]] bool ending() const noexcept;  // `run` shuts down or is canceled
  void run_passes_coalesced() noexcept;

  std::shared_ptr<detail::AnyTable<Key, R>> table_;
  Options<Key> options_;
  const std::chrono::nanoseconds handoff_spin_ =
      detail::resolve_handoff_spin(options_.handoff_spin, CoroutineRunnable<R>);
  detail::ShardedMap<Key, ManagedPtr, Hash, KeyEqual> processes_;
  detail::RunLock run_lock_;
  detail::StartGate gate_;
  std::stop_token parent_;  // set by `run` before it opens the gate, read by starts past it
  const detail::WorkContext* run_work_ = nullptr;
  detail::ThreadGroup threads_;
  detail::CoroutineHost coroutines_;  // coroutine processes: their executor, their count

  // Operations state.
  detail::StartPacer pacer_;
  detail::ShardedMap<Key, HistoryPtr, Hash, KeyEqual> histories_;
  std::atomic<std::size_t> history_count_{0};
  std::atomic<std::uint64_t> pass_id_{0};  // the last pass begun
  std::atomic<bool> pass_running_{false};  // coalescing of passes
  std::atomic<bool> pass_pending_{false};
  detail::CallAdmission reconcile_calls_;  // open while `run` is: `reconcile` works
  std::atomic<bool> forcing_all_{false};   // `parent_` requested: the walk that forces has begun
  std::atomic<bool> shutting_down_{false};
  std::atomic<std::size_t> live_{0};     // launched processes not yet gone
  std::stop_source* drained_ = nullptr;  // `run`'s: requested when `live_` drops to 0
  std::atomic<detail::RestartLoop*> loop_{nullptr};
  std::atomic<std::stop_source*> callback_stop_{nullptr};
  std::atomic<bool> escalated_{false};
  std::mutex escalation_mutex_;
  time_point escalation_window_start_{};
  std::uint32_t escalation_failures_ = 0;
  std::atomic<std::uint64_t> jitter_state_{0x2545F4914F6CDD1DULL};
};

}  // namespace supervisor

#include "supervisor/detail/supervisor_async.hpp"
#include "supervisor/detail/supervisor_lookup.hpp"
#include "supervisor/detail/supervisor_operations.hpp"
#include "supervisor/detail/supervisor_pass.hpp"
#include "supervisor/detail/supervisor_reconcile.hpp"
#include "supervisor/detail/supervisor_run.hpp"
#include "supervisor/detail/supervisor_start_stop.hpp"
