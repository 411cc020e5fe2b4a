#pragma once

/// \file
/// `Options`: the supervisor's clock, timings, and error hook; `ErrorReport`, what the hook gets.

#include <chrono>
#include <concepts>
#include <exception>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

#include "supervisor/clock.hpp"
#include "supervisor/detail/spin.hpp"

namespace supervisor {

/// Where an error that no caller could receive came from.
enum class ErrorSource {
  /// `Table::iterate()` or a cursor's `next()` threw: the pass ended early.
  iterate,
  /// A cursor's `get()` threw: that row was skipped.
  row,
  /// A cursor's `close()` threw.
  close,
  /// A process that a pass started in the background failed to start (its exception, or
  /// `errc::exited_before_ready`, or `std::system_error` when no thread could be made).
  start,
  /// A running process returned with an exception on its own: it was removed and the next pass
  /// starts it again if its entry is still in the table.
  exit,
  /// A process threw while `run` was shutting it down. (This includes a process that a pass was
  /// still starting when `run` shut down, if it then failed in its initialisation.)
  shutdown,
  /// The injected clock threw while the restart loop waited on it: the loop has ended (no more
  /// passes until the next `run`); everything else goes on.
  clock,
};

constexpr std::string_view to_string(ErrorSource source) noexcept {
  switch (source) {
    case ErrorSource::iterate:
      return "table iteration";
    case ErrorSource::row:
      return "table row";
    case ErrorSource::close:
      return "table close";
    case ErrorSource::start:
      return "background start";
    case ErrorSource::exit:
      return "process exit";
    case ErrorSource::shutdown:
      return "process shutdown";
    case ErrorSource::clock:
      return "restart loop clock";
  }
  return "unknown";
}

/// One error handed to `Options::on_error`.
template <class Key>
struct ErrorReport {
  ErrorSource source;
  /// The process's key, or null where there is none (iterate, close; row when `get()` threw).
  const Key* key;
  /// The error itself, never null: the user's exception intact, or a `std::system_error`.
  std::exception_ptr error;
};

/// The error's message: `what()` of a `std::exception`, else a placeholder.
inline std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

namespace detail {
template <class K>
concept Printable = requires(std::ostream& out, const K& key) {
  out << key;
};
}  // namespace detail

/// The default hook: one line on `std::clog`, with the key when it can be printed.
template <class Key>
void log_to_clog(const ErrorReport<Key>& report) {
  std::ostringstream line;
  line << "supervisor: " << to_string(report.source) << " failed";
  if constexpr (detail::Printable<Key>) {
    if (report.key != nullptr) {
      line << " for key " << *report.key;
    }
  }
  line << ": " << describe(report.error) << '\n';
  std::clog << line.str() << std::flush;
}

/// How a `Supervisor` waits and where its unclaimed errors go.
template <class Key>
struct Options {
  /// The clock for the initial wait and the restart interval. A `ManualClock` makes tests
  /// deterministic.
  AnyClock clock;
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
