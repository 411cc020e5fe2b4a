#pragma once

/// \file
/// `Cancel`: how a blocking call may be cut short, by a `std::stop_token`, a deadline, or both.

#include <chrono>
#include <condition_variable>
#include <stop_token>
#include <system_error>

#include "supervisor/errors.hpp"

namespace supervisor {

/// The limits of one blocking call: a stop token, a deadline on `std::chrono::steady_clock`, both,
/// or neither (the default: wait as long as it takes).
///
/// Implicitly constructible from a `std::stop_token`, a `steady_clock` time point, or a duration
/// (measured from the moment the `Cancel` is made), so calls read naturally:
/// `process.stop(5s)`, `sup.start(key, token)`, `sup.stop(key, {token, 5s})`.
///
/// Deadlines are real time, not the supervisor's injected clock: they bound how long a caller is
/// willing to block, which a test drives with a token or an already-passed deadline.
class Cancel {
 public:
  using clock = std::chrono::steady_clock;

  Cancel() = default;

  // NOLINTNEXTLINE(google-explicit-constructor): implicit by design, see above.
  Cancel(std::stop_token token) noexcept : token_(std::move(token)) {}

  // NOLINTNEXTLINE(google-explicit-constructor)
  Cancel(clock::time_point deadline) noexcept : deadline_(deadline) {}

  template <class Rep, class Period>
  // NOLINTNEXTLINE(google-explicit-constructor)
  Cancel(std::chrono::duration<Rep, Period> timeout) : deadline_(deadline_after(timeout)) {}

  Cancel(std::stop_token token, clock::time_point deadline) noexcept
      : token_(std::move(token)), deadline_(deadline) {}

  template <class Rep, class Period>
  Cancel(std::stop_token token, std::chrono::duration<Rep, Period> timeout)
      : token_(std::move(token)), deadline_(deadline_after(timeout)) {}

  [[nodiscard]] const std::stop_token& token() const noexcept { return token_; }
  [[nodiscard]] clock::time_point deadline() const noexcept { return deadline_; }
  [[nodiscard]] bool has_deadline() const noexcept { return deadline_ != clock::time_point::max(); }

  /// `errc::canceled` if the token was requested, `errc::deadline_exceeded` if the deadline has
  /// passed, else success. The token wins when both hold.
  [[nodiscard]] std::error_code check() const {
    if (token_.stop_requested()) {
      return errc::canceled;
    }
    if (has_deadline() && clock::now() >= deadline_) {
      return errc::deadline_exceeded;
    }
    return {};
  }

 private:
  template <class Rep, class Period>
  static clock::time_point deadline_after(std::chrono::duration<Rep, Period> timeout) {
    const auto now = clock::now();
    // Compared in floating point: a timeout of centuries overflows the clock's integer ticks.
    using Seconds = std::chrono::duration<double>;
    if (Seconds(timeout) >= Seconds(clock::time_point::max() - now)) {
      return clock::time_point::max();
    }
    return now + std::chrono::ceil<clock::duration>(timeout);
  }

  std::stop_token token_;
  clock::time_point deadline_ = clock::time_point::max();
};

namespace detail {

/// Waits on `cv` until `done()` holds (checked under `mutex`) or `cancel` fires. Returns
/// success when `done()` holds (even if `cancel` fired too), else `errc::canceled` or
/// `errc::deadline_exceeded`. Takes and releases `mutex` itself: the token's callback locks it to
/// notify, so it must be unregistered with the mutex free.
template <class Predicate>
std::error_code wait(std::condition_variable& cv, std::mutex& mutex, const Cancel& cancel,
                     Predicate done) {
  const std::stop_token& token = cancel.token();
  std::stop_callback wake(token, [&] {
    std::lock_guard lock(mutex);
    cv.notify_all();
  });
  std::unique_lock lock(mutex);
  auto finished = [&] { return done() || token.stop_requested(); };
  if (cancel.has_deadline()) {
    cv.wait_until(lock, cancel.deadline(), finished);
  } else {
    cv.wait(lock, finished);
  }
  if (done()) {
    return {};
  }
  return token.stop_requested() ? errc::canceled : errc::deadline_exceeded;
}

}  // namespace detail
}  // namespace supervisor
