// The PostgreSQL lease adapter against a real server (pg_server.hpp), with instances as separate
// OS processes (lease_instance.cpp): balance over 1,000 rows with a join and a leave, failover
// after SIGKILL, a SIGSTOP past the lease, and a server restart mid-run. An independent record,
// the `audit` table written only through fenced writes, is checked after each: no (key, fence)
// has two writers, and no key's fence ever goes back (a stale owner's write was accepted).
//
// Timing is real (the server keeps real time): short leases, and every wait is for a condition,
// with a generous deadline. Exit code 77 (CTest: skipped) when no server can be started.

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fixture.hpp"
#include "supervisor/postgres/connection.hpp"

#if defined(SUPERVISOR_CATCH2_V2)
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#else
#include <catch2/catch_session.hpp>
#include <catch2/catch_test_macros.hpp>
#endif

namespace {

namespace pg = supervisor::postgres;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using pgtest::server;
using pgtest::status_dir;

constexpr int lease_ms = 2000;
constexpr int margin_ms = 600;
constexpr int pass_ms = 300;

struct Params {
  int rows;
  int tick_ms;
  int lease_ms = ::lease_ms;
  int margin_ms = ::margin_ms;
};

// One lease_instance process.
class Instance {
 public:
  Instance(std::string name, const Params& params) : name_(std::move(name)) {
    const std::vector<std::string> argv = {SUPERVISOR_LEASE_INSTANCE,
                                           server->conninfo(),
                                           name_,
                                           std::to_string(params.rows),
                                           std::to_string(params.lease_ms),
                                           std::to_string(params.margin_ms),
                                           std::to_string(pass_ms),
                                           std::to_string(params.tick_ms),
                                           status_dir};
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> args;
      for (const auto& arg : argv) {
        args.push_back(const_cast<char*>(arg.c_str()));  // NOLINT: execv's signature
      }
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;
  ~Instance() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      kill(pid_, SIGCONT);
      (void)wait();
    }
  }

  void signal(int signal) const { kill(pid_, signal); }
  // Waits for the process to exit; returns its exit code (-1: killed by a signal).
  int wait() {
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0) {
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  [[nodiscard]] bool alive() const { return waitpid(pid_, nullptr, WNOHANG) == 0; }
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  std::string name_;
  pid_t pid_ = -1;
};

std::string names(const std::vector<const Instance*>& instances) {
  std::string out = "{";
  for (const auto* instance : instances) {
    out += (out.size() > 1 ? "," : "") + instance->name();
  }
  return out + "}";
}

// A fresh schema for each scenario: the lease adapter creates its own tables.
pg::Connection fresh_database() {
  pg::Connection db(server->conninfo());
  db.exec("DROP TABLE IF EXISTS audit, status, supervisor_leases, supervisor_members");
  db.exec(
      "CREATE TABLE audit (id bigserial PRIMARY KEY, key text NOT NULL, fence bigint NOT "
      "NULL, instance text NOT NULL, kind text NOT NULL, at timestamptz DEFAULT "
      "clock_timestamp())");
  db.exec(
      "CREATE TABLE status (instance text PRIMARY KEY, running text[] NOT NULL, passes "
      "bigint, accepted bigint, rejected bigint, errors bigint, updated timestamptz)");
  db.exec(
      "CREATE TABLE IF NOT EXISTS supervisor_leases (key text PRIMARY KEY, owner text, "
      "expires_at timestamptz NOT NULL DEFAULT '-infinity', fence bigint NOT NULL DEFAULT 0)");
  return db;
}

std::int64_t scalar(pg::Connection& db, const std::string& sql,
                    const std::vector<std::string>& parameters = {}) {
  return db.exec(sql, parameters).integer(0, 0);
}

// Whether `instances` together run every row exactly once, each only keys it holds a live lease
// on, none more than its fair share, as their status rows say since `since` (server time).
bool steady(pg::Connection& db, const std::vector<const Instance*>& instances, int rows,
            const std::string& since) {
  try {
    const std::string set = names(instances);
    const auto live = static_cast<std::int64_t>(instances.size());
    const std::int64_t share = (rows + live - 1) / live;
    const auto fresh = scalar(
        db, "SELECT count(*) FROM status WHERE instance = ANY($1) AND updated > $2", {set, since});
    const auto distinct = scalar(db,
                                 "SELECT count(DISTINCT k) FROM status, unnest(running) k WHERE "
                                 "instance = ANY($1)",
                                 {set});
    const auto total = scalar(db,
                              "SELECT coalesce(sum(cardinality(running)), 0) FROM status WHERE "
                              "instance = ANY($1)",
                              {set});
    const auto unowned = scalar(db,
                                "SELECT count(*) FROM status s, unnest(s.running) k WHERE "
                                "s.instance = ANY($1) AND NOT EXISTS (SELECT 1 FROM "
                                "supervisor_leases l WHERE l.key = k AND l.owner = s.instance)",
                                {set});
    const auto over = scalar(db,
                             "SELECT count(*) FROM status WHERE instance = ANY($1) AND "
                             "cardinality(running) > $2",
                             {set, std::to_string(share)});
    return fresh == live && distinct == rows && total == rows && unowned == 0 && over == 0;
  } catch (const pg::Error&) {
    return false;  // the server may be restarting: not steady yet
  }
}

// Polls (real time: a real server keeps it) until `done()` holds, at a 50 ms pace; the test
// fails past `deadline`. Returns how long it took. The condition decides, never the pace.
template <class Done>
std::chrono::milliseconds poll_until(Done done, std::chrono::seconds deadline = 60s) {
  const auto start = Clock::now();
  while (!done()) {
    REQUIRE(Clock::now() - start < deadline);
    std::this_thread::sleep_for(50ms);  // NOLINT-sleep: the pace of polling a real server
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

std::string server_now(pg::Connection& db) { return db.exec("SELECT now()").text(0, 0); }

// Waits until `instances` are steady; returns how long that took.
std::chrono::milliseconds wait_steady(pg::Connection& db,
                                      const std::vector<const Instance*>& instances, int rows,
                                      std::chrono::seconds deadline = 90s) {
  const std::string since = server_now(db);
  return poll_until([&] { return steady(db, instances, rows, since); }, deadline);
}

// The audit's invariants: one writer per (key, fence); per key, fences never go back in the order
// the writes were made (ids); every lease row's current holder wrote 'start' under that lease.
void check_audit(pg::Connection& db) {
  CHECK(scalar(db, "SELECT count(*) FROM audit") > 0);
  CHECK(scalar(db,
               "SELECT count(*) FROM (SELECT key, fence FROM audit GROUP BY key, fence HAVING "
               "count(DISTINCT instance) > 1) x") == 0);
  CHECK(scalar(db,
               "SELECT count(*) FROM (SELECT fence < max(fence) OVER (PARTITION BY key ORDER BY "
               "id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS stale FROM audit) x "
               "WHERE stale") == 0);
}

std::int64_t status_of(pg::Connection& db, const Instance& instance, const std::string& column) {
  return scalar(db, "SELECT " + column + " FROM status WHERE instance = $1", {instance.name()});
}

// The number of processes `instance` runs, from its status file (-1: none yet).
int running_file(const Instance& instance) {
  std::ifstream in(status_dir + "/" + instance.name());
  int running = -1;
  in >> running;
  return running;
}

void report(const std::string& what, std::chrono::milliseconds took) {
  std::cout << what << ": " << took.count() << " ms (lease " << lease_ms << " ms, pass " << pass_ms
            << " ms)\n";
}

}  // namespace

TEST_CASE("postgres balance: 1,000 rows over 3 instances, a join and a leave", "[postgres]") {
  auto db = fresh_database();
  const Params params{1000, 0};
  Instance a("a", params);
  Instance b("b", params);
  Instance c("c", params);
  report("three instances steady", wait_steady(db, {&a, &b, &c}, params.rows));
  CHECK(scalar(db, "SELECT count(*) FROM supervisor_leases WHERE owner IS NOT NULL") == 1000);

  // A join: the shares go from 334 to 250.
  const auto passes_before = status_of(db, a, "passes");
  Instance d("d", params);
  report("after a join, steady", wait_steady(db, {&a, &b, &c, &d}, params.rows));
  std::cout << "passes of instance a until the join was balanced: "
            << status_of(db, a, "passes") - passes_before << '\n';

  // A graceful leave: its leases are released at once.
  b.signal(SIGTERM);
  CHECK(b.wait() == 0);
  CHECK(scalar(db, "SELECT count(*) FROM supervisor_leases WHERE owner = 'b'") == 0);
  report("after a leave, steady", wait_steady(db, {&a, &c, &d}, params.rows));

  // Every key's current holder wrote 'start' under its current lease (a process is listed from
  // the moment it starts, its 'start' write follows: wait for it).
  (void)poll_until(
      [&] {
        return scalar(db,
                      "SELECT count(*) FROM supervisor_leases l WHERE NOT EXISTS (SELECT 1 FROM "
                      "audit a WHERE a.key = l.key AND a.fence = l.fence AND a.instance = l.owner "
                      "AND a.kind = 'start')") == 0;
      },
      30s);
  for (Instance* instance : {&a, &c, &d}) {
    instance->signal(SIGTERM);
    CHECK(instance->wait() == 0);
  }
  CHECK(scalar(db, "SELECT count(*) FROM supervisor_leases WHERE owner IS NOT NULL") == 0);
  check_audit(db);
}

TEST_CASE("postgres failover: the keys of a SIGKILLed instance run elsewhere", "[postgres]") {
  auto db = fresh_database();
  const Params params{60, 200};
  Instance a("a", params);
  Instance b("b", params);
  Instance c("c", params);
  wait_steady(db, {&a, &b, &c}, params.rows);
  b.signal(SIGKILL);
  CHECK(b.wait() == -1);
  const auto took = wait_steady(db, {&a, &c}, params.rows);
  report("failover after SIGKILL", took);
  // Lease + one pass is the target; the deadline allows for a loaded machine.
  if (took > std::chrono::milliseconds(lease_ms + pass_ms + 1000)) {
    WARN("failover took longer than lease + one pass + 1 s: " << took.count() << " ms");
  }
  check_audit(db);
}

TEST_CASE("postgres pause: an instance SIGSTOPped past its lease is fenced off", "[postgres]") {
  auto db = fresh_database();
  const Params params{60, 200};
  Instance a("a", params);
  Instance b("b", params);
  Instance c("c", params);
  wait_steady(db, {&a, &b, &c}, params.rows);
  const auto held = scalar(db, "SELECT count(*) FROM supervisor_leases WHERE owner = 'b'");
  REQUIRE(held > 0);
  // (Writes may have been rejected already: a key released while balancing can be claimed by
  // another instance before its old process's 'stop' write. Count from here.)
  const auto rejected_before = status_of(db, b, "rejected");

  b.signal(SIGSTOP);
  // The others take b's keys once its leases expire (b's status row is stale meanwhile).
  report("keys of the paused instance taken over", wait_steady(db, {&a, &c}, params.rows));
  b.signal(SIGCONT);

  // Resumed, b writes under its old leases (ticks, and the 'stop' of each process it stops):
  // all rejected; it stops those processes and later claims a share again under new fences.
  report("all three steady after the resume", wait_steady(db, {&a, &b, &c}, params.rows));
  (void)poll_until([&] { return status_of(db, b, "rejected") >= rejected_before + held; });
  CHECK(b.alive());
  check_audit(db);
}

TEST_CASE("postgres restart: the server restarts mid-run", "[postgres]") {
  auto db = fresh_database();
  const Params params{60, 200};
  Instance a("a", params);
  Instance b("b", params);
  Instance c("c", params);
  wait_steady(db, {&a, &b, &c}, params.rows);
  server->restart();
  pg::Connection after(server->conninfo());
  // Each instance's lease passes reach the database again (reconnected), then all are steady.
  std::vector<std::int64_t> passes;
  for (const Instance* instance : {&a, &b, &c}) {
    passes.push_back(status_of(after, *instance, "passes"));
  }
  for (std::size_t i = 0; const Instance* instance : {&a, &b, &c}) {
    (void)poll_until([&] { return status_of(after, *instance, "passes") >= passes[i] + 3; });
    ++i;
  }
  report("steady again after the server restart", wait_steady(after, {&a, &b, &c}, params.rows));
  for (const Instance* instance : {&a, &b, &c}) {
    CHECK(instance->alive());
    CHECK(status_of(after, *instance, "errors") > 0);  // the outage was seen and reported
  }
  check_audit(after);
}

TEST_CASE("postgres outage: the server is down past the lease", "[postgres]") {
  auto db = fresh_database();
  const Params params{60, 200};
  Instance a("a", params);
  Instance b("b", params);
  Instance c("c", params);
  wait_steady(db, {&a, &b, &c}, params.rows);
  server->stop();
  // No renewal can succeed: each instance stops every process once its leases are past their
  // safety deadline (lease - margin after the last renewal), before anyone could claim them.
  report("every process stopped during the outage",
         poll_until([&] { return running_file(a) + running_file(b) + running_file(c) == 0; }));
  server->start_again();
  pg::Connection after(server->conninfo());
  report("steady again after the outage", wait_steady(after, {&a, &b, &c}, params.rows));
  for (const Instance* instance : {&a, &b, &c}) {
    CHECK(instance->alive());
  }
  check_audit(after);
}

TEST_CASE("postgres revoked: a lease taken away in the database stops its process", "[postgres]") {
  auto db = fresh_database();
  // A long lease (60 s): only the renewal's answer can stop the process within the deadline.
  const Params params{30, 0, 60000, 1000};
  Instance a("a", params);
  wait_steady(db, {&a}, params.rows);
  // An operator (or a peer with a skewed clock) takes k0000 before a's deadline: a's next renewal
  // does not return it, and a stops its process at once.
  db.exec(
      "UPDATE supervisor_leases SET owner = 'intruder', fence = fence + 1, expires_at = now() + "
      "interval '1 hour' WHERE key = 'k0000'");
  report("a revoked lease stopped its process",
         poll_until(
             [&] {
               return scalar(db,
                             "SELECT count(*) FROM status WHERE instance = 'a' AND 'k0000' = "
                             "ANY(running)") == 0;
             },
             30s));
  // a's 'stop' write for k0000 is rejected: the intruder's fence is newer.
  CHECK(scalar(db, "SELECT count(*) FROM audit WHERE key = 'k0000' AND kind = 'stop'") == 0);
  check_audit(db);
}

int main(int argc, char** argv) {
  try {
    server.emplace(pgtest::PgServer::start());
  } catch (const pgtest::Unavailable& why) {
    std::cout << "SKIPPED: no PostgreSQL server could be started: " << why.what() << '\n';
    return 77;
  }
  std::string pattern =
      (std::filesystem::temp_directory_path() / "supervisor-status-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    std::cout << "SKIPPED: mkdtemp failed\n";
    return 77;
  }
  status_dir = pattern;
  const int result = Catch::Session().run(argc, argv);
  std::filesystem::remove_all(status_dir);
  server.reset();
  return result;
}
