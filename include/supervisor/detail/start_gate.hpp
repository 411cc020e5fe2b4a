#pragma once

/// \file
/// `StartGate`: lets starts register processes only while `run` is active, and lets `run`'s
/// shutdown wait until the registrations in flight have finished, without a lock.

#include <atomic>
#include <cstdint>

namespace supervisor::detail {

/// The supervisor's start gate. A start holds a `Pass` while it registers a process (inserts its
/// record and launches its thread); `run` opens the gate before its initial pass and closes it
/// when it shuts down. `close` returns once every pass taken while the gate was open has been
/// released, so after it no process can be registered, and `run` may stop every process that
/// is.
///
/// Not a lock: a pass never waits (a closed gate simply says no), so a thread may hold several
/// (a runnable's destructor that calls `start` while a start of its own is registering), and
/// only `close` blocks. Memory order: everything a passing start did before releasing its pass
/// happens-before `close` returns; what `run` wrote before `open` is visible to every pass that
/// finds the gate open.
class StartGate {
 public:
  /// One registration in flight. Test it: false means the gate is closed (register nothing).
  class Pass {
   public:
    explicit Pass(StartGate& gate) noexcept : gate_(gate), open_(gate.enter()) {}
    ~Pass() { gate_.leave(); }
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;

    explicit operator bool() const noexcept { return open_; }

   private:
    StartGate& gate_;
    bool open_;
  };

  /// Lets passes through. Call only while closed and drained.
  void open() noexcept { open_.store(true); }

  /// Stops letting passes through and blocks until every pass in flight has been released.
  void close() noexcept {
    open_.store(false);
    for (std::uint32_t n = in_flight_.load(); n != 0; n = in_flight_.load()) {
      in_flight_.wait(n);
    }
  }

  [[nodiscard]] bool is_open() const noexcept { return open_.load(); }

 private:
  // Sequentially consistent, Dekker-style: a pass counts itself then reads `open_`; `close`
  // clears `open_` then reads the count. Either the pass sees the gate closed, or `close` sees
  // the pass and waits for it.
  bool enter() noexcept {
    in_flight_.fetch_add(1);
    return open_.load();
  }
  void leave() noexcept {
    // Only a closing gate has a waiter: an open one saves the wake-up call.
    if (in_flight_.fetch_sub(1) == 1 && !open_.load()) {
      in_flight_.notify_all();
    }
  }

  std::atomic<bool> open_{false};
  std::atomic<std::uint32_t> in_flight_{0};
};

}  // namespace supervisor::detail
