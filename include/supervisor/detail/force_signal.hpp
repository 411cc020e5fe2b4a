#pragma once

/// \file
/// A process's force signal: an `std::stop_source` made with the record (`EagerForce`), or made
/// only when someone asks for its token (`LazyForce`), for coroutine runnables whose `run` takes
/// no force token. Both have the members of `std::stop_source` that `ProcessCore` uses.

#include <atomic>
#include <cstdint>
#include <stop_token>
#include <type_traits>

#include "supervisor/detail/fault_injection.hpp"

namespace supervisor::detail {

/// The force signal of a process whose `run` is handed the token: a plain `std::stop_source`.
using EagerForce = std::stop_source;

/// The force signal of a coroutine process whose `run` takes `AsyncReady&` alone. Most such
/// processes never ask for the token (`AsyncReady::force_token`), and an `std::stop_source` costs a
/// heap block of its own and a few locked instructions per process: at a million processes, 32
/// bytes and an allocation each on the thread of `Supervisor::run` at restore, and a free each at
/// shutdown. Here a request is one bit; the source is made on the first `get_token`, and requested
/// from then on with the bit.
///
/// One word: bit 0 says force was requested; the rest is the source, once made (never changed
/// after). Every member is thread-safe; lock-free apart from the allocation and
/// `std::stop_source`'s own. A request and a first `get_token` that race both see the other's half:
/// the request sets the bit before it looks for a source, the maker publishes the source with a
/// compare-exchange that fails if the bit changed, and whichever comes second requests the source
/// (a second request of a source does nothing). Callbacks on the token run on the requesting
/// thread, as they would with `std::stop_source`, or on a thread that asks for a token while a
/// request is under way.
class LazyForce {
 public:
  LazyForce() noexcept = default;
  LazyForce(const LazyForce&) = delete;
  LazyForce& operator=(const LazyForce&) = delete;
  ~LazyForce() { delete source_of(word_.load(std::memory_order_acquire)); }

  /// Requests force: sets the bit, and requests the source if one was made (its callbacks run
  /// here, on the caller's thread). Returns whether this call was the first request.
  bool request_stop() noexcept {
    const std::uintptr_t before = word_.fetch_or(requested_bit);
    if ((before & requested_bit) != 0) {
      return false;
    }
    if (std::stop_source* source = source_of(before)) {
      source->request_stop();
    }
    return true;
  }

  [[nodiscard]] bool stop_requested() const noexcept { return (word_.load() & requested_bit) != 0; }

  /// The force token, requested once force is (already, if it was before this call). The first
  /// call makes the source: it may throw `std::bad_alloc`; later calls never throw.
  [[nodiscard]] std::stop_token get_token() {
    std::uintptr_t seen = word_.load(std::memory_order_acquire);
    std::stop_source* source = source_of(seen);
    if (source == nullptr) {
      auto* made = new std::stop_source();
      fault_point(FaultPoint::lazy_force_made);  // a test seam: a request or a maker here
      // `seen` has no source: only the bit may differ from it, or another maker's be there.
      while (!word_.compare_exchange_weak(seen, seen | reinterpret_cast<std::uintptr_t>(made),
                                          std::memory_order_acq_rel, std::memory_order_acquire)) {
        if ((source = source_of(seen)) != nullptr) {
          delete made;  // another maker published first: theirs is the one
          break;
        }
      }
      if (source == nullptr) {
        source = made;
      }
    }
    // A request that came first found no source, or may not have requested it yet: whoever
    // sees the bit requests it before handing out a token (again does nothing), so no token is
    // handed out unrequested, and a maker never runs the callbacks of tokens that others were
    // handed after the bit was set.
    if ((seen & requested_bit) != 0) {
      source->request_stop();
    }
    return source->get_token();
  }

 private:
  static constexpr std::uintptr_t requested_bit = 1;
  static_assert(alignof(std::stop_source) > requested_bit);
  static std::stop_source* source_of(std::uintptr_t word) noexcept {
    // NOLINTNEXTLINE(performance-no-int-to-ptr): a pointer with a flag in its low bit
    return reinterpret_cast<std::stop_source*>(word & ~requested_bit);
  }

  std::atomic<std::uintptr_t> word_{0};
};

/// A process's force signal: lazy, or an `std::stop_source` made with the record.
template <bool Lazy>
using ForceSignal = std::conditional_t<Lazy, LazyForce, EagerForce>;

}  // namespace supervisor::detail
