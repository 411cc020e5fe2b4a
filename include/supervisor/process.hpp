#pragma once

/// \file
/// `Process<R>`: the state machine around one runnable, usable on its own.

#include <chrono>
#include <exception>
#include <memory>
#include <stop_token>
#include <system_error>
#include <utility>

#include "supervisor/cancel.hpp"
#include "supervisor/detail/process_core.hpp"
#include "supervisor/detail/thread_group.hpp"
#include "supervisor/errors.hpp"
#include "supervisor/process_state.hpp"
#include "supervisor/runnable.hpp"

namespace supervisor {

/// Runs one runnable on a thread of its own, through the states
/// `initial -> starting -> running -> stopped` (or `initial -> stopped`). A process runs once:
/// a new start needs a new process.
///
/// Thread-safety: every member may be called from any thread concurrently, including from
/// inside the runnable, except the calls that wait for the runnable to return: `stop` detects
/// that the calling thread is part of the runnable (its own thread, a `leaf` body or `parallel`
/// child it runs, a process of a supervisor nested in it) and fails instead of waiting for
/// itself; an unbounded `wait()` there never returns. A thread the runnable made itself, outside
/// the library's adapters, cannot be told apart: from there, `stop` would wait for itself.
///
/// Happens-before: what the caller did before `start` is visible to the runnable; what the
/// runnable did before calling `ready` is visible once `start` returns; what it did before
/// returning is visible once `stop` or `wait` returns (or `done()` reads true).
///
/// Errors: the throwing overloads throw `std::system_error` with a `supervisor::errc` code for
/// the expected outcomes, and rethrow the runnable's own exception intact. The
/// `std::error_code&` overloads set `ec` for the expected outcomes instead; they still rethrow
/// the runnable's own exception, since that is your failure, not ours.
///
/// Lifetime: destroying a process whose runnable is still executing requests its force signal
/// and blocks until `run` has returned (as `std::jthread` does). Never destroy it from inside its
/// own runnable.
template <Runnable R>
class Process {
 public:
  /// A process in state `initial`. Its force signal will be chained to `parent`: when `parent`
  /// is requested, the runnable is forced.
  ///
  /// `handoff_spin` bounds how long `start`, `stop` and `ready` busy-wait for the other side of a
  /// hand-off before they sleep (see `Options::handoff_spin`); zero never spins.
  explicit Process(R runnable, std::stop_token parent = {},
                   std::chrono::nanoseconds handoff_spin = detail::default_handoff_spin)
      : core_(std::make_shared<detail::ProcessCore<R>>(std::move(runnable), std::move(parent),
                                                       handoff_spin)) {}

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  ~Process() {
    if (!core_->done()) {
      core_->request_force();
    }
    threads_.join_all();
  }

  /// Starts the runnable on a new thread and blocks until it calls `ready`.
  ///
  /// Outcomes: success once `ready` is called (state `running`); the runnable's exception,
  /// rethrown, or `errc::exited_before_ready`, if `run` returned first (state `stopped`);
  /// `errc::canceled` / `errc::deadline_exceeded` if `cancel` fired first: force is requested and
  /// the call still blocks until `run` has returned; `errc::invalid_state` unless `initial`.
  /// `std::system_error` from `std::thread` if no thread could be made.
  void start(Cancel cancel = {}) {
    std::error_code ec;
    start(std::move(cancel), ec);
    detail::throw_if(ec, "supervisor::Process::start");
  }
  void start(std::error_code& ec) { start(Cancel{}, ec); }
  void start(Cancel cancel, std::error_code& ec) {
    ec = core_->begin_start(
        [this](std::function<void()> body) { threads_.launch(std::move(body)); }, core_);
    if (!ec) {
      ec = core_->await_start(cancel);
    }
  }

  /// Stops the process and blocks until its `run` has returned.
  ///
  /// From `initial`: the process becomes `stopped` and done at once (a later start fails).
  /// From `starting`: requests force at once, aborting the startup. From `running`: requests the
  /// graceful stop, so `ready` returns. The state is `stopped` as soon as `stop` is called.
  ///
  /// Outcomes: success; the runnable's exception, rethrown, if it failed; `errc::canceled` /
  /// `errc::deadline_exceeded` if `cancel` fired first (force is requested, and the call still
  /// blocks until `run` has returned); `errc::invalid_state` if already `stopped`;
  /// `std::errc::resource_deadlock_would_occur`, with no effect, if called on the runnable's own
  /// thread, where waiting would never end.
  void stop(Cancel cancel = {}) {
    std::error_code ec;
    stop(std::move(cancel), ec);
    detail::throw_if(ec, "supervisor::Process::stop");
  }
  void stop(std::error_code& ec) { stop(Cancel{}, ec); }
  void stop(Cancel cancel, std::error_code& ec) {
    if (core_->runs_on_this_thread()) {
      ec = std::make_error_code(std::errc::resource_deadlock_would_occur);
      return;
    }
    ec = core_->request_stop();
    if (!ec) {
      ec = core_->await_done(cancel);
    }
    if (!ec) {
      if (auto failure = core_->error()) {
        std::rethrow_exception(failure);
      }
    }
  }

  /// The current state. Never blocks.
  [[nodiscard]] ProcessState state() const noexcept { return core_->state(); }

  /// Whether `run` has returned (or the process was stopped before it started). Never blocks.
  [[nodiscard]] bool done() const { return core_->done(); }

  /// Blocks until `done()`, or until `cancel` fires. Returns `done()`. Never forces.
  bool wait(const Cancel& cancel = {}) const { return core_->wait_done(cancel); }

  /// The runnable's exception once it is done, else null.
  [[nodiscard]] std::exception_ptr error() const { return core_->error(); }

  /// The runnable. Safe to use concurrently only as far as `R` itself is.
  [[nodiscard]] R& runnable() noexcept { return core_->runnable(); }
  [[nodiscard]] const R& runnable() const noexcept { return core_->runnable(); }

 private:
  std::shared_ptr<detail::ProcessCore<R>> core_;
  detail::ThreadGroup threads_;
};

}  // namespace supervisor
