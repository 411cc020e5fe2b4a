#pragma once

/// \file
/// The states of a process: `initial -> starting -> running -> stopped`, and
/// `initial -> stopped`. `stopped` is final; a stopped process is never restarted.

#include <cstdint>
#include <string_view>

namespace supervisor {

enum class ProcessState : std::uint8_t {
  /// Created, not yet started. `start` moves it to `starting`; `stop` moves it to `stopped`.
  initial,
  /// `start` was called; the runnable is initialising and has not called `ready` yet.
  starting,
  /// The runnable called `ready`; it runs until it is stopped or returns.
  running,
  /// `stop` was called or the runnable returned. Final.
  stopped,
};

/// The state's name, for logs.
constexpr std::string_view to_string(ProcessState state) noexcept {
  switch (state) {
    case ProcessState::initial:
      return "initial";
    case ProcessState::starting:
      return "starting";
    case ProcessState::running:
      return "running";
    case ProcessState::stopped:
      return "stopped";
  }
  return "unknown";
}

}  // namespace supervisor
