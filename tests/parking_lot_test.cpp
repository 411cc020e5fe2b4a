// `detail::ParkedSignal`: the coroutine kind's stand-in for a condition variable per record.
// Every wait here is on the signal's own waiter count or on a thread's join, never on time.

#include "supervisor/detail/parking_lot.hpp"

#include <atomic>
#include <chrono>
#include <mutex>
#include <stop_token>
#include <system_error>
#include <thread>
#include <vector>

#include "catch_shim.hpp"
#include "supervisor/cancel.hpp"
#include "supervisor/detail/word_lock.hpp"
#include "supervisor/errors.hpp"

namespace {

using supervisor::Cancel;
using supervisor::errc;
using supervisor::detail::ParkedSignal;

/// Yields until `n` threads wait on `signal` (they count themselves before they sleep).
void until_waiting(const ParkedSignal& signal, std::uint32_t n) {
  while (signal.waiters() < n) {
    std::this_thread::yield();
  }
}

}  // namespace

TEST_CASE("ParkedSignal: a waiter asleep wakes when its predicate holds and it is notified",
          "[parking_lot]") {
  // Two signals: their records may share a bucket, and a notify of one must still reach the
  // other's waiter only through its own.
  ParkedSignal signals[2];
  std::atomic<bool> flags[2] = {false, false};
  std::vector<std::error_code> results(2, errc::canceled);
  std::vector<std::thread> waiters;
  waiters.reserve(2);
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&, i] {
      results[i] = signals[i].wait_until_done(Cancel{}, [&] { return flags[i].load(); });
    });
  }
  until_waiting(signals[0], 1);
  until_waiting(signals[1], 1);
  flags[0] = true;
  signals[0].notify_all();
  waiters[0].join();
  CHECK(results[0] == std::error_code{});
  CHECK(signals[0].waiters() == 0);  // a waiter uncounts itself on the way out
  CHECK(signals[1].waiters() == 1);  // the other still sleeps
  flags[1] = true;
  signals[1].notify_all();
  waiters[1].join();
  CHECK(results[1] == std::error_code{});
}

TEST_CASE("ParkedSignal: the record-lock form releases the lock while asleep, holds it after",
          "[parking_lot]") {
  ParkedSignal signal;
  supervisor::detail::WordLock record;  // the pairing of coroutine records
  std::atomic<bool> flag{false};
  std::atomic<bool> held_after{false};
  std::thread waiter([&] {
    std::unique_lock lock(record);
    signal.wait(lock, [&] { return flag.load(); });
    held_after = lock.owns_lock();
  });
  until_waiting(signal, 1);
  {
    // The waiter sleeps without the record's lock: a notifier may hold it (the cancel path does).
    const std::lock_guard lock(record);
    flag = true;
    signal.notify_all();
  }
  waiter.join();
  CHECK(held_after.load());
}

TEST_CASE("ParkedSignal: a wait on a record's fields counts itself under the record's lock",
          "[parking_lot]") {
  // So a change made under that lock needs no sequentially consistent store (a process's
  // `ready_` and `done_` are released): the waiter sees it there, or the notifier its count.
  ParkedSignal signal;
  supervisor::detail::WordLock record;
  std::atomic<bool> flag{false};
  std::error_code first = errc::canceled;
  std::error_code second = errc::canceled;
  std::thread waiter;
  {
    const std::lock_guard lock(record);
    waiter =
        std::thread([&] { first = wait(signal, record, Cancel{}, [&] { return flag.load(); }); });
    // Until the waiter is blocked on the record's lock (or, wrongly, counted without it).
    while (!record.has_sleeper() && signal.waiters() == 0) {
      std::this_thread::yield();
    }
    CHECK(signal.waiters() == 0);  // not counted yet: it has not tested the predicate
    flag.store(true, std::memory_order_relaxed);
  }
  signal.notify_all();  // for a waiter that (wrongly) slept
  waiter.join();        // it tested the predicate under the lock: true, no sleep
  CHECK(first == std::error_code{});
  CHECK(signal.waiters() == 0);

  flag.store(false);
  waiter =
      std::thread([&] { second = wait(signal, record, Cancel{}, [&] { return flag.load(); }); });
  until_waiting(signal, 1);
  {
    const std::lock_guard lock(record);
    flag.store(true, std::memory_order_relaxed);
  }
  signal.notify_all();  // after the change, outside the lock, as the process's transitions do
  waiter.join();
  CHECK(second == std::error_code{});
}

TEST_CASE("ParkedSignal: a stop request or a passed deadline ends the wait with its error",
          "[parking_lot]") {
  ParkedSignal signal;
  SECTION("stop requested while asleep") {
    std::stop_source stop;
    std::error_code result;
    std::thread waiter(
        [&] { result = signal.wait_until_done(Cancel{stop.get_token()}, [] { return false; }); });
    until_waiting(signal, 1);
    stop.request_stop();
    waiter.join();
    CHECK(result == errc::canceled);
  }
  SECTION("deadline already passed") {
    const auto past = Cancel::clock::now() - std::chrono::seconds(1);
    CHECK(signal.wait_until_done(Cancel{past}, [] { return false; }) == errc::deadline_exceeded);
  }
  SECTION("the predicate wins over a fired cancel") {
    std::stop_source stop;
    stop.request_stop();
    CHECK(signal.wait_until_done(Cancel{stop.get_token()}, [] { return true; }) ==
          std::error_code{});
  }
  CHECK(signal.waiters() == 0);
}
