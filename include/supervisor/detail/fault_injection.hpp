#pragma once

/// \file
/// Test seams where the library asks for a resource that the machine may refuse. Compiled to
/// nothing unless `SUPERVISOR_FAULT_INJECTION` is defined, which only the fault-injection test
/// binary does: it installs a hook that throws at the Nth point, as the real failure would.

#if defined(SUPERVISOR_FAULT_INJECTION)
#include <atomic>
#endif

namespace supervisor::detail {

/// Where a fault can be injected.
enum class FaultPoint {
  /// Just before the library creates a thread (a process's, the restart loop, the deadline
  /// timer, a `ThreadPool`'s worker). A hook throws what `std::thread`'s constructor throws:
  /// `std::system_error` with `std::errc::resource_unavailable_try_again`.
  thread_create,
  /// An executor's `schedule` threw, and `ExecutorRef::schedule` resumed the handle on the
  /// calling thread instead: a failure the library recovers from by design, not an error to
  /// report. Called inside the catch block; a hook must not throw here.
  schedule_recovered,
  /// Not a fault: `run`'s shutdown is about to wait for `reconcile` calls still inside
  /// (`CallAdmission`). A test holds one there to show the wait; a hook must not throw here.
  run_waits_for_calls,
  /// Not a fault: a start refused a thread has recorded its failure in the key's history and is
  /// about to free the key. A test holds one there; a hook must not throw here.
  failed_launch_recorded,
  /// Not a fault: a first `LazyForce::get_token` has made its source and is about to publish
  /// it. A test requests force there, or makes the token first; a hook must not throw here.
  lazy_force_made,
};

#if defined(SUPERVISOR_FAULT_INJECTION)
/// The hook the test binary installs; null does nothing.
inline std::atomic<void (*)(FaultPoint)> fault_hook{nullptr};

inline void fault_point(FaultPoint point) {
  if (auto* hook = fault_hook.load()) {
    hook(point);
  }
}
#else
inline void fault_point(FaultPoint /*point*/) noexcept {}
#endif

}  // namespace supervisor::detail
