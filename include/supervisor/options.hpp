#pragma once

/// \file
/// `Options`: the supervisor's clock, timings, error hook and tuning.

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>

#include "supervisor/clock.hpp"
#include "supervisor/detail/spin.hpp"
#include "supervisor/events.hpp"
#include "supervisor/executor.hpp"
#include "supervisor/report.hpp"
#include "supervisor/restart_policy.hpp"
#include "supervisor/shutdown_report.hpp"

namespace supervisor {

/// How a `Supervisor` waits and where its unclaimed errors go.
template <class Key>
struct Options {
  /// The clock for the initial wait and the restart interval, and of every time the supervisor
  /// tells (events, `snapshot`, the restart policy). A `ManualClock` makes tests deterministic.
  /// A process's start, readiness and stop are read with the clock's `coarse_now()` unless
  /// `on_event` is set (see `KeyStatus::since`).
  AnyClock clock{};
  /// How long `run` waits for the initial pass's starts before it calls the callback anyway.
  std::chrono::steady_clock::duration initial_wait = std::chrono::seconds(1);
  /// The wait between the end of one restart pass and the start of the next.
  std::chrono::steady_clock::duration restart_interval = std::chrono::minutes(1);
  /// Receives every error that no caller could receive (see `ErrorSource`). Called on the thread
  /// where the error happened (a process's thread, the restart loop, or `run`'s thread), possibly
  /// from several threads at once. An empty function silences them. An exception thrown by the
  /// hook is written to `std::clog` and dropped.
  std::function<void(const ErrorReport<Key>&)> on_error = log_to_clog<Key>;

  // ---- Operations: all off by default, which is the seed's behaviour ----

  /// Backoff, reset and give-up for keys whose process failed (see `RestartPolicy`).
  RestartPolicy restart{};
  /// The supervisor-wide failure limit that makes `run` fail with `errc::escalated`.
  Escalation escalation{};
  /// Called for every transition of every process (see `Event` for the ordering per key), on
  /// the thread where it happens, with no lock of the supervisor held, possibly from several
  /// threads at once. It may call any member of the supervisor, but must not wait for the
  /// process it is told about to return. An exception it throws is written to `std::clog` and
  /// dropped. Empty: no events, and no cost. Set, every time of a process is read precisely
  /// (`AnyClock::now()`, not `coarse_now()`), so that an event's times and durations are exact:
  /// four more precise readings per start+stop, 40 to 60 ns each on a virtual machine.
  std::function<void(const Event<Key>&)> on_event{};
  /// How long `run`'s shutdown waits, on the supervisor's clock, for processes to stop
  /// gracefully before it forces the rest. `duration::max()` (the default) waits for ever.
  std::chrono::steady_clock::duration shutdown_timeout = std::chrono::steady_clock::duration::max();
  /// Told, on `run`'s thread just before it returns, what its shutdown did: which processes had
  /// to be forced, and how long each took. An exception it throws is written to `std::clog`.
  std::function<void(const ShutdownReport<Key>&)> on_shutdown{};
  /// Pruning: each complete pass stops the process of every key whose row has left the table
  /// (and `reconcile(key)` does for that key). Off by default, as in the seed: a process runs
  /// until it exits or is stopped, whatever the table says.
  bool prune = false;
  /// Paced restore: at most this many background starts (from passes and `reconcile`) may be
  /// in flight (launched and not ready yet) at once; a pass waits for a slot. Zero: no limit.
  /// Calls to `start` are not paced: their caller waits for them anyway.
  std::size_t max_starts_in_flight = 0;

  /// Where coroutine processes (`CoroutineRunnable`) run. Empty (the default): on a
  /// `ThreadPool` of the supervisor's own, one thread per hardware thread, started by `run` and
  /// joined before it returns. A given executor must outlive every `run`. Unused for thread
  /// runnables.
  ExecutorRef executor{};

  // ---- Tuning: the defaults suit most services ----

  /// How long a thread busy-waits on a hand-off that usually completes within microseconds
  /// (`start` waiting for `ready`, `stop` waiting for `run` to return, a freshly ready process
  /// waiting for a stop, a parked thread waiting for work) before it sleeps. Saves a futex
  /// wake-up (tens of microseconds on a virtual machine) per hand-off. Zero never spins.
  /// Empty (the default) takes the default of the kind of runnable:
  /// - thread runnables: zero. Spinning pays off only together with `reuse_threads`, where the
  ///   other side of each hand-off is a thread already running; `bench/` measures both.
  /// - coroutine runnables: `detail::coroutine_handoff_spin` (20 µs). Their other side always
  ///   runs on a thread already running (the executor's), so a caller of `start`/`stop` from
  ///   outside the executor gains (bench, 1,000 processes on a 2-thread pool: a start+stop cycle
  ///   24 µs without, 8.4 µs with). A caller that is a coroutine on the executor never waits
  ///   this way (it awaits), so the spin costs it nothing.
  /// `Supervisor::handoff_spin()` tells the value in effect.
  std::optional<std::chrono::nanoseconds> handoff_spin = std::nullopt;
  /// Reuse the thread of a process that has returned for the next process to start, instead of
  /// creating a new thread. For services that start and stop processes at a high rate: with
  /// `handoff_spin = 20us` a start+stop cycle costs a few microseconds of hand-off instead of a
  /// thread creation. A parked thread exits after `thread_idle_timeout` without work, and `run`
  /// joins every thread before it returns either way.
  bool reuse_threads = false;
  std::chrono::nanoseconds thread_idle_timeout = std::chrono::seconds(1);
};

}  // namespace supervisor
