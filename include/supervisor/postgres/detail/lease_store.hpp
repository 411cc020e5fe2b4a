#pragma once

/// \file
/// The SQL of the lease model, one function per statement. Every function blocks until the server
/// answers and throws `postgres::Error` on failure; none keeps state. Claims lock the candidate
/// rows with `FOR UPDATE SKIP LOCKED`, so an instance never waits for another one's claim.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "supervisor/postgres/connection.hpp"
#include "supervisor/postgres/lease.hpp"

namespace supervisor::postgres::detail {

/// A key and the fence it is held with.
using HeldKey = std::pair<std::string, std::int64_t>;

/// A text[] literal: {"a","b\"c"}.
inline std::string text_array(const std::vector<std::string>& values) {
  std::string out = "{";
  for (const auto& value : values) {
    if (out.size() > 1) {
      out += ',';
    }
    out += '"';
    for (const char c : value) {
      if (c == '"' || c == '\\') {
        out += '\\';
      }
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

class LeaseStore {
 public:
  explicit LeaseStore(const LeaseOptions& options)
      : leases_(options.lease_table),
        members_(options.members_table),
        instance_(options.instance),
        lease_(interval(options.lease)) {
    check_identifier(leases_);
    check_identifier(members_);
  }

  void create_schema(Connection& db) const {
    db.exec("CREATE TABLE IF NOT EXISTS " + leases_ +
            " (key text PRIMARY KEY, owner text, expires_at timestamptz NOT NULL DEFAULT "
            "'-infinity', fence bigint NOT NULL DEFAULT 0)");
    db.exec("CREATE TABLE IF NOT EXISTS " + members_ +
            " (instance text PRIMARY KEY, heartbeat timestamptz NOT NULL)");
  }

  /// Adds lease rows (unowned) for keys that have none.
  void add_keys(Connection& db, const std::vector<std::string>& keys) const {
    db.exec("INSERT INTO " + leases_ + " (key) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            {text_array(keys)});
  }

  /// Heartbeats this instance and returns the number of live members (itself included).
  std::int64_t heartbeat(Connection& db) const {
    db.exec("INSERT INTO " + members_ +
                " (instance, heartbeat) VALUES ($1, now()) ON CONFLICT (instance) DO UPDATE SET "
                "heartbeat = now()",
            {instance_});
    const auto live = db.exec(
        "SELECT count(*) FROM " + members_ + " WHERE heartbeat > now() - $1::interval", {lease_});
    return live.integer(0, 0);
  }

  /// Extends every unexpired lease this instance holds; returns them. A lease that expired is
  /// not renewed: it is lost, even if nobody took it yet (claiming it again bumps its fence).
  std::vector<HeldKey> renew(Connection& db) const {
    return held(db.exec("UPDATE " + leases_ +
                            " SET expires_at = now() + $2::interval WHERE owner = $1 AND "
                            "expires_at > now() RETURNING key, fence",
                        {instance_, lease_}));
  }

  /// Claims up to `count` of `candidates` that are unowned or expired, skipping rows another
  /// transaction has locked. Each claim bumps the key's fence.
  std::vector<HeldKey> claim(Connection& db, std::int64_t count,
                             const std::vector<std::string>& candidates) const {
    return held(db.exec("UPDATE " + leases_ +
                            " AS l SET owner = $1, fence = l.fence + 1, expires_at = now() + "
                            "$2::interval FROM (SELECT key FROM " +
                            leases_ +
                            " WHERE (owner IS NULL OR expires_at <= now()) AND key = "
                            "ANY($4::text[]) LIMIT $3 FOR UPDATE SKIP LOCKED) AS c WHERE l.key = "
                            "c.key RETURNING l.key, l.fence",
                        {instance_, lease_, std::to_string(count), text_array(candidates)}));
  }

  /// Gives up `keys` (only those this instance owns): they are claimable at once.
  void release(Connection& db, const std::vector<std::string>& keys) const {
    db.exec("UPDATE " + leases_ +
                " SET owner = NULL, expires_at = now() WHERE owner = $1 AND key = ANY($2::text[])",
            {instance_, text_array(keys)});
  }

  /// Gives up every lease of this instance and leaves the membership.
  void release_all(Connection& db) const {
    db.exec("UPDATE " + leases_ + " SET owner = NULL, expires_at = now() WHERE owner = $1",
            {instance_});
    db.exec("DELETE FROM " + members_ + " WHERE instance = $1", {instance_});
  }

 private:
  static std::vector<HeldKey> held(const Result& result) {
    std::vector<HeldKey> keys;
    keys.reserve(static_cast<std::size_t>(result.rows()));
    for (int row = 0; row < result.rows(); ++row) {
      keys.emplace_back(result.text(row, 0), result.integer(row, 1));
    }
    return keys;
  }

  std::string leases_;
  std::string members_;
  std::string instance_;
  std::string lease_;
};

}  // namespace supervisor::postgres::detail
