#pragma once

/// \file
/// The supervisor's own error codes: the expected outcomes of its operations.
///
/// Failures that come from user code (a runnable, a table, a callback) are never turned into
/// codes: the user's own exception is kept as `std::exception_ptr` and rethrown intact.

#include <string>
#include <system_error>
#include <type_traits>

namespace supervisor {

/// Expected outcomes of supervisor and process operations.
///
/// Values start at 1 so that a default `std::error_code` always means success.
enum class errc {
  /// The supervisor is not running: `start` was called before `run`, or after `run` began to
  /// shut down.
  not_running = 1,
  /// No process is managed under the key (absent, only reserved by a start in flight, or already
  /// being stopped by someone else).
  process_not_found,
  /// A process exists under the key but is not in the `running` state (still starting, or
  /// stopped).
  process_not_running,
  /// A process already exists under the key (running, starting, or reserved by a start in flight).
  process_exists,
  /// The operation is not allowed in the process's current state (start twice, stop twice).
  invalid_state,
  /// The runnable returned without calling `ready` and without throwing.
  exited_before_ready,
  /// The caller's `std::stop_token` was requested before the operation completed.
  canceled,
  /// The caller's deadline passed before the operation completed.
  deadline_exceeded,
  /// The table has no entry for the key (`Table::get` returned no value).
  not_in_table,
  /// Returned (or thrown as `std::system_error`) by a runnable: do not start this key again
  /// automatically. The key is given up until its row changes, an explicit `start`, or `reset`.
  do_not_restart,
  /// Returned (or thrown) by a runnable: stop the whole supervisor. `run` shuts down and fails
  /// with `errc::escalated`.
  escalate,
  /// `run` stopped everything because a process asked it to (`errc::escalate`) or too many
  /// failures happened too fast (`Options::escalation`).
  escalated,
};

namespace detail {

class ErrorCategory final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "supervisor"; }

  [[nodiscard]] std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::not_running:
        return "supervisor is not running";
      case errc::process_not_found:
        return "process not found";
      case errc::process_not_running:
        return "process is not running";
      case errc::process_exists:
        return "process already exists";
      case errc::invalid_state:
        return "invalid process state for this operation";
      case errc::exited_before_ready:
        return "process exited before it became ready";
      case errc::canceled:
        return "operation canceled";
      case errc::deadline_exceeded:
        return "deadline exceeded";
      case errc::not_in_table:
        return "key not found in table";
      case errc::do_not_restart:
        return "process asked not to be restarted";
      case errc::escalate:
        return "process asked to stop the supervisor";
      case errc::escalated:
        return "supervisor escalated: too many failures, or a process asked to stop it";
    }
    return "unknown supervisor error";
  }
};

}  // namespace detail

/// The category of `supervisor::errc`. One instance across all translation units.
inline const std::error_category& error_category() noexcept {
  static const detail::ErrorCategory category;
  return category;
}

/// Makes an error code of `supervisor::error_category()`; found by argument-dependent lookup.
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace supervisor

template <>
struct std::is_error_code_enum<supervisor::errc> : std::true_type {};

namespace supervisor::detail {

/// Throws `std::system_error` for a non-zero code; the throwing overloads funnel through here.
inline void throw_if(const std::error_code& ec, const char* what) {
  if (ec) {
    throw std::system_error(ec, what);
  }
}

}  // namespace supervisor::detail
