#pragma once

/// \file
/// `Options`: the supervisor's clock, timings, error hook and tuning.

#include <chrono>
#include <functional>

#include "supervisor/clock.hpp"
#include "supervisor/detail/spin.hpp"
#include "supervisor/report.hpp"

namespace supervisor {

/// How a `Supervisor` waits and where its unclaimed errors go.
template <class Key>
struct Options {
  /// The clock for the initial wait and the restart interval. A `ManualClock` makes tests
  /// deterministic.
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

  // ---- Tuning: the defaults suit most services ----

  /// How long a thread busy-waits on a hand-off that usually completes within microseconds
  /// (`start` waiting for `ready`, `stop` waiting for `run` to return, a freshly ready process
  /// waiting for a stop, a parked thread waiting for work) before it sleeps. Saves a futex
  /// wake-up (tens of microseconds on a virtual machine) per hand-off. Zero (the default) never
  /// spins: spinning pays off only together with `reuse_threads`, where the other side of each
  /// hand-off is a thread already running; `bench/` measures both.
  std::chrono::nanoseconds handoff_spin = detail::default_handoff_spin;
  /// Reuse the thread of a process that has returned for the next process to start, instead of
  /// creating a new thread. For services that start and stop processes at a high rate: with
  /// `handoff_spin = 20us` a start+stop cycle costs a few microseconds of hand-off instead of a
  /// thread creation. A parked thread exits after `thread_idle_timeout` without work, and `run`
  /// joins every thread before it returns either way.
  bool reuse_threads = false;
  std::chrono::nanoseconds thread_idle_timeout = std::chrono::seconds(1);
};

}  // namespace supervisor
