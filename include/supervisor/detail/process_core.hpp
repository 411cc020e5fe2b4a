#pragma once

/// \file
/// `ProcessCore`: the state machine that `Process` and `Supervisor` share (initial, starting,
/// running, stopped), independent of where its runnable executes.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>

#include "supervisor/async_ready.hpp"
#include "supervisor/cancel.hpp"
#include "supervisor/detail/force_signal.hpp"
#include "supervisor/detail/frame_room.hpp"
#include "supervisor/detail/parking_lot.hpp"
#include "supervisor/detail/ready_waiter.hpp"
#include "supervisor/detail/spin.hpp"
#include "supervisor/detail/word_lock.hpp"
#include "supervisor/detail/work_context.hpp"
#include "supervisor/errors.hpp"
#include "supervisor/executor.hpp"
#include "supervisor/process_state.hpp"
#include "supervisor/runnable.hpp"

namespace supervisor::detail {

/// Starts a thread of execution for a process: the single launch point. It must run `body`
/// exactly once, on a thread other than the caller's, or throw (and never run it).
using Launch = std::function<void(std::function<void()> body)>;

/// How a process's force follows its parent token (see `ProcessCore`).
enum class ParentLink : unsigned char { per_process, by_owner };

/// What a `per_process` record needs to keep itself alive while its parent forces it; a
/// `by_owner` record does without (its owner's walk holds a reference): a weak count would cost
/// each record two more locked instructions, and its last release two more again.
template <class Core, ParentLink Link>
struct SelfReference : std::enable_shared_from_this<Core> {};
template <class Core>
struct SelfReference<Core, ParentLink::by_owner> {};

/// The state machine of one process, independent of where its runnable executes.
///
/// Held by `std::shared_ptr`: the thread that executes the runnable keeps it alive. Subclasses
/// hook into two moments, both on the runnable's thread with no lock held, neither of which may
/// throw (it would escape the thread): `on_ready` (once, at the first `ready`) and `on_exit`
/// (once, after `run` returned, with the state `stopped` and `error()` set, but before `done` is
/// visible, so that whoever waits for `done` sees the hook's effects).
///
/// A coroutine runnable (`CoroutineRunnable`) has no thread: `begin_start(ExecutorRef)` makes its
/// task and schedules it, and the task's own hooks stand for the thread's body: `on_start` when
/// it is first resumed, the exit path (`on_exit`, then `done`) when it has finished, both on the
/// executor's thread that resumed it. `co_await ready` suspends it until a stop, force or its
/// early token wakes it (`wake_ready`), which schedules it again. A caller on the executor's
/// thread may resume it itself instead, at its start and its stop (`run_here`).
///
/// The runnable may be given at construction or later, with `set_runnable`, while the process is
/// still `initial`: a supervisor registers a key's record before it asks the table for the
/// runnable. Readers that check `state()` first (acquire) see it once the state has left
/// `initial`.
///
/// Force follows the parent token. `ParentLink::per_process`: from `starting` on, through a
/// `std::stop_callback` of its own. `by_owner`: none, and no copy of the parent token, executor
/// or hand-off spin (96 bytes and two locked steps on the parent's shared state fewer per
/// process); the owner forces every record it holds, in any state, when the parent is requested,
/// one it made visible reads the owner's flag in `enter_starting`, and the executor and spin are
/// the owner's (`owner_forces_all`, `owner_executor`, `owner_handoff_spin`, overridden).
template <class R, ParentLink Link = ParentLink::per_process>
requires AnyKindRunnable<R>
class ProcessCore : public AsyncReadyTarget,  // and so a `ReadyTarget`
                    public SelfReference<ProcessCore<R, Link>, Link> {
 public:
  static constexpr bool is_coroutine = CoroutineRunnable<R>;

  /// `spin` bounds the busy-wait before each blocking hand-off (see `spin_until`); zero never
  /// spins.
  ProcessCore(R runnable, std::stop_token parent,
              std::chrono::nanoseconds spin = default_handoff_spin,
              const WorkContext* outer = nullptr)
      : runnable_(std::move(runnable)),
        parent_(std::move(parent)),
        spin_(spin),
        work_{this, outer} {}

  /// A process whose runnable comes later (`set_runnable`). `outer` is the work this process is
  /// part of (its supervisor's `run`), for the detection of calls that would wait for themselves.
  ProcessCore(std::stop_token parent, std::chrono::nanoseconds spin, const WorkContext* outer)
      : parent_(std::move(parent)), spin_(spin), work_{this, outer} {}

  ProcessCore(const ProcessCore&) = delete;
  ProcessCore& operator=(const ProcessCore&) = delete;
  virtual ~ProcessCore() = default;

  /// Room for the task's frame in this record's block (frame_room.hpp), before anyone else sees
  /// the record. Two 16-bit numbers (a pointer costs 16 bytes): a room beyond them is not used.
  void give_frame_room(FrameRoom room) noexcept {
    const auto offset = reinterpret_cast<std::uintptr_t>(room.at) -
                        reinterpret_cast<std::uintptr_t>(static_cast<void*>(this));
    if (offset <= 0xffff && room.bytes <= 0xffff) {
      frame_room_offset_ = static_cast<std::uint16_t>(offset);
      frame_room_bytes_ = static_cast<std::uint16_t>(room.bytes);
    }
  }

  /// The room `give_frame_room` kept (none if it was out of reach): the record's allocator
  /// tags it when the record is destroyed (frame_room.hpp).
  [[nodiscard]] FrameRoom given_frame_room() noexcept { return frame_room(); }

  /// Gives the process its runnable (moved in: no assignment). Precondition: `initial`, and no
  /// runnable yet.
  void set_runnable(R&& runnable) { runnable_.emplace(std::move(runnable)); }

  /// `initial -> starting`, then hands the runnable to `launch`. `errc::invalid_state` from any
  /// other state. If `launch` throws, the process becomes `stopped` and done, and the exception
  /// propagates. `self` owns `*this`: the thread keeps it until the runnable has returned.
  std::error_code begin_start(const Launch& launch,
                              std::shared_ptr<ProcessCore> self) requires Runnable<R> {
    if (!enter_starting()) {
      return errc::invalid_state;
    }
    try {
      launch([self = std::move(self)] { self->execute(); });
      launched_.store(true, std::memory_order_release);
    } catch (...) {
      fail_launch();
      throw;
    }
    return {};
  }

  /// The coroutine kind: `initial -> starting`, calls `run` on the calling thread (which makes
  /// the task's frame and runs none of its body), and schedules the task on `executor`. If
  /// either throws, the frame is destroyed, the process becomes `stopped` and done, and the
  /// exception propagates. The frame may go into the record's room; should another task that
  /// `run` made and kept be there instead, the record is never freed (frame_room.hpp). `self`
  /// owns `*this`: the task keeps it until it has finished. With `run_here`, on a thread of
  /// `executor`, the task goes there instead of to the executor: the caller resumes it next.
  std::error_code begin_start(ExecutorRef executor, std::shared_ptr<ProcessCore> self,
                              std::coroutine_handle<>* run_here = {}) requires CoroutineRunnable<R>;

  /// Blocks until the runnable called `ready` (success), or `run` returned first (its exception
  /// is rethrown, else `errc::exited_before_ready`), or `cancel` fired (force is requested, the
  /// call waits until `run` has returned, then `errc::canceled` / `errc::deadline_exceeded`).
  std::error_code await_start(const Cancel& cancel);

  /// Once ready or done: success if it became ready, else the runnable's exception rethrown,
  /// else `errc::exited_before_ready`.
  std::error_code start_outcome() const {
    if (ready_.load()) {
      return {};  // for good, and a process that is done without it never becomes ready
    }
    std::lock_guard lock(mutex_);
    if (error_) {
      std::rethrow_exception(error_);
    }
    return errc::exited_before_ready;
  }

  /// For callers that are coroutines (the coroutine kind's `async_start`, `async_stop`):
  /// `co_await until_started(cancel)` suspends the caller until the process is ready or done,
  /// `until_done` until it is done, or either until `cancel` is requested. The caller is resumed
  /// on the process's executor (or goes on at once if the condition already holds); the
  /// `co_await` gives whether the condition holds (false: canceled first). Never forces.
  enum class Until : unsigned char { begun, started, done };  // what a `CallerWait` waits for
  class CallerWait;
  CallerWait until_started(std::stop_token cancel) noexcept requires CoroutineRunnable<R>;
  CallerWait until_done(std::stop_token cancel) noexcept requires CoroutineRunnable<R>;
  /// Until the task has begun on the executor (its first events delivered), or is done.
  CallerWait until_begun() noexcept requires CoroutineRunnable<R>;

  /// Requests the stop that fits the state, without waiting: from `initial` the process is done at
  /// once; from `starting` force is requested; from `running` the graceful stop (so `ready`
  /// returns). The state is `stopped` from here on. `errc::invalid_state` if already `stopped`.
  /// `*was_initial`, when given, tells whether it was stopped before it ever started (then no
  /// thread runs, and `on_exit` is never called). `run_here`, on a thread of the executor, gets a
  /// coroutine parked on `co_await ready` instead of the executor: the caller resumes it next.
  std::error_code request_stop(bool forced = false, bool* was_initial = nullptr,
                               std::coroutine_handle<>* run_here = nullptr);

  /// Blocks until `run` has returned. If `cancel` fires first, requests force, still waits until
  /// `run` has returned, and returns `errc::canceled` / `errc::deadline_exceeded`.
  std::error_code await_done(const Cancel& cancel);

  /// Waits for `run` to return, or for `cancel`; never forces. Returns whether it returned.
  bool wait_done(const Cancel& cancel);

  void request_force() noexcept { force_now(); }

  [[nodiscard]] ProcessState state() const noexcept {
    return state_view_.load(std::memory_order_acquire);
  }

  [[nodiscard]] bool done() const noexcept { return done_.load(); }
  /// How many threads wait on this record's signal now (the coroutine kind). For tests.
  [[nodiscard]] std::uint32_t waiters() const noexcept requires is_coroutine {
    return changed_.waiters();
  }

  /// Whether `begin_start` handed the runnable to a thread (so it has run, or runs); true before
  /// the runnable's first instruction, even while `launch` has not returned yet. A record
  /// stopped before that, or whose launch failed, never ran: lookups treat it as absent.
  /// Acquire: once true, the runnable may be read.
  [[nodiscard]] bool launched() const noexcept { return launched_.load(std::memory_order_acquire); }

  [[nodiscard]] std::exception_ptr error() const {
    if (done_.load()) {
      return error_;  // written before `done_`, never after: no lock, so no wait for the exit
    }
    std::lock_guard lock(mutex_);
    return error_;
  }

  /// Whether the calling thread executes this process's `run`, or works for it: a thread that
  /// the runnable started through the library (a `leaf` body), or a process of a supervisor
  /// nested in it. Waiting there for `run` to return would wait for itself.
  [[nodiscard]] bool runs_on_this_thread() const noexcept { return works_for(this); }

  /// Whether `owner`, a task's `TaskPromiseBase::owner()`, works for this process.
  [[nodiscard]] bool is_task_owner(const WorkContext* owner) const noexcept {
    return chain_works_for(owner, this);
  }

  /// Precondition: it has its runnable (given at construction, or the state has left `initial`).
  [[nodiscard]] R& runnable() noexcept { return *runnable_; }
  [[nodiscard]] const R& runnable() const noexcept { return *runnable_; }

 protected:
  virtual void on_start() noexcept {}  // on its thread, before lookups see it and `run` begins
  virtual void on_ready() noexcept {}
  virtual void before_ready() noexcept {}  // on its thread, at each `ready`, before it is seen
  /// `failure` is the runnable's exception, or null.
  virtual void on_exit(bool /*became_ready*/, const std::exception_ptr& /*failure*/) noexcept {}
  /// The coroutine kind: called after the process's last touch of its record (which may be
  /// gone by then), on the executor's thread. Null: nothing to call.
  struct SettleHook {
    void (*call)(void* context) noexcept = nullptr;
    void* context = nullptr;
  };
  [[nodiscard]] virtual SettleHook settle_hook() const noexcept { return {}; }
  /// `by_owner`, which every such subclass overrides (the defaults serve no one): the executor
  /// the owner gave `begin_start`, the same for all its records while any is unsettled, so that
  /// no record keeps a copy; the owner's hand-off spin, fixed for its life; and whether the
  /// owner's walk forcing all has begun, read once the walk can see the record, sequentially
  /// consistent.
  [[nodiscard]] virtual ExecutorRef owner_executor() const noexcept { return {}; }
  [[nodiscard]] virtual std::chrono::nanoseconds owner_handoff_spin() const noexcept { return {}; }
  [[nodiscard]] virtual bool owner_forces_all() const noexcept { return false; }

 private:
  struct RequestForce {
    ProcessCore* core;
    void operator()() const noexcept {
      // No caller holds the record here. A wake-up whose `schedule` fails is resumed on this
      // thread (`ExecutorRef::schedule`): the task may end, and drop the record's last
      // reference, before the request returns.
      const std::shared_ptr<ProcessCore> keep = core->weak_from_this().lock();
      core->force_now();
    }
  };

  /// Requests force. The coroutine kind also wakes its coroutine if it is parked on `ready`
  /// (what it awaits may be tied to force too; that is the user's own callback). Every request
  /// of force goes through here, so no callback per process is needed for the wake-up.
  void force_now() noexcept {
    force_.request_stop();
    if constexpr (is_coroutine) {
      wake_ready();
    }
  }

  void set_state(ProcessState next) {
    state_ = next;
    state_view_.store(next, std::memory_order_release);
  }

  void wait_done_forever();
  /// The body of the runnable's thread.
  void execute() noexcept {
    on_start();  // first: nothing else can be told about this process before it
    // Before any user code: a lookup from anyone the runnable signals must already find the
    // process, even if the launching thread has not yet returned from `launch`.
    launched_.store(true, std::memory_order_release);
    // Also around `on_exit`: it reports errors to user hooks, which must not wait for this thread.
    const WorkScope working(&work_);
    std::exception_ptr failure;
    try {
      Ready ready(*this);
      invoke_run(*runnable_, force_.get_token(), ready);
    } catch (...) {
      failure = std::current_exception();
    }
    finish_run(failure);
  }

  /// `initial -> starting`; false from any other state. Ties force to the parent.
  bool enter_starting();

  /// A launch that failed: `stopped` and done, with the launch's exception as the error.
  void fail_launch() noexcept;

  /// The exit path, once `run` has returned (or its task finished): `stopped`, force released,
  /// `on_exit`, then `done`. With `hand_over`, one woken caller goes there instead of to the
  /// executor.
  void finish_run(const std::exception_ptr& failure,
                  std::coroutine_handle<>* hand_over = nullptr) noexcept;

  std::stop_token stopping() override;
  std::stop_token forcing() override { return force_.get_token(); }

  /// Marks the process ready: `running`, a waiting `start` woken, `on_ready` the first time.
  /// With `hand_over`, one woken caller goes there instead of to the executor.
  void mark_ready(std::coroutine_handle<>* hand_over = nullptr);

  void signal_ready_and_wait(const std::stop_token& early) override;

  // ---- The coroutine kind --------------------------------------------------------------------
  bool released(const std::stop_token& early) const noexcept {
    return graceful_.load() || force_.stop_requested() || early.stop_requested();
  }
  bool signal_ready(const std::stop_token& early, std::coroutine_handle<>* hand_over) override {
    // Only to a thread of the executor: a coroutine that moved elsewhere (to an I/O context)
    // must not take its callers with it.
    mark_ready(hand_over != nullptr && executor().running_in_this_thread() ? hand_over : nullptr);
    return released(early);
  }
  void arm_ready_wait() noexcept override { ready_waiter_.arm(); }
  bool park_ready(std::coroutine_handle<> awaiting, const std::stop_token& early) override {
    return !released(early) && ready_waiter_.park(awaiting);
  }
  void wake_ready() noexcept override {
    ready_waiter_.wake([this]() noexcept { return executor(); });
  }
  [[nodiscard]] ExecutorRef executor() const noexcept override {
    if constexpr (Link == ParentLink::per_process) {
      return executor_;
    } else {
      return owner_executor();
    }
  }

  // Callers parked in a `CallerWait`, linked through their awaiters, under `mutex_`.
  struct CallerNode {
    CallerNode* next = nullptr;
    std::coroutine_handle<> handle;
    Until until = Until::done;
  };
  bool caller_satisfied(Until until) const noexcept {
    return done_.load() || (until == Until::started && ready_.load()) ||
           (until == Until::begun && begun_.load());
  }
  /// Under `mutex_`: unlinks the callers whose condition holds now that `reached` has (`done`:
  /// all of them), to be resumed once it is released.
  CallerNode* take_callers(Until reached) noexcept;
  void resume_callers(CallerNode* woken) noexcept;

  FrameRoom frame_room() noexcept;
  void keep_if_room_kept(const FrameOffer& offer, const void* task) noexcept;
  static void task_begins(void* context) noexcept;
  static std::coroutine_handle<> task_ends(void* context) noexcept;
  std::coroutine_handle<> finish_task() noexcept;

  typename TaskHandleOf<R>::type task_;
  std::shared_ptr<ProcessCore> self_;
  ReadyWaiter ready_waiter_;
  struct NoExecutor {};  // `by_owner`: `owner_executor`
  [[no_unique_address]] std::conditional_t<Link == ParentLink::per_process, ExecutorRef, NoExecutor>
      executor_;
  AsyncReady async_ready_{*this};

  // `runnable_` and `state_view_` side by side: `Supervisor::get` reads both. The small fields
  // after them fill what would be padding before the next 8-byte member; the rest close the
  // class, whose tail padding a derived record's narrow fields then fill.
  std::optional<R> runnable_;
  std::atomic<ProcessState> state_view_{ProcessState::initial};
  std::atomic<bool> begun_{false};
  std::atomic<bool> begun_waited_{false};  // a caller waits (or waited) for `begun_`
  std::atomic<bool> launched_{false};
  bool keep_forever_ = false;     // another frame than the task's lives in the record's room
  bool cancels_at_done_ = false;  // `finish_run` saw a cancel in flight (its own thread reads it)

  struct NoParent {  // `by_owner`: the owner holds the parent
    explicit NoParent(const std::stop_token& /*parent*/) noexcept {}
  };
  [[no_unique_address]] std::conditional_t<Link == ParentLink::per_process, std::stop_token,
                                           NoParent>
      parent_;
  struct NoSpin {  // `by_owner`: `owner_handoff_spin`
    explicit NoSpin(std::chrono::nanoseconds /*spin*/) noexcept {}
  };
  [[no_unique_address]] std::conditional_t<Link == ParentLink::per_process,
                                           std::chrono::nanoseconds, NoSpin>
      spin_;
  /// The busy-wait's bound before a blocking hand-off (see `spin_until`).
  [[nodiscard]] std::chrono::nanoseconds handoff_spin() const noexcept {
    if constexpr (Link == ParentLink::per_process) {
      return spin_;
    } else {
      return owner_handoff_spin();
    }
  }
  ForceSignal<is_coroutine && ReadyOnlyRun<R>> force_;  // lazy for a `run(ready)` without force
  struct NoParentLink {
    void reset() noexcept {}
  };
  [[no_unique_address]] std::conditional_t<Link == ParentLink::per_process,
                                           std::optional<std::stop_callback<RequestForce>>,
                                           NoParentLink>
      parent_link_;
  void unlink_parent() noexcept { parent_link_.reset(); }
  // `Ready::stop_token`: made on first request (most never ask), requested by a stop or force.
  struct Stopping {
    std::stop_source source;
    std::optional<std::stop_callback<RequestStopOf>> on_force;
  };
  std::unique_ptr<Stopping> stopping_;

  // Coroutine processes are many, rarely waited on by a thread: a lock word and a parking lot.
  mutable std::conditional_t<is_coroutine, WordLock, std::mutex> mutex_;
  std::conditional_t<is_coroutine, ParkedSignal, std::condition_variable> changed_;
  std::exception_ptr error_;
  CallerNode* callers_ = nullptr;
  WorkContext work_;
  // Callers a cancel unlinked and schedules outside the lock: the task's end waits for them.
  std::atomic<unsigned> cancels_in_flight_{0};
  std::uint16_t frame_room_offset_ = 0;  // where `give_frame_room` put the room, from `this`
  std::uint16_t frame_room_bytes_ = 0;   // 0: none
  ProcessState state_ = ProcessState::initial;
  // Written under `mutex_` (`ready_`, `done_` released: waiters test them there, ParkedSignal;
  // `graceful_` sequentially consistent: `co_await ready` does not), read unlocked too.
  std::atomic<bool> ready_{false};
  std::atomic<bool> graceful_{false};
  std::atomic<bool> done_{false};
};

}  // namespace supervisor::detail

#include "supervisor/detail/process_core_coroutine.hpp"
#include "supervisor/detail/process_core_waits.hpp"
