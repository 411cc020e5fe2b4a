#pragma once

/// \file
/// `Supervisor<Key, R>`: keeps one process running per key of a user-owned `Table`.
///
/// This is also the umbrella header: including it gives the whole library.

#include <atomic>
#include <cassert>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stop_token>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "supervisor/adapters.hpp"
#include "supervisor/cancel.hpp"
#include "supervisor/clock.hpp"
#include "supervisor/composite.hpp"
#include "supervisor/detail/pass_tracker.hpp"
#include "supervisor/detail/process_core.hpp"
#include "supervisor/detail/run_lock.hpp"
#include "supervisor/detail/sharded_map.hpp"
#include "supervisor/detail/thread_group.hpp"
#include "supervisor/errors.hpp"
#include "supervisor/options.hpp"
#include "supervisor/process.hpp"
#include "supervisor/process_state.hpp"
#include "supervisor/runnable.hpp"
#include "supervisor/table.hpp"

namespace supervisor {

/// Keeps the running processes equal to a table that the user owns: one process per key, started
/// from the table, restarted by periodic passes when it has exited, stopped on request and when
/// `run` ends.
///
/// `Key` is any hashable, equality-comparable, copyable type. `R` is a cheap-to-copy `Runnable`
/// handle (for example `std::shared_ptr<Worker>`): `start` and `get` hand a copy back so that
/// callers can talk to the running process.
///
/// Life cycle: `start`, `stop`, `get` and `keys` are meaningful while `run` is active; `run`
/// restores the table, calls your callback, and on its return stops everything. A `Supervisor`
/// is itself `Runnable` (through a pointer-like handle), so supervisors nest: run one as a process
/// of another.
///
/// Threads: each process runs its runnable on a thread of its own; a completion step on that same
/// thread (the watchdog) removes the key when the runnable returns and reports its error. `run`
/// adds one restart-loop thread (and one timer thread when given a deadline). `run` returns only
/// after every thread it started has finished.
///
/// Thread-safety: every member may be called from any thread concurrently, including from inside
/// a runnable. Exceptions: the calls that would wait for the calling thread itself fail with
/// `std::errc::resource_deadlock_would_occur` instead (`stop` of the caller's own key, `run` from
/// one of the supervisor's own processes).
///
/// Errors: the throwing overloads throw `std::system_error` with a `supervisor::errc` code for
/// the expected outcomes and rethrow the user's own exceptions (from the table, a runnable, the
/// callback) intact. The `std::error_code&` overloads set `ec` for the expected outcomes and
/// still rethrow the user's own exceptions. Errors that no caller can receive go to
/// `Options::on_error`.
///
/// Lifetime: destroying a `Supervisor` while `run` is active is a precondition violation
/// (asserted in debug builds). Lookups take no lock, so the supervisor's record of a stopped
/// process, with its copy of the runnable, is freed once no lookup in flight may hold it:
/// usually before `stop` returns, else at a later write to its shard, after the next restart
/// pass, when `run` returns, or at the latest at destruction. The table is shared with the
/// caller and kept alive as long as the supervisor.
template <class Key, Runnable R, class Hash = std::hash<Key>, class KeyEqual = std::equal_to<Key>>
requires std::copy_constructible<R> && std::copy_constructible<Key>
class Supervisor {
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
                                     options_.handoff_spin}) {}

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

  /// The life of the supervisor. Blocks the calling thread until `callback` has returned and
  /// everything the supervisor started has stopped.
  ///
  /// 1. Takes the run lock: a second concurrent `run` waits here until the first returns, or
  ///    until `cancel` fires (`errc::canceled` / `errc::deadline_exceeded`).
  /// 2. Opens the start gate, then the initial pass: starts, in the background, every table row
  ///    that has no process, and waits until all of those starts have finished, or
  ///    `Options::initial_wait` has passed on the supervisor's clock, or `cancel` fires.
  /// 3. Starts the restart loop: every `Options::restart_interval`, a pass like the initial one
  ///    that does not wait.
  /// 4. Calls `callback` on this thread, with a `std::stop_token` if it takes one: requested when
  ///    `cancel`'s token is requested or its deadline passes.
  /// 5. When it returns: stops the loop, closes the gate (later starts fail with
  ///    `errc::not_running`), stops every process (gracefully; forced once `cancel` fires), and
  ///    waits for all of them and for every thread the supervisor started.
  ///
  /// `cancel` is the parent of every process: when its token is requested or its deadline
  /// passes, every process is forced. It does not interrupt `callback`; the callback should
  /// watch the token it is given (a nested supervisor's `Ready` does).
  ///
  /// Outcome: the callback's: its exception is rethrown intact after shutdown, and a
  /// `std::error_code` it returns is thrown as `std::system_error` (or stored in `ec`).
  /// `std::errc::resource_deadlock_would_occur` if called from one of this supervisor's own
  /// processes.
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

  /// Starts the process for `key`, with the runnable that `Table::get(key)` returns, and blocks
  /// until it is ready. Returns a copy of its runnable.
  ///
  /// Outcomes: `errc::not_running` unless `run` is active; `errc::process_exists` if `key` has a
  /// process (running, starting, or reserved by another start in flight);
  /// `errc::not_in_table` if the table has no row for `key`; the table's exception, rethrown;
  /// the runnable's exception, rethrown, or `errc::exited_before_ready`, if it returned before
  /// `ready`; `errc::canceled` / `errc::deadline_exceeded` if `cancel` fired first (the process is
  /// forced, and the call blocks until its `run` has returned). On any failure the key is free
  /// again. `errc::invalid_state` if a concurrent `stop` of the same key stopped it first.
  ///
  /// The start gate is held only while the process is registered, not while it starts, so a
  /// slow startup never holds up the shutdown of `run`, which stops it like any other.
  R start(const Key& key, Cancel cancel = {}) {
    std::error_code ec;
    auto runnable = start(key, std::move(cancel), ec);
    detail::throw_if(ec, "supervisor::Supervisor::start");
    return std::move(*runnable);
  }
  std::optional<R> start(const Key& key, std::error_code& ec) { return start(key, Cancel{}, ec); }
  std::optional<R> start(const Key& key, Cancel cancel, std::error_code& ec);

  /// Stops the process for `key` and blocks until its runnable has returned. Works whether or
  /// not `run` is active. Erase the key from the table first, or the next pass starts it again.
  ///
  /// The key stays taken until the runnable has returned (`get` then reports
  /// `errc::process_not_running`, `start` `errc::process_exists`), so there is never more than one
  /// live runnable per key; once `stop` returns, the key is free.
  ///
  /// Outcomes: `errc::process_not_found` if `key` has no process, is only reserved, or is already
  /// being stopped by someone else (another `stop`, `run`'s shutdown, or its own exit); the
  /// runnable's exception, rethrown; `errc::canceled` / `errc::deadline_exceeded` if `cancel`
  /// fired first (force is requested, and the call still blocks until `run` has returned);
  /// `std::errc::resource_deadlock_would_occur`, with no effect, if called from the runnable of
  /// `key` itself.
  void stop(const Key& key, Cancel cancel = {}) {
    std::error_code ec;
    stop(key, std::move(cancel), ec);
    detail::throw_if(ec, "supervisor::Supervisor::stop");
  }
  void stop(const Key& key, std::error_code& ec) { stop(key, Cancel{}, ec); }
  void stop(const Key& key, Cancel cancel, std::error_code& ec);

  /// The runnable of the process for `key`. Never blocks: takes no lock, and writes no memory
  /// that another thread's lookup reads (copying `R` aside: see `visit`). (A thread's first
  /// lookup registers the thread once, under a short lock; that may throw `std::bad_alloc`.)
  ///
  /// Outcomes: `errc::process_not_found` if `key` has no process (or is only reserved);
  /// `errc::process_not_running` if the process is still starting or already stopped: the
  /// `error_code&` form then still returns the runnable.
  R get(const Key& key) const {
    std::error_code ec;
    auto runnable = get(key, ec);
    detail::throw_if(ec, "supervisor::Supervisor::get");
    return std::move(*runnable);
  }
  std::optional<R> get(const Key& key, std::error_code& ec) const {
    return processes_.visit(key, [&](const ManagedPtr* managed) -> std::optional<R> {
      if (managed == nullptr || !*managed) {
        ec = errc::process_not_found;
        return std::nullopt;
      }
      ec = (*managed)->state() == ProcessState::running ? std::error_code{}
                                                        : errc::process_not_running;
      return (*managed)->runnable();
    });
  }

  /// Calls `f(const R&)` with the runnable of the process for `key`, without copying it, if that
  /// process is running. For hot paths whose handle is costly to copy (a `std::shared_ptr`'s
  /// copy writes its reference count, a cache line that every thread using the key then
  /// shares). Runs `f` on the calling thread; never blocks.
  ///
  /// Outcomes (`f` is not called): `errc::process_not_found` if `key` has no process (or is only
  /// reserved); `errc::process_not_running` if it is still starting or already stopped. What `f`
  /// throws propagates.
  ///
  /// `f` may call any member of this supervisor. The runnable stays valid while `f` runs even if
  /// the process is stopped meanwhile; do not keep the reference past `f`'s return. Keep `f`
  /// short: while it runs, no supervisor in the program frees the records of processes stopped
  /// meanwhile (memory waits; nothing else does).
  template <std::invocable<const R&> F>
  std::error_code visit(const Key& key, F&& f) const {
    return processes_.visit(key, [&](const ManagedPtr* managed) -> std::error_code {
      if (managed == nullptr || !*managed) {
        return errc::process_not_found;
      }
      if ((*managed)->state() != ProcessState::running) {
        return errc::process_not_running;
      }
      std::invoke(f, std::as_const((*managed)->runnable()));
      return {};
    });
  }

  /// The keys that have a process right now (starting, running, or stopping), not
  /// those only reserved by a start in flight. A snapshot: it may be stale at once.
  [[nodiscard]] std::vector<Key> keys() const {
    std::vector<Key> result;
    processes_.for_each([&](const Key& key, const ManagedPtr& managed) {
      if (managed) {
        result.push_back(key);
      }
    });
    return result;
  }

 private:
  /// Who removes a managed process's key: exactly one party wins, the others step back.
  enum class Claim : std::uint8_t { none, user_stop, shutdown, own_exit };
  enum class Origin : std::uint8_t { user_start, pass };

  class Managed;
  using ManagedPtr = std::shared_ptr<Managed>;

  class Managed final : public detail::ProcessCore<R> {
   public:
    Managed(Supervisor& owner, const Key& key, R runnable, const std::stop_token& parent,
            Origin origin, std::shared_ptr<detail::PassTracker> tracker)
        : detail::ProcessCore<R>(std::move(runnable), parent, owner.options_.handoff_spin),
          owner_(owner),
          parent_(parent),
          key_(key),
          origin_(origin),
          tracker_(std::move(tracker)) {}

    /// Claims the right to remove the key. Returns whether `who` won.
    bool claim(Claim who) noexcept {
      Claim expected = Claim::none;
      return claim_.compare_exchange_strong(expected, who, std::memory_order_acq_rel);
    }

    [[nodiscard]] const Key& key() const noexcept { return key_; }

    /// Gives up the wait for a start that never launched.
    void forget_start() {
      if (tracker_) {
        tracker_->finish();
      }
    }

   private:
    void on_ready() override {
      if (tracker_) {
        tracker_->finish();
      }
    }

    // The watchdog, on the process's own thread, before `done` is visible.
    void on_exit(bool became_ready, const std::exception_ptr& failure) override {
      if (!became_ready && tracker_) {
        tracker_->finish();
      }
      // The key is held until the runnable has returned, whoever stopped it: at most one live
      // runnable per key, ever.
      owner_.erase(key_, this);
      if (claim(Claim::own_exit)) {
        // A startup cut short by `run`'s cancellation, without an error of its own, is expected.
        const bool canceled = !failure && parent_.stop_requested();
        if (!became_ready && origin_ == Origin::pass && !canceled) {
          owner_.report(ErrorSource::start, &key_,
                        failure ? failure
                                : std::make_exception_ptr(std::system_error(
                                      errc::exited_before_ready, "background start")));
        } else if (became_ready && failure) {
          owner_.report(ErrorSource::exit, &key_, failure);
        }
      } else if (claim_.load(std::memory_order_acquire) == Claim::shutdown && failure) {
        owner_.report(ErrorSource::shutdown, &key_, failure);
      }
    }

    Supervisor& owner_;
    std::stop_token parent_;
    Key key_;
    Origin origin_;
    std::shared_ptr<detail::PassTracker> tracker_;
    std::atomic<Claim> claim_{Claim::none};
  };

  /// Removes `key` if it still maps to `managed` (and not to a successor or a reservation).
  bool erase(const Key& key, const Managed* managed) {
    return processes_.erase_if(
        key, [managed](const ManagedPtr& value) { return value.get() == managed; });
  }

  /// Drops the reservation of `key` made by `reserve`.
  void unreserve(const Key& key) {
    processes_.erase_if(key, [](const ManagedPtr& value) { return value == nullptr; });
  }

  /// Reserves `key` for a start in flight. Returns false if it has a process or reservation.
  bool reserve(const Key& key) { return processes_.try_emplace(key, nullptr); }

  void report(ErrorSource source, const Key* key, std::exception_ptr error) noexcept {
    if (!options_.on_error) {
      return;
    }
    try {
      options_.on_error(ErrorReport<Key>{source, key, std::move(error)});
    } catch (...) {
      try {
        std::clog << "supervisor: the error hook threw: " << describe(std::current_exception())
                  << '\n';
      } catch (...) {  // NOLINT(bugprone-empty-catch): nowhere left to report to.
      }
    }
  }

  detail::Launch launcher() {
    return [this](std::function<void()> body) { threads_.launch(std::move(body)); };
  }

  /// Registers a process under a key reserved by the caller and launches it. Must be called
  /// under the gate's shared lock with the gate open. Returns null (and `ec`) if a concurrent
  /// `stop` stopped it before it could start.
  ManagedPtr launch_reserved(const Key& key, R runnable, Origin origin,
                             const std::shared_ptr<detail::PassTracker>& tracker,
                             std::error_code& ec);

  /// Requests the stop of a process whose removal the caller has claimed. The key goes when the
  /// runnable has returned (the watchdog erases it), or at once if it never started.
  void stop_claimed(Managed& managed, bool forced) {
    bool was_initial = false;
    // `invalid_state` only means it already returned on its own; the watchdog handles that.
    (void)managed.request_stop(forced, &was_initial);
    if (was_initial) {
      erase(managed.key(), &managed);
    }
  }

  void run_pass(const std::shared_ptr<detail::PassTracker>& tracker) noexcept;
  void start_in_background(const Key& key, R runnable,
                           const std::shared_ptr<detail::PassTracker>& tracker) noexcept;
  void stop_all(bool forced);

  std::shared_ptr<detail::AnyTable<Key, R>> table_;
  Options<Key> options_;
  detail::ShardedMap<Key, ManagedPtr, Hash, KeyEqual> processes_;
  detail::RunLock run_lock_;
  // The start gate: `started_` and `parent_` change only under the exclusive lock.
  std::shared_mutex gate_;
  bool started_ = false;
  std::stop_token parent_;
  detail::ThreadGroup threads_;
};

// ---- run -------------------------------------------------------------------------------------

namespace detail {

template <class Callback>
decltype(auto) invoke_callback(Callback& callback, const std::stop_token& token) {
  if constexpr (std::is_invocable_v<Callback&, const std::stop_token&>) {
    return std::invoke(callback, token);
  } else {
    return std::invoke(callback);
  }
}

}  // namespace detail

template <class Key, Runnable R, class Hash, class KeyEqual>
requires std::copy_constructible<R> && std::copy_constructible<Key>
template <class Callback>
void Supervisor<Key, R, Hash, KeyEqual>::run(Cancel cancel, Callback&& callback,
                                             std::error_code& ec) {
  ec.clear();
  if (threads_.owns_this_thread()) {
    ec = std::make_error_code(std::errc::resource_deadlock_would_occur);
    return;
  }
  if ((ec = run_lock_.acquire(cancel))) {
    return;
  }
  struct Release {
    detail::RunLock& lock;
    ~Release() { lock.release(); }
  } release{run_lock_};

  // The parent of every process: requested when `cancel`'s token is, or its deadline passes.
  std::stop_source parent;
  std::stop_callback link(cancel.token(), [&parent]() noexcept { parent.request_stop(); });
  std::jthread deadline_timer;
  std::jthread restart_loop;
  {
    std::unique_lock gate(gate_);
    started_ = true;
    parent_ = parent.get_token();
  }

  std::exception_ptr failure;
  try {
    if (cancel.has_deadline()) {
      deadline_timer =
          std::jthread([&parent, deadline = cancel.deadline()](const std::stop_token& over) {
            bool passed = true;
            try {
              passed = SteadyClock{}.wait_until(deadline, over);
            } catch (...) {  // NOLINT(bugprone-empty-catch): cannot wait, so act as if passed.
            }
            if (passed && !over.stop_requested()) {
              parent.request_stop();
            }
          });
    }

    // Initial pass: restore the table before the callback, but let no slow start hold it up.
    {
      // The wait is measured from the start of the pass, so a long iteration eats into it.
      const auto give_up_at = options_.clock.now() + options_.initial_wait;
      auto tracker = std::make_shared<detail::PassTracker>();
      run_pass(tracker);
      std::stop_callback cut_short(parent.get_token(),
                                   [&tracker]() noexcept { tracker->settled().request_stop(); });
      if (!tracker->settled().stop_requested()) {
        options_.clock.wait_until(give_up_at, tracker->settled().get_token());
      }
    }

    // The restart loop: wait an interval, run a pass; until the callback returns or `cancel`.
    restart_loop = std::jthread([this](const std::stop_token& over) {
      try {
        while (options_.clock.wait_until(options_.clock.now() + options_.restart_interval, over)) {
          run_pass(nullptr);
          // Frees what stopped processes left in shards that no write has visited since.
          processes_.reclaim();
        }
      } catch (...) {
        // Only a user's clock can throw here; the loop ends, `run` and its processes go on.
        report(ErrorSource::clock, nullptr, std::current_exception());
      }
    });
    std::stop_callback stop_loop_on_cancel(
        parent.get_token(), [&restart_loop]() noexcept { restart_loop.request_stop(); });

    const std::stop_token stopping = parent.get_token();
    using Result = decltype(detail::invoke_callback(callback, stopping));
    if constexpr (std::is_convertible_v<Result, std::error_code>) {
      ec = detail::invoke_callback(callback, stopping);
    } else {
      detail::invoke_callback(callback, stopping);
    }
  } catch (...) {
    failure = std::current_exception();
  }

  // Shutdown. Nothing below throws but what the standard library may throw for lack of threads.
  if (restart_loop.joinable()) {
    restart_loop.request_stop();
    restart_loop.join();
  }
  {
    std::unique_lock gate(gate_);  // Waits for the registrations in flight.
    started_ = false;
  }
  threads_.close();  // Threads that finish now exit rather than park for work that won't come.
  stop_all(parent.stop_requested());
  threads_.join_all();
  processes_.reclaim();  // The last runnables' copies, unless a `get` elsewhere still holds them.
  if (deadline_timer.joinable()) {
    deadline_timer.request_stop();
    deadline_timer.join();
  }
  {
    std::unique_lock gate(gate_);
    parent_ = {};
  }
  if (failure) {
    std::rethrow_exception(failure);
  }
}

// ---- passes ----------------------------------------------------------------------------------

template <class Key, Runnable R, class Hash, class KeyEqual>
requires std::copy_constructible<R> && std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::run_pass(
    const std::shared_ptr<detail::PassTracker>& tracker) noexcept {
  struct EndIteration {
    const std::shared_ptr<detail::PassTracker>& tracker;
    ~EndIteration() {
      if (tracker) {
        tracker->end_iteration();
      }
    }
  } end_iteration{tracker};

  std::unique_ptr<typename detail::AnyTable<Key, R>::Cursor> cursor;
  try {
    cursor = table_->iterate();
  } catch (...) {
    report(ErrorSource::iterate, nullptr, std::current_exception());
    return;
  }
  try {
    while (cursor->next()) {
      std::optional<std::pair<Key, R>> row;
      try {
        row.emplace(cursor->get());
      } catch (...) {
        report(ErrorSource::row, nullptr, std::current_exception());
        continue;
      }
      start_in_background(row->first, std::move(row->second), tracker);
    }
  } catch (...) {
    report(ErrorSource::iterate, nullptr, std::current_exception());
  }
  try {
    cursor->close();
  } catch (...) {
    report(ErrorSource::close, nullptr, std::current_exception());
  }
}

template <class Key, Runnable R, class Hash, class KeyEqual>
requires std::copy_constructible<R> && std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::start_in_background(
    const Key& key, R runnable, const std::shared_ptr<detail::PassTracker>& tracker) noexcept {
  std::exception_ptr failure;
  try {
    // Most rows of a pass already run: one lock-free probe, and nothing else.
    if (processes_.visit(key, [](const ManagedPtr* found) { return found != nullptr; })) {
      return;
    }
    std::shared_lock gate(gate_);
    if (!started_ || !reserve(key)) {  // Closed, or it got a process since the probe.
      return;
    }
    std::error_code ec;
    launch_reserved(key, std::move(runnable), Origin::pass, tracker, ec);
  } catch (...) {
    // Unwinding released the gate: the hook may call back in (start takes the gate too).
    failure = std::current_exception();
  }
  if (failure) {
    report(ErrorSource::start, &key, failure);
  }
}

template <class Key, Runnable R, class Hash, class KeyEqual>
requires std::copy_constructible<R> && std::copy_constructible<Key>
auto Supervisor<Key, R, Hash, KeyEqual>::launch_reserved(
    const Key& key, R runnable, Origin origin, const std::shared_ptr<detail::PassTracker>& tracker,
    std::error_code& ec) -> ManagedPtr {
  ManagedPtr managed;
  try {
    managed = std::make_shared<Managed>(*this, key, std::move(runnable), parent_, origin, tracker);
  } catch (...) {
    unreserve(key);
    throw;
  }
  try {
    processes_.assign(key, managed);  // allocates a node
  } catch (...) {
    unreserve(key);
    throw;
  }
  if (tracker) {
    tracker->add();
  }
  try {
    ec = managed->begin_start(launcher());
  } catch (...) {
    // No thread: the watchdog will never run, so undo its work here.
    managed->forget_start();
    erase(key, managed.get());
    throw;
  }
  if (ec) {
    // A concurrent `stop` found it still `initial` and stopped it first; it removed the key.
    managed->forget_start();
    return nullptr;
  }
  return managed;
}

// ---- start / stop ----------------------------------------------------------------------------

template <class Key, Runnable R, class Hash, class KeyEqual>
requires std::copy_constructible<R> && std::copy_constructible<Key> std::optional<R>
Supervisor<Key, R, Hash, KeyEqual>::start(const Key& key, Cancel cancel, std::error_code& ec) {
  ec.clear();
  ManagedPtr managed;
  {
    std::shared_lock gate(gate_);
    if (!started_) {
      ec = errc::not_running;
      return std::nullopt;
    }
    if (!reserve(key)) {
      ec = errc::process_exists;
      return std::nullopt;
    }
    std::optional<R> runnable;
    try {
      runnable = table_->get(key);
    } catch (...) {
      unreserve(key);
      throw;
    }
    if (!runnable) {
      unreserve(key);
      ec = errc::not_in_table;
      return std::nullopt;
    }
    managed = launch_reserved(key, std::move(*runnable), Origin::user_start, nullptr, ec);
    if (!managed) {
      return std::nullopt;
    }
  }
  // Outside the gate: a slow startup must not hold up `run`'s shutdown, which stops it.
  if ((ec = managed->await_start(cancel))) {
    return std::nullopt;
  }
  return managed->runnable();
}

template <class Key, Runnable R, class Hash, class KeyEqual>
requires std::copy_constructible<R> && std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::stop(const Key& key, Cancel cancel, std::error_code& ec) {
  ec.clear();
  ManagedPtr managed = processes_.visit(
      key, [](const ManagedPtr* found) { return found != nullptr ? *found : nullptr; });
  if (!managed) {
    ec = errc::process_not_found;
    return;
  }
  if (managed->runs_on_this_thread()) {
    ec = std::make_error_code(std::errc::resource_deadlock_would_occur);
    return;
  }
  if (!managed->claim(Claim::user_stop)) {
    ec = errc::process_not_found;
    return;
  }
  stop_claimed(*managed, false);
  if ((ec = managed->await_done(cancel))) {
    return;
  }
  if (auto failure = managed->error()) {
    std::rethrow_exception(failure);
  }
}

template <class Key, Runnable R, class Hash, class KeyEqual>
requires std::copy_constructible<R> && std::copy_constructible<Key>
void Supervisor<Key, R, Hash, KeyEqual>::stop_all(bool forced) {
  std::vector<ManagedPtr> all;
  processes_.for_each([&](const Key&, const ManagedPtr& managed) {
    if (managed) {
      all.push_back(managed);
    }
  });
  // Ask everyone at once, then wait once: no thread per process to stop them.
  for (auto& managed : all) {
    if (managed->claim(Claim::shutdown)) {
      stop_claimed(*managed, forced);
    }
  }
}

}  // namespace supervisor
