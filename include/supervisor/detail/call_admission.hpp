#pragma once

/// \file
/// `CallAdmission`: the calls that `run` admits while it is active (`reconcile`), and that its
/// shutdown waits for, so that none of them outlives it.

#include <atomic>
#include <cstdint>

#include "supervisor/detail/fault_injection.hpp"

namespace supervisor::detail {

/// Open while `run` is active. A call enters (and is refused once closed); `close` refuses the
/// later ones, and `wait_empty` waits for those inside to leave. One word holds both the open bit
/// and the count, so a call and the close cannot miss each other: either the call entered
/// before the close, and is waited for, or it sees the gate closed.
class CallAdmission {
 public:
  /// A call's admission: true if admitted; leaves on destruction.
  class Ticket {
   public:
    explicit Ticket(CallAdmission& admission) noexcept
        : admission_((admission.word_.fetch_add(1) & open_bit) != 0 ? &admission : nullptr) {
      if (admission_ == nullptr) {
        admission.leave();
      }
    }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() {
      if (admission_ != nullptr) {
        admission_->leave();
      }
    }
    explicit operator bool() const noexcept { return admission_ != nullptr; }

   private:
    CallAdmission* admission_;
  };

  /// `run` has begun: calls are admitted.
  void open() noexcept { word_.fetch_or(open_bit); }

  /// Refuses later calls.
  void close() noexcept { word_.fetch_and(~open_bit); }

  /// Blocks until every admitted call has left. Call after `close`.
  void wait_empty() noexcept {
    std::uint32_t word = word_.load();
    if (word != 0) {
      fault_point(FaultPoint::run_waits_for_calls);  // the test's seam: a call is inside
    }
    while (word != 0) {
      word_.wait(word);
      word = word_.load();
    }
  }

 private:
  void leave() noexcept {
    // The last to leave a closed gate wakes `wait_empty` (a refused call, too, may be the
    // last: it counted itself in before it saw the gate closed).
    if (word_.fetch_sub(1) == 1) {
      word_.notify_all();
    }
  }

  static constexpr std::uint32_t open_bit = 1U << 31U;
  std::atomic<std::uint32_t> word_{0};
};

}  // namespace supervisor::detail
