#pragma once

/// \file
/// `ParkedSignal`: a condition variable's job done in 4 bytes per record, for records that are
/// many and rarely waited on (coroutine processes). Blocking waiters sleep on one of a few shared
/// condition variables, chosen by the record's address; a notifier touches them only when the
/// record counts a waiter.

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <stop_token>
#include <system_error>

#include "supervisor/cancel.hpp"
#include "supervisor/errors.hpp"

namespace supervisor::detail {

/// Where the waiters of many records sleep.
struct ParkingBucket {
  alignas(64) std::mutex mutex;
  std::condition_variable changed;
};

inline ParkingBucket& parking_bucket(const void* address) noexcept {
  static constexpr std::size_t bucket_count = 64;
  using Buckets = std::array<ParkingBucket, bucket_count>;
  // Made in static storage and never destroyed: a wait during static destruction (a global
  // supervisor's shutdown) must still find its bucket. Nothing is allocated, so nothing can fail.
  alignas(Buckets) static unsigned char storage[sizeof(Buckets)];
  static Buckets* const buckets = ::new (static_cast<void*>(storage)) Buckets;
  // Records are allocated blocks: the low bits say nothing, the next ones spread them.
  return (*buckets)[(reinterpret_cast<std::uintptr_t>(address) >> 6U) % bucket_count];
}

/// The signal of one record: `notify_all` after a change, `wait` until a predicate over the
/// record's atomics holds. The predicate's first test may be under the record's lock, the
/// others run under the bucket's, so it must read only atomics (a notifier may hold the
/// record's lock while it notifies), and it must be monotonic (once true, true for good): its
/// last test is not under the record's lock.
///
/// No wake-up is lost. The record's own waits (`wait` with its lock) count themselves under the
/// record's lock and test the predicate there, so a change made under that lock (a release
/// store is enough) and announced by `notify_all` after it is seen by one or the other: the
/// waiter sees the change, or the notifier sees the count (a sequentially consistent change
/// made outside the lock is seen as well). `wait_until_done` counts itself (sequentially
/// consistent) before it tests the predicate, without the lock: what it waits for must change
/// by a sequentially consistent store or read-modify-write. A change that is neither (a stop
/// token's request is acquire-release) is announced with `wake_all`, which takes the bucket's
/// lock whatever the count.
class ParkedSignal {
 public:
  ParkedSignal() = default;
  ParkedSignal(const ParkedSignal&) = delete;
  ParkedSignal& operator=(const ParkedSignal&) = delete;
  ~ParkedSignal() = default;

  void notify_all() noexcept {
    if (waiters_.load() != 0) {
      wake_all();
    }
  }

  /// Wakes this record's waiters (and whoever else sleeps in its bucket) unconditionally.
  void wake_all() noexcept { wake(parking_bucket(this)); }

  /// As `std::condition_variable::wait`: `record_lock` is held on entry and on return, released
  /// while sleeping.
  template <class Lock, class Predicate>
  void wait(std::unique_lock<Lock>& record_lock, Predicate done) {
    if (done()) {
      return;  // the usual case (a process's end waits for cancels that are rarely in flight)
    }
    waiters_.fetch_add(1);  // under the record's lock: see the class comment
    record_lock.unlock();
    sleep_counted(Cancel{}, done);
    record_lock.lock();
  }

  /// As `wait_until_done`, for a predicate over fields that change under `record_lock` (which
  /// the caller does not hold): counts itself under it, then sleeps without it.
  template <class Lock, class Predicate>
  std::error_code wait_locked(Lock& record_lock, const Cancel& cancel, Predicate done) {
    {
      const std::lock_guard lock(record_lock);
      if (done()) {
        return {};
      }
      waiters_.fetch_add(1);
    }
    return sleep_counted(cancel, done);
  }

  /// Sleeps until `done()` or `cancel` fires: success if `done()` holds, else `errc::canceled` or
  /// `errc::deadline_exceeded`.
  template <class Predicate>
  std::error_code wait_until_done(const Cancel& cancel, Predicate done) {
    if (done()) {
      return {};  // nothing to count, lock or register
    }
    waiters_.fetch_add(1);
    return sleep_counted(cancel, done);
  }

  /// How many threads are in a wait (counted once the predicate, tested first, was false). For
  /// tests.
  [[nodiscard]] std::uint32_t waiters() const noexcept { return waiters_.load(); }

 private:
  /// The sleep of a waiter counted in `waiters_`, which it uncounts when it returns.
  template <class Predicate>
  std::error_code sleep_counted(const Cancel& cancel, Predicate done) {
    ParkingBucket& bucket = parking_bucket(this);
    struct Leave {
      std::atomic<std::uint32_t>& waiters;
      ~Leave() { waiters.fetch_sub(1); }
    } leave{waiters_};
    const std::stop_token& token = cancel.token();
    std::stop_callback wake_on_cancel(token, [&bucket] { wake(bucket); });
    std::unique_lock lock(bucket.mutex);
    auto finished = [&] { return done() || token.stop_requested(); };
    if (cancel.has_deadline()) {
      bucket.changed.wait_until(lock, cancel.deadline(), finished);
    } else {
      bucket.changed.wait(lock, finished);
    }
    if (done()) {
      return {};
    }
    return token.stop_requested() ? errc::canceled : errc::deadline_exceeded;
  }

  static void wake(ParkingBucket& bucket) noexcept {
    const std::lock_guard lock(bucket.mutex);
    bucket.changed.notify_all();
  }

  std::atomic<std::uint32_t> waiters_{0};
};

/// `wait` (cancel.hpp) for a record whose signal is parked: its predicate reads atomics only,
/// which change under `record_lock`.
template <class Lock, class Predicate>
std::error_code wait(ParkedSignal& signal, Lock& record_lock, const Cancel& cancel,
                     Predicate done) {
  return signal.wait_locked(record_lock, cancel, done);
}

}  // namespace supervisor::detail
