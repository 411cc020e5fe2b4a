#pragma once

/// \file
/// `MpmcRing`: a bounded queue of pointers that any number of threads push to and pop from
/// without a lock, for `ThreadPool`'s shared queue. A sequence number per cell (Vyukov's design)
/// tells a pusher whether the cell is free for its turn and a popper whether it is filled.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace supervisor::detail {

class MpmcRing {
 public:
  /// `capacity` is rounded up to a power of two (at least 2).
  explicit MpmcRing(std::size_t capacity)
      : mask_(round_up(capacity) - 1), cells_(new Cell[mask_ + 1]) {
    for (std::size_t i = 0; i <= mask_; ++i) {
      cells_[i].sequence.store(i, std::memory_order_relaxed);
    }
  }
  MpmcRing(const MpmcRing&) = delete;
  MpmcRing& operator=(const MpmcRing&) = delete;
  ~MpmcRing() = default;

  /// Appends `value`; false (and nothing changed) if the ring is full. Never blocks. A pop that
  /// takes `value` happens after this push.
  bool try_push(void* value) noexcept {
    std::size_t position = push_at_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[position & mask_];
      const std::size_t sequence = cell.sequence.load(std::memory_order_acquire);
      // Unsigned difference, then signed: defined when the positions wrap around.
      const auto lag = static_cast<std::intptr_t>(sequence - position);
      if (lag == 0) {
        // The cell waits for this turn: claim the turn, then fill the cell.
        if (push_at_.compare_exchange_weak(position, position + 1, std::memory_order_relaxed)) {
          cell.value = value;
          cell.sequence.store(position + 1, std::memory_order_release);
          return true;
        }
      } else if (lag < 0) {
        return false;  // the cell still holds the value of the previous lap: full
      } else {
        position = push_at_.load(std::memory_order_relaxed);  // another pusher took this turn
      }
    }
  }

  /// Takes the oldest value; null if the ring is empty (or its oldest push is still being
  /// written). Never blocks.
  void* try_pop() noexcept {
    std::size_t position = pop_at_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[position & mask_];
      const std::size_t sequence = cell.sequence.load(std::memory_order_acquire);
      const auto lag = static_cast<std::intptr_t>(sequence - (position + 1));
      if (lag == 0) {
        if (pop_at_.compare_exchange_weak(position, position + 1, std::memory_order_relaxed)) {
          void* const value = cell.value;
          // Free for the push of the next lap.
          cell.sequence.store(position + mask_ + 1, std::memory_order_release);
          return value;
        }
      } else if (lag < 0) {
        return nullptr;  // not filled yet: empty
      } else {
        position = pop_at_.load(std::memory_order_relaxed);  // another popper took this turn
      }
    }
  }

  [[nodiscard]] std::size_t capacity() const noexcept { return mask_ + 1; }

 private:
  struct Cell {
    std::atomic<std::size_t> sequence{0};
    void* value = nullptr;
  };
  static std::size_t round_up(std::size_t n) noexcept {
    std::size_t size = 2;
    while (size < n) {
      size *= 2;
    }
    return size;
  }

  const std::size_t mask_;
  std::unique_ptr<Cell[]> cells_;
  // Each end on a cache line of its own: pushers and poppers are usually different threads.
  alignas(64) std::atomic<std::size_t> push_at_{0};
  alignas(64) std::atomic<std::size_t> pop_at_{0};
};

}  // namespace supervisor::detail
