#pragma once

/// \file
/// A live view of a supervisor's keys: `KeyStatus`, `Snapshot`, from `Supervisor::snapshot()`.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string_view>
#include <vector>

namespace supervisor {

/// Where a key stands.
enum class KeyState : std::uint8_t {
  /// Its process was launched and has not called `ready` yet.
  starting,
  /// Its process is ready.
  running,
  /// Its process was asked to stop and has not returned yet.
  stopping,
  /// No process: it failed, and its backoff has not passed (`next_start`).
  backing_off,
  /// No process: it exited or failed on its own and may start at the next pass.
  waiting,
  /// No process, and no automatic start until its row changes, `start` or `reset`.
  given_up,
};

inline constexpr std::size_t key_state_count = 6;

constexpr std::string_view to_string(KeyState state) noexcept {
  switch (state) {
    case KeyState::starting:
      return "starting";
    case KeyState::running:
      return "running";
    case KeyState::stopping:
      return "stopping";
    case KeyState::backing_off:
      return "backing_off";
    case KeyState::waiting:
      return "waiting";
    case KeyState::given_up:
      return "given_up";
  }
  return "unknown";
}

/// One key in a `Snapshot`.
template <class Key>
struct KeyStatus {
  Key key;
  KeyState state;
  /// When the key entered `state`, on the supervisor's clock (`Options::clock`). For
  /// `starting`, `running` and `stopping` it is the clock's coarse reading (`coarse_now()`)
  /// unless `Options::on_event` is set: never after the moment, and with the default clock on
  /// Linux a few milliseconds before it at most. The other states' `since`, `next_start` and
  /// `taken_at` are precise, so times from different states may order out of true by that much.
  std::chrono::steady_clock::time_point since{};
  /// How many times a process for the key was started again after one had exited or failed.
  std::uint32_t restarts = 0;
  std::uint32_t consecutive_failures = 0;
  /// The error of its last failure, if any since it last ran healthy.
  std::exception_ptr last_error{};
  /// `backing_off`: the earliest time a pass may start it.
  std::optional<std::chrono::steady_clock::time_point> next_start{};
};

/// Every key the supervisor knows: those with a process, and those without one that it keeps a
/// history for (backing off, waiting, given up): a key has a history from its first exit on its
/// own (clean or failed) until it leaves the table or is `reset`. Keys without a process that
/// never exited on their own are not in it (the table has them). Times are on `Options::clock`.
///
/// `snapshot` (and `reset`) also work outside `run`; histories persist from one `run` to the
/// next of the same supervisor.
///
/// Each entry is read consistently (under that key's own lock); the whole is a walk taken
/// without stopping anything, so two entries may be a few microseconds apart.
template <class Key>
struct Snapshot {
  std::chrono::steady_clock::time_point taken_at;
  std::vector<KeyStatus<Key>> keys;
  /// `keys` counted by state, indexed by `KeyState`.
  std::array<std::size_t, key_state_count> counts{};

  [[nodiscard]] std::size_t count(KeyState state) const noexcept {
    return counts[static_cast<std::size_t>(state)];
  }
};

}  // namespace supervisor
