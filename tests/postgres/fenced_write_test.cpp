// fenced_write and the claim against each other, in one process and a real server: a write in
// flight holds its lease row, so a claim skips the key instead of changing the fence under it
// (and never waits for it); once the write is done, the claim bumps the fence and the old lease's
// writes are rejected. The write is held in the middle by an advisory lock the test owns, and the
// test waits for the server to say so (pg_stat_activity): no timing is assumed. Also: a LeaseTable
// whose user table fails still yields (and so still prunes) by its leases' deadlines.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../catch_shim.hpp"
#include "fixture.hpp"
#include "supervisor/postgres/detail/lease_store.hpp"
#include "supervisor/postgres/lease_table.hpp"
#include "supervisor/postgres/leased.hpp"

namespace {

namespace pg = supervisor::postgres;
using namespace std::chrono_literals;

std::int64_t count(pg::Connection& db, const std::string& sql) {
  return db.exec(sql).integer(0, 0);
}

// Polls `sql` until it counts `expected`, for up to 30 s.
void wait_for_count(pg::Connection& db, const std::string& sql, std::int64_t expected) {
  const auto start = std::chrono::steady_clock::now();
  while (count(db, sql) != expected) {
    REQUIRE(std::chrono::steady_clock::now() - start < 30s);
    std::this_thread::sleep_for(10ms);  // NOLINT-sleep: polling a real server
  }
}

}  // namespace

TEST_CASE("postgres fenced write: a claim skips a key whose write is in flight", "[postgres]") {
  const std::string conninfo = pgtest::server->conninfo();
  pg::Connection admin(conninfo);
  admin.exec("DROP TABLE IF EXISTS fw_leases, fw_members, fw_log");
  admin.exec("CREATE TABLE fw_log (fence bigint)");
  pg::LeaseOptions options;
  options.conninfo = conninfo;
  options.lease_table = "fw_leases";
  options.members_table = "fw_members";
  options.instance = "first";
  options.lease = 1ms;  // expired at once: claimable by anyone but for the write in flight
  const pg::detail::LeaseStore first(options);
  options.instance = "second";
  options.lease = 60s;
  const pg::detail::LeaseStore second(options);

  pg::Connection db(conninfo);
  first.create_schema(db);
  first.add_keys(db, {"k"});
  const auto claimed = first.claim(db, 1, {"k"});
  REQUIRE(claimed.size() == 1);
  const pg::Lease lease{"k", claimed[0].second, "fw_leases"};
  wait_for_count(db, "SELECT count(*) FROM fw_leases WHERE expires_at > now()", 0);

  // The write passes its fence check, then waits for the advisory lock 42, which we hold.
  admin.exec("SELECT pg_advisory_lock(42)");
  std::optional<bool> accepted;
  std::exception_ptr error;
  std::thread writer([&] {
    try {
      pg::Connection connection(conninfo);
      accepted = pg::fenced_write(
          connection, lease,
          "INSERT INTO fw_log SELECT $1::bigint FROM (SELECT pg_advisory_xact_lock(42)) AS l",
          {std::to_string(lease.fence)});
    } catch (...) {
      error = std::current_exception();
    }
  });
  wait_for_count(admin,
                 "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                 "wait_event = 'advisory'",
                 1);
  std::vector<pg::detail::HeldKey> stolen;
  std::exception_ptr claim_error;
  try {
    stolen = second.claim(db, 1, {"k"});  // must neither wait nor take the key
  } catch (...) {
    claim_error = std::current_exception();
  }
  admin.exec("SELECT pg_advisory_unlock(42)");
  writer.join();
  REQUIRE_FALSE(error);
  REQUIRE_FALSE(claim_error);
  CHECK(stolen.empty());
  CHECK(accepted == std::optional<bool>(true));

  // The write is done: the claim goes through, with a new fence, and the old lease is dead.
  const auto later = second.claim(db, 1, {"k"});
  REQUIRE(later.size() == 1);
  CHECK(later[0].second == lease.fence + 1);
  CHECK_FALSE(pg::fenced_write(db, lease, "INSERT INTO fw_log VALUES (0)"));
  CHECK(count(admin, "SELECT count(*) FROM fw_log") == 1);
}

namespace {

// A user table that can be made to fail.
struct Flaky {
  std::shared_ptr<std::atomic<bool>> failing = std::make_shared<std::atomic<bool>>(false);
  supervisor::MapTable<std::string, int> rows{{"a", 1}, {"b", 2}};
  [[nodiscard]] std::optional<int> get(const std::string& key) const { return rows.get(key); }
  [[nodiscard]] auto iterate() const {
    if (*failing) {
      throw std::runtime_error("the user's table is down");
    }
    return rows.iterate();
  }
};

// Drains a pass: the keys it yields, and whether close() threw.
std::pair<std::vector<std::string>, bool> drain(pg::LeaseTable<Flaky, int>& table) {
  auto cursor = table.iterate();
  std::vector<std::string> keys;
  while (cursor.next()) {
    keys.push_back(cursor.get().first);
  }
  try {
    cursor.close();
  } catch (const std::runtime_error&) {
    return {keys, true};
  }
  return {keys, false};
}

}  // namespace

TEST_CASE("postgres table failure: the held keys stay until their deadline, then go",
          "[postgres]") {
  pg::Connection admin(pgtest::server->conninfo());
  admin.exec("DROP TABLE IF EXISTS tf_leases, tf_members");
  pg::LeaseOptions options;
  options.conninfo = pgtest::server->conninfo();
  options.lease_table = "tf_leases";
  options.members_table = "tf_members";
  options.instance = "solo";
  options.lease = 1500ms;
  options.safety_margin = 500ms;
  auto user = std::make_shared<Flaky>();
  pg::LeaseTable<Flaky, int> table(user, options);
  const auto [held, held_failed] = drain(table);
  CHECK(held.size() == 2);
  CHECK_FALSE(held_failed);

  // The user's table fails: iterate does not throw (a throwing pass would prune nothing); the
  // pass reports the failure through close() and yields the keys still within their deadline.
  *user->failing = true;
  const auto [during, during_failed] = drain(table);
  CHECK(during_failed);
  CHECK(during.size() == 2);

  // No renewal while the table cannot be read: the keys go at their deadline (lease - margin).
  const auto start = std::chrono::steady_clock::now();
  while (!drain(table).first.empty()) {
    REQUIRE(std::chrono::steady_clock::now() - start < 30s);
    std::this_thread::sleep_for(50ms);  // NOLINT-sleep: polling a real server
  }
  *user->failing = false;
  CHECK(drain(table).first.size() == 2);
}
