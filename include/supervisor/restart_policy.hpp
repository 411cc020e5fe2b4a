#pragma once

/// \file
/// How a supervisor restarts a key whose process failed: `RestartPolicy` (backoff with jitter,
/// reset after healthy running, give-up) and `Escalation` (the supervisor-wide limit), plus the
/// delay they give, `backoff_delay`.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>

namespace supervisor {

/// What the supervisor does with a key whose process failed: it exited with an error, failed to
/// start, or returned before `ready`. The state is kept per key (one key's failures never slow
/// another key down), from the first failure until the key runs healthy again, leaves the table,
/// or is `reset`.
///
/// The default is the seed's behaviour: no backoff, never give up; a failed key is started again
/// by the next restart pass.
struct RestartPolicy {
  using duration = std::chrono::steady_clock::duration;

  /// The wait after the first failure before a pass may start the key again. Zero turns backoff
  /// off. After the n-th consecutive failure the wait is `initial_backoff * multiplier^(n-1)`,
  /// capped at `max_backoff`, then spread by `jitter`.
  duration initial_backoff = duration::zero();
  duration max_backoff = std::chrono::minutes(5);
  double multiplier = 2.0;
  /// The spread: the wait is multiplied by a factor drawn uniformly from
  /// `[1 - jitter, 1 + jitter]`, so keys that failed together do not come back together. 0 to 1.
  double jitter = 0.2;
  /// A process that has been ready this long before it exits has run healthy: its key's count of
  /// consecutive failures starts again from zero. Without an event hook, its readiness is read
  /// coarsely (`KeyStatus::since`), so the measure is good to a few milliseconds either way.
  duration reset_after = std::chrono::minutes(1);
  /// When set, the restart loop wakes when a key's backoff ends and starts it then, instead of
  /// waiting for the next periodic pass (the default).
  bool retry_when_due = false;

  /// Give up a key that failed more than `give_up_after` times within `give_up_window`: no more
  /// automatic starts until its row changes (or leaves the table and comes back), an explicit
  /// `start`, or `reset(key)`. Zero never gives up. A runnable that fails with
  /// `errc::do_not_restart` is given up at once.
  std::uint32_t give_up_after = 0;
  duration give_up_window = std::chrono::minutes(1);
};

/// The supervisor-wide limit, Erlang/OTP's restart intensity: more than `max_failures` failures
/// (of any keys) within `period` make `run` stop everything and fail with `errc::escalated`, so
/// that whoever runs this supervisor (a parent supervisor, a service's main) restarts the whole
/// subtree. Zero (the default) never escalates. A runnable that fails with `errc::escalate`
/// escalates at once.
struct Escalation {
  std::uint32_t max_failures = 0;
  std::chrono::steady_clock::duration period = std::chrono::seconds(5);
};

/// The wait before the next start of a key after its `consecutive_failures`-th consecutive
/// failure (1 for the first), for a `spread` drawn uniformly from [-1, 1]. Zero when backoff is
/// off. Never negative, and never more than `max_backoff * (1 + jitter)`.
inline std::chrono::steady_clock::duration backoff_delay(const RestartPolicy& policy,
                                                         std::uint32_t consecutive_failures,
                                                         double spread) noexcept {
  using Seconds = std::chrono::duration<double>;
  if (policy.initial_backoff <= RestartPolicy::duration::zero() || consecutive_failures == 0) {
    return RestartPolicy::duration::zero();
  }
  const double cap = Seconds(policy.max_backoff).count();
  const double exponent = static_cast<double>(consecutive_failures - 1);
  double base = Seconds(policy.initial_backoff).count() *
                std::pow(std::max(policy.multiplier, 1.0), exponent);
  if (!(base <= cap)) {  // also catches an overflow to infinity
    base = cap;
  }
  double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  if (jitter != jitter) {  // NaN
    jitter = 0.0;
  }
  if (spread != spread) {  // NaN: no spread (else it would reach the limit below)
    spread = 0.0;
  }
  const double factor = 1.0 + jitter * std::clamp(spread, -1.0, 1.0);
  double seconds = base * factor;
  // A quarter of the duration's range at most: `now + delay` must not overflow either.
  const double limit = Seconds(RestartPolicy::duration::max()).count() / 4;
  if (!(seconds < limit)) {  // also NaN
    seconds = limit;
  }
  return std::chrono::duration_cast<RestartPolicy::duration>(Seconds(std::max(seconds, 0.0)));
}

}  // namespace supervisor
