#pragma once

/// \file
/// `LeaseTable`: a `Table` that yields only the rows this instance holds a lease on, so that
/// several instances (processes, hosts) can share one table and run each key exactly once.
///
/// Every restart pass (`iterate`) it reads the user's table, then, in PostgreSQL: adds lease rows
/// for new keys, heartbeats this instance, renews its leases, and moves towards a fair share
/// (ceil(rows / live members)): it claims unowned or expired keys when under it (`FOR UPDATE SKIP
/// LOCKED`: it never waits for another instance), releases keys when over it. It yields the rows
/// it holds, each runnable wrapped in a `Leased` that carries the key's fencing token. Use it with
/// `Options::prune = true`: a key that is no longer yielded (released, lost, or past its safety
/// deadline because renewals fail) then has its process stopped by the same pass.
///
/// A failure of the database or of the user's table never throws out of `iterate`: the pass
/// yields the keys whose leases are still safely valid, and the cursor's `close()` throws the
/// failure, which the supervisor reports to `Options::on_error` (as `ErrorSource::close`) while
/// the pass still counts as complete, so pruning still works. The connection is then dropped and
/// reopened with backoff; leases that cannot be renewed expire.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "supervisor/postgres/connection.hpp"
#include "supervisor/postgres/detail/lease_store.hpp"
#include "supervisor/postgres/lease.hpp"
#include "supervisor/postgres/leased.hpp"
#include "supervisor/table.hpp"

namespace supervisor::postgres {

/// What a `LeaseTable` did in its last pass, for monitoring and tests.
struct LeaseStats {
  std::size_t held = 0;           ///< keys yielded by the last pass
  std::size_t rows = 0;           ///< rows of the user's table in the last pass
  std::int64_t live_members = 0;  ///< as of the last successful pass
  std::size_t share = 0;          ///< the fair share of the last successful pass
  std::uint64_t passes = 0;       ///< passes that reached the database
  std::uint64_t failed_passes = 0;
};

/// A `Table<std::string, Leased<R>>` over the user's `Table<std::string, R>`, `T`.
///
/// Thread-safety: `get` may run concurrently with everything; `iterate` and `release_all` use
/// the connection and must not run concurrently with each other (the supervisor calls `iterate`
/// from one thread at a time). Blocking: `iterate` and `release_all` wait for the database (each
/// statement at most about `lease / 2`, the statement timeout); `get` never does.
template <class T, class R>
requires supervisor::Table<T, std::string, R>
class LeaseTable {
 public:
  using Row = std::pair<std::string, Leased<R>>;
  using Clock = std::chrono::steady_clock;

  /// The rows of one pass. `close()` throws the pass's database failure, if any.
  class Cursor {
   public:
    Cursor(std::vector<Row> rows, std::exception_ptr error)
        : rows_(std::move(rows)), error_(std::move(error)) {}
    bool next() { return ++position_ <= rows_.size(); }
    [[nodiscard]] Row get() { return std::move(rows_[position_ - 1]); }
    void close() {
      rows_.clear();
      if (error_) {
        std::rethrow_exception(std::exchange(error_, nullptr));
      }
    }

   private:
    std::vector<Row> rows_;
    std::exception_ptr error_;
    std::size_t position_ = 0;
  };

  /// Connects lazily (at the first pass). Throws `std::invalid_argument` for a bad table name.
  LeaseTable(std::shared_ptr<T> table, LeaseOptions options)
      : table_(std::move(table)), options_(normalised(std::move(options))), store_(options_) {}

  LeaseTable(const LeaseTable&) = delete;
  LeaseTable& operator=(const LeaseTable&) = delete;

  /// Releases this instance's leases (best effort: a failure is swallowed, the leases expire).
  ~LeaseTable() {
    try {
      release_all();
    } catch (...) {  // NOLINT(bugprone-empty-catch): nobody to tell; the leases simply expire.
    }
  }

  /// The row for `key` if this instance holds its lease (and the user's table has it).
  std::optional<Leased<R>> get(const std::string& key) {
    std::optional<std::int64_t> fence;
    {
      const std::lock_guard lock(mutex_);
      const auto it = held_.find(key);
      if (it != held_.end() && Clock::now() < it->second.deadline) {
        fence = it->second.fence;
      }
    }
    if (!fence) {
      return std::nullopt;
    }
    std::optional<R> row = table_->get(key);
    if (!row) {
      return std::nullopt;
    }
    return Leased<R>(std::move(*row), Lease{key, *fence, options_.lease_table});
  }

  /// One pass: syncs the leases with the database, then returns the rows held. Never throws for
  /// a failure of the database or of the user's table: the cursor's `close()` throws it. When
  /// the user's table cannot be read, the pass uses the rows of the last pass that could, and
  /// does not touch the database (no renewal: a key whose deadline passes stops being yielded, so
  /// pruning still stops it in time). Throws `std::bad_alloc` only.
  Cursor iterate() {
    const std::lock_guard db_lock(db_mutex_);
    std::vector<std::pair<std::string, R>> rows;
    std::exception_ptr error;
    try {
      rows = read_user_table();
      last_rows_ = rows;
    } catch (...) {
      error = std::current_exception();
      rows = last_rows_;
    }
    if (!error) {
      error = sync(rows);
    }
    std::vector<Row> out;
    const auto now = Clock::now();
    const std::lock_guard lock(mutex_);
    for (auto& [key, runnable] : rows) {
      const auto it = held_.find(key);
      if (it != held_.end() && now < it->second.deadline) {
        Lease lease{key, it->second.fence, options_.lease_table};
        out.emplace_back(std::move(key), Leased<R>(std::move(runnable), std::move(lease)));
      }
    }
    stats_.held = out.size();
    stats_.rows = rows.size();
    return Cursor(std::move(out), std::move(error));
  }

  /// Gives up every lease of this instance and leaves the membership, so that the others take its
  /// keys at their next pass. Call it after `Supervisor::run` has returned (its processes are
  /// stopped). Throws `Error` if the database fails (the leases then expire by themselves).
  void release_all() {
    const std::lock_guard db_lock(db_mutex_);
    {
      const std::lock_guard lock(mutex_);
      held_.clear();
      if (!joined_) {
        return;
      }
    }
    if (!db_) {
      db_.emplace(options_.conninfo, statement_timeout());
    }
    store_.release_all(*db_);
    joined_ = false;
  }

  [[nodiscard]] LeaseStats stats() const {
    const std::lock_guard lock(mutex_);
    return stats_;
  }
  [[nodiscard]] const LeaseOptions& options() const noexcept { return options_; }

 private:
  struct Held {
    std::int64_t fence;
    Clock::time_point deadline;
  };

  static LeaseOptions normalised(LeaseOptions options) {
    if (options.instance.empty()) {
      options.instance = detail::default_instance();
    }
    return options;
  }

  [[nodiscard]] int statement_timeout() const {
    return static_cast<int>(std::max<std::int64_t>(200, options_.lease.count() / 2));
  }

  std::vector<std::pair<std::string, R>> read_user_table() {
    auto cursor = table_->iterate();
    std::vector<std::pair<std::string, R>> rows;
    try {
      while (cursor.next()) {
        rows.push_back(cursor.get());
      }
    } catch (...) {
      cursor.close();
      throw;
    }
    cursor.close();
    return rows;
  }

  // Brings the leases in line with the database; returns its failure, if any.
  std::exception_ptr sync(const std::vector<std::pair<std::string, R>>& rows) {
    const auto now = Clock::now();
    if (now < next_attempt_) {
      return nullptr;  // backing off: the keys still within their deadline stay
    }
    try {
      sync_with_database(rows);
      backoff_ = options_.reconnect_min;
      const std::lock_guard lock(mutex_);
      ++stats_.passes;
      return nullptr;
    } catch (...) {
      db_.reset();
      next_attempt_ = Clock::now() + backoff_;
      backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
      const std::lock_guard lock(mutex_);
      ++stats_.failed_passes;
      return std::current_exception();
    }
  }

  void sync_with_database(const std::vector<std::pair<std::string, R>>& rows) {
    if (!db_) {
      db_.emplace(options_.conninfo, statement_timeout());
      if (options_.create_schema) {
        store_.create_schema(*db_);
      }
      known_.clear();  // a new connection may see another database (restored, failed over)
    }
    std::vector<std::string> fresh;
    std::unordered_set<std::string> in_table;
    in_table.reserve(rows.size());
    for (const auto& row : rows) {
      in_table.insert(row.first);
      if (!known_.contains(row.first)) {
        fresh.push_back(row.first);
      }
    }
    if (!fresh.empty()) {
      store_.add_keys(*db_, fresh);
      known_.insert(fresh.begin(), fresh.end());
    }
    joined_ = true;
    const std::int64_t live = std::max<std::int64_t>(1, store_.heartbeat(*db_));
    const auto share =
        static_cast<std::size_t>((static_cast<std::int64_t>(rows.size()) + live - 1) / live);

    // Renewal: what the database returns is what we hold; anything else is lost.
    const auto renewed_at = Clock::now();
    std::unordered_map<std::string, Held> held;
    std::vector<std::string> release;
    for (auto& [key, fence] : store_.renew(*db_)) {
      if (in_table.contains(key) && held.size() < share) {
        held.emplace(std::move(key), Held{fence, deadline_from(renewed_at)});
      } else {
        release.push_back(std::move(key));  // gone from the table, or over our share
      }
    }
    publish(held, live, share);  // lost leases stop being yielded even if what follows fails
    if (!release.empty()) {
      store_.release(*db_, release);
    }
    if (held.size() < share) {
      std::vector<std::string> candidates;
      for (const auto& row : rows) {
        if (!held.contains(row.first)) {
          candidates.push_back(row.first);
        }
      }
      const auto claimed_at = Clock::now();
      for (auto& [key, fence] :
           store_.claim(*db_, static_cast<std::int64_t>(share - held.size()), candidates)) {
        held.insert_or_assign(std::move(key), Held{fence, deadline_from(claimed_at)});
      }
      publish(held, live, share);
    }
  }

  [[nodiscard]] Clock::time_point deadline_from(Clock::time_point start) const {
    return start + options_.lease - options_.safety_margin;
  }

  void publish(const std::unordered_map<std::string, Held>& held, std::int64_t live,
               std::size_t share) {
    const std::lock_guard lock(mutex_);
    held_ = held;
    stats_.live_members = live;
    stats_.share = share;
  }

  std::shared_ptr<T> table_;
  const LeaseOptions options_;
  const detail::LeaseStore store_;

  std::mutex db_mutex_;  // the connection and the pass state below
  std::optional<Connection> db_;
  std::unordered_set<std::string> known_;             // keys that have a lease row
  std::vector<std::pair<std::string, R>> last_rows_;  // of the last pass that read the table
  Clock::time_point next_attempt_{};
  std::chrono::milliseconds backoff_ = options_.reconnect_min;
  bool joined_ = false;

  mutable std::mutex mutex_;  // what `get` reads
  std::unordered_map<std::string, Held> held_;
  LeaseStats stats_;
};

}  // namespace supervisor::postgres
