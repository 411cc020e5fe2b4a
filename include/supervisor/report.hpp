#pragma once

/// \file
/// What becomes of an error that no caller can receive: `ErrorSource` (where it happened),
/// `ErrorReport` (what `Options::on_error` is given), and the default hook, `log_to_clog`.

#include <exception>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>

namespace supervisor {

/// Where an error that no caller could receive came from.
enum class ErrorSource {
  /// `Table::iterate()` or a cursor's `next()` threw: the pass ended early.
  iterate,
  /// A cursor's `get()` threw: that row was skipped.
  row,
  /// A cursor's `close()` threw.
  close,
  /// A process that a pass (or `reconcile(key)`) started in the background failed to start (its
  /// exception, one from moving its runnable into its record, `errc::exited_before_ready`, or
  /// `std::system_error` when no thread could be made; the pass goes on with the next row); or
  /// a runnable that failed while a `start` whose caller was told `canceled` waited for it. A
  /// key that already runs is not started, so its runnable is never moved. A failure before the
  /// process exists (a copy of its key, a move of its runnable) is not recorded for the restart
  /// policy: the next pass tries again, without backoff, as for a row that cannot be read.
  start,
  /// A running process returned with an exception on its own: it was removed and the next pass
  /// starts it again if its entry is still in the table. Also a runnable that failed while a
  /// `stop` whose caller was told `canceled` waited for it, or while a `start` whose returned
  /// copy failed forced it down.
  exit,
  /// A process threw while `run` was shutting it down. (This includes a process that a pass was
  /// still starting when `run` shut down, if it then failed in its initialisation.)
  shutdown,
  /// The injected clock threw while the restart loop waited on it: the loop has ended (no more
  /// passes until the next `run`); everything else goes on. Also: out of memory, the loop could
  /// not arm an early wake-up (`reconcile`, a backoff ending): that one wait lasts its interval.
  clock,
  /// A key was given up (`RestartPolicy::give_up_after`, or its runnable said
  /// `errc::do_not_restart`): no automatic starts until its row changes, `start` or `reset`.
  /// The error is its last failure. Reported once per give-up.
  given_up,
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
    case ErrorSource::given_up:
      return "restart policy (key given up)";
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

}  // namespace supervisor
