#pragma once

/// \file
/// What `run`'s shutdown had to do: `ShutdownReport`, given to `Options::on_shutdown`.

#include <chrono>
#include <cstddef>
#include <vector>

namespace supervisor {

/// The processes that did not stop gracefully within `Options::shutdown_timeout`.
template <class Key>
struct Straggler {
  Key key;
  /// From the start of the shutdown until its runnable returned; without an event hook its
  /// return is read coarsely (`KeyStatus::since`), so at worst until the forcing began.
  std::chrono::steady_clock::duration took{};
};

/// Given to `Options::on_shutdown` on `run`'s thread once every process has returned and every
/// thread is joined, just before `run` returns.
template <class Key>
struct ShutdownReport {
  /// From the start of the shutdown until every process had returned.
  std::chrono::steady_clock::duration took{};
  /// How many processes the shutdown stopped.
  std::size_t stopped = 0;
  /// The processes that had to be forced, in the order they were forced.
  std::vector<Straggler<Key>> forced;
  /// Set when memory ran out while listing `forced`: the list is incomplete (the count in
  /// `forced_count` is not).
  bool incomplete = false;
  std::size_t forced_count = 0;
};

}  // namespace supervisor
