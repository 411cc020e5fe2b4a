#pragma once

/// \file
/// `Leased<R>`: the runnable a `LeaseTable` yields, the user's runnable plus its `Lease`; and
/// `fenced_write`, a write that the database accepts only under the current lease.
///
/// A runnable learns its lease by having `run(force, ready, const Lease&)` (on itself or through
/// a pointer-like handle); one without it is run as usual, with the lease still reachable through
/// `Leased::lease()` by whoever holds the `Leased` value.

#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "supervisor/postgres/connection.hpp"
#include "supervisor/postgres/lease.hpp"
#include "supervisor/runnable.hpp"

namespace supervisor::postgres {

namespace detail {

template <class R>
concept RunsWithLease = requires(R& r, Ready& ready, const Lease& lease) {
  r.run(std::stop_token{}, ready, lease);
};
template <class R>
concept RunsWithLeaseThroughPointer =
    !RunsWithLease<R> && requires(R & r, Ready& ready, const Lease& lease) {
  (*r).run(std::stop_token{}, ready, lease);
};

}  // namespace detail

/// The user's runnable `R` with the lease of its key. Copyable when `R` is; `run` is called on the
/// process's thread, as `R`'s would be.
template <class R>
class Leased {
 public:
  Leased(R runnable, Lease lease) : runnable_(std::move(runnable)), lease_(std::move(lease)) {}

  /// Runs the user's runnable, handing it the lease if it takes one.
  decltype(auto) run(std::stop_token force, Ready& ready) {
    if constexpr (detail::RunsWithLease<R>) {
      return runnable_.run(std::move(force), ready, std::as_const(lease_));
    } else if constexpr (detail::RunsWithLeaseThroughPointer<R>) {
      return (*runnable_).run(std::move(force), ready, std::as_const(lease_));
    } else {
      return supervisor::detail::invoke_run(runnable_, std::move(force), ready);
    }
  }

  [[nodiscard]] const Lease& lease() const noexcept { return lease_; }
  [[nodiscard]] const R& runnable() const noexcept { return runnable_; }
  [[nodiscard]] R& runnable() noexcept { return runnable_; }

 private:
  R runnable_;
  Lease lease_;
};

/// Runs `sql` (with its own `$1`, `$2`... `parameters`) only if `lease` is still the current lease
/// of its key: in one transaction, it locks the key's lease row `WHERE key = $1 AND fence = $2`
/// (FOR SHARE, so no claim can change the fence before the commit) and runs `sql` only if the row
/// matched. Returns whether the write was accepted; false means the lease was lost and another
/// instance may own the key now: stop acting on it.
///
/// Blocks for the round trips (4); throws `Error` if the database fails (the transaction is then
/// rolled back, or dies with the connection). `db` must not be inside a transaction.
inline bool fenced_write(Connection& db, const Lease& lease, const std::string& sql,
                         const std::vector<std::string>& parameters = {}) {
  db.exec("BEGIN");
  try {
    const auto current =
        db.exec("SELECT 1 FROM " + lease.table + " WHERE key = $1 AND fence = $2 FOR SHARE",
                {lease.key, std::to_string(lease.fence)});
    if (current.rows() == 0) {
      db.exec("ROLLBACK");
      return false;
    }
    db.exec(sql, parameters);
    db.exec("COMMIT");
    return true;
  } catch (...) {
    if (db.ok()) {
      try {
        db.exec("ROLLBACK");
      } catch (...) {  // NOLINT(bugprone-empty-catch): the first error is the one to report.
      }
    }
    throw;
  }
}

}  // namespace supervisor::postgres
