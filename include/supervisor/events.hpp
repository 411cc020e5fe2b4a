#pragma once

/// \file
/// What happens to a supervisor's processes, as it happens: `EventKind`, `Event`, given to
/// `Options::on_event`.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string_view>

namespace supervisor {

/// One transition of a key's process.
enum class EventKind : std::uint8_t {
  /// A process for the key was launched (by `start`, a pass, or `reconcile`).
  starting,
  /// It called `ready`. `elapsed`: since `starting` (time to ready).
  ready,
  /// It returned on its own without an error after `ready`. `elapsed`: since `ready`.
  exited,
  /// It failed on its own: exited with an error, failed to start, or returned before `ready`.
  /// `error` says why (for a return before `ready` without an error, `errc::exited_before_ready`).
  failed,
  /// After `failed` (or `exited`): the key may be started again `delay` from now (zero without
  /// backoff). `consecutive_failures` counts this failure.
  restart_scheduled,
  /// After `failed`: the key is given up (the policy's limit, or `errc::do_not_restart`).
  given_up,
  /// Someone asked the process to stop: `stop`, `run`'s shutdown, or pruning.
  stop_requested,
  /// The process was forced: its stop's deadline, or `run`'s shutdown deadline, passed.
  /// `elapsed`: since its stop was requested.
  forced,
  /// A process that someone stopped has returned. `elapsed`: since its stop was requested.
  /// `error`: its exception, if it threw.
  stopped,
  /// The supervisor escalated: `run` stops everything and fails with `errc::escalated`. `error`
  /// is the failure that tipped it.
  escalated,
};

/// How many kinds there are: for arrays indexed by `EventKind`.
inline constexpr std::size_t event_kind_count = 10;

constexpr std::string_view to_string(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::starting:
      return "starting";
    case EventKind::ready:
      return "ready";
    case EventKind::exited:
      return "exited";
    case EventKind::failed:
      return "failed";
    case EventKind::restart_scheduled:
      return "restart_scheduled";
    case EventKind::given_up:
      return "given_up";
    case EventKind::stop_requested:
      return "stop_requested";
    case EventKind::forced:
      return "forced";
    case EventKind::stopped:
      return "stopped";
    case EventKind::escalated:
      return "escalated";
  }
  return "unknown";
}

/// One event, valid for the duration of the hook call (copy what you keep).
///
/// Ordering per key: a process's `starting` comes before its other events, and its last event
/// (`exited`, `failed` with what follows it, or `stopped`) comes after all of them, with the
/// hook call that delivers it returned, and before the key's next `starting`. `ready` and a
/// `stop_requested` from another thread may come in either order.
template <class Key>
struct Event {
  EventKind kind;
  /// The process's key.
  const Key& key;
  /// When, on the supervisor's clock (`Options::clock`: with a `ManualClock`, its time).
  std::chrono::steady_clock::time_point at;
  /// See `EventKind`: time to ready, time running, or time since the stop was requested.
  std::chrono::steady_clock::duration elapsed{};
  /// `restart_scheduled`: the backoff before the key may start again.
  std::chrono::steady_clock::duration delay{};
  /// The key's consecutive failures, this one included (`failed`, `restart_scheduled`,
  /// `given_up`).
  std::uint32_t consecutive_failures = 0;
  /// `failed`, `given_up`, `escalated`, and `stopped` when the process threw.
  std::exception_ptr error{};
};

}  // namespace supervisor
