#pragma once

/// \file
/// `Lease`: what a runnable knows of the lease it runs under (its key and fencing token), and
/// `LeaseOptions`, how a `LeaseTable` shares keys with the other instances.
///
/// Model: a lease table (`key`, `owner`, `expires_at`, `fence`) and a members table (`instance`,
/// `heartbeat`) in one PostgreSQL database. An instance owns a key while its lease has not
/// expired; `fence` grows by one every time a key is claimed, so a write made under an old lease
/// is recognisably stale (see `fenced_write`).

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace supervisor::postgres {

/// The lease a runnable runs under: its key, the fencing token it was claimed with, and the
/// lease table that `fenced_write` checks the token against. A plain value, copied into each run.
struct Lease {
  std::string key;
  std::int64_t fence = 0;
  std::string table;
};

/// How a `LeaseTable` holds its leases. Every instance that shares a table must use the same
/// table names and lease duration.
struct LeaseOptions {
  /// A libpq connection string or URI ("host=127.0.0.1 port=5432 dbname=jobs").
  std::string conninfo;
  /// This instance's name in the members and lease tables; unique among live instances. Empty:
  /// "<hostname>-<pid>".
  std::string instance;
  /// Table names (plain lower-case SQL identifiers, checked).
  std::string lease_table = "supervisor_leases";
  std::string members_table = "supervisor_members";
  /// How long a lease lasts from its last renewal, on the server's clock. Renewals happen once
  /// per restart pass, so `Options::restart_interval` must be well under `lease - safety_margin`.
  std::chrono::milliseconds lease = std::chrono::seconds(10);
  /// A key stops being yielded (so `Options::prune` stops its process) once `lease -
  /// safety_margin` has passed, on this host's clock, since the start of its last successful
  /// renewal: before any other instance may claim it.
  std::chrono::milliseconds safety_margin = std::chrono::milliseconds(2500);
  /// Reconnection backoff after a failed pass: doubles from `min` up to `max`.
  std::chrono::milliseconds reconnect_min = std::chrono::milliseconds(100);
  std::chrono::milliseconds reconnect_max = std::chrono::seconds(5);
  /// Create the two tables if they do not exist (CREATE TABLE IF NOT EXISTS).
  bool create_schema = true;
};

namespace detail {

inline void check_identifier(const std::string& name) {
  bool ok = !name.empty() && name.size() < 64 && (name[0] < '0' || name[0] > '9');
  for (const char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  }
  if (!ok) {
    throw std::invalid_argument("supervisor::postgres: not a plain table name: " + name);
  }
}

inline std::string default_instance() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) {
    host[0] = '\0';
  }
  return std::string(host) + "-" + std::to_string(getpid());
}

/// A duration as a PostgreSQL interval literal.
inline std::string interval(std::chrono::milliseconds duration) {
  return std::to_string(duration.count()) + " milliseconds";
}

}  // namespace detail
}  // namespace supervisor::postgres
