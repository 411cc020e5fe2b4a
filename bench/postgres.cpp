// supervisor_bench_postgres: figures for the PostgreSQL lease adapter against a throwaway local
// server (tests/postgres/pg_server.hpp), reported, never asserted:
//
// - claims per second: one instance's first pass over N rows claims all of them;
// - pass cost with leases vs without: one table pass (iterate + read every row) over N rows held
//   in steady state (heartbeat + renewal of N leases) against the same MapTable without leases;
// - failover after SIGKILL: two instances (forked processes) share 100 rows; one is killed; the
//   time until the survivor holds every lease, against the target lease + one pass.
//
//   supervisor_bench_postgres [--quick]     N = 10,000 (--quick: 2,000 and fewer repetitions)
//
// Exit 77 when no server can be started.

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "pg_server.hpp"
#include "supervisor/postgres/lease_table.hpp"
#include "supervisor/supervisor.hpp"

namespace {

namespace pg = supervisor::postgres;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Idle {  // a runnable that only waits to be stopped
  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) { ready(); }
};
using Table = supervisor::MapTable<std::string, Idle>;
using Leases = pg::LeaseTable<Table, Idle>;

std::shared_ptr<Table> make_table(int rows) {
  auto table = std::make_shared<Table>();
  for (int i = 0; i < rows; ++i) {
    table->insert_or_assign("k" + std::to_string(i), Idle{});
  }
  return table;
}

pg::LeaseOptions lease_options(const std::string& conninfo, const std::string& name,
                               const std::string& prefix) {
  pg::LeaseOptions options;
  options.conninfo = conninfo;
  options.instance = name;
  options.lease_table = prefix + "_leases";
  options.members_table = prefix + "_members";
  options.lease = 2s;
  options.safety_margin = 600ms;
  return options;
}

template <class T>
double pass_ms(T& table) {
  const auto start = Clock::now();
  auto cursor = table.iterate();
  std::size_t rows = 0;
  while (cursor.next()) {
    (void)cursor.get();
    ++rows;
  }
  cursor.close();
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

void claims_and_pass_cost(const std::string& conninfo, int rows, int repetitions) {
  auto table = make_table(rows);
  Leases leases(table, lease_options(conninfo, "solo", "bench"));
  const double first = pass_ms(leases);  // creates the schema, adds the rows, claims them all
  const auto held = leases.stats().held;
  std::printf(
      "claims: %zu keys claimed in the first pass, %.1f ms: %.0f claims/s (including "
      "adding the lease rows)\n",
      held, first, held * 1000.0 / first);
  std::vector<double> with;
  std::vector<double> without;
  for (int i = 0; i < repetitions; ++i) {
    with.push_back(pass_ms(leases));
    without.push_back(pass_ms(*table));
  }
  std::printf("pass cost at %d rows (median of %d): with leases %.2f ms, without %.3f ms\n", rows,
              repetitions, median(with), median(without));
  leases.release_all();
}

// An instance in a forked child: runs until killed.
[[noreturn]] void instance(const std::string& conninfo, const std::string& name) {
  auto leases = std::make_shared<Leases>(make_table(100), lease_options(conninfo, name, "fo"));
  supervisor::Options<std::string> options;
  options.prune = true;
  options.restart_interval = 200ms;
  options.on_error = {};
  supervisor::Supervisor<std::string, pg::Leased<Idle>> sup(leases, options);
  sup.run([](const std::stop_token& stop) {
    while (!stop.stop_requested()) {
      std::this_thread::sleep_for(1s);
    }
  });
  _exit(0);
}

std::int64_t owned_by(pg::Connection& db, const std::string& name) {
  return db.exec("SELECT count(*) FROM fo_leases WHERE owner = $1 AND expires_at > now()", {name})
      .integer(0, 0);
}

void failover(const std::string& conninfo) {
  std::vector<pid_t> children;
  for (const char* name : {"a", "b"}) {
    const pid_t child = fork();
    if (child == 0) {
      instance(conninfo, name);
    }
    children.push_back(child);
  }
  pg::Connection db(conninfo);
  const auto wait_until = [&](auto condition) {
    const auto start = Clock::now();
    while (true) {
      try {
        if (condition()) {
          return Clock::now() - start;
        }
      } catch (const pg::Error&) {  // the tables may not exist yet
      }
      if (Clock::now() - start > 60s) {
        throw std::runtime_error("failover: no steady state within 60 s");
      }
      std::this_thread::sleep_for(10ms);
    }
  };
  wait_until([&] { return owned_by(db, "a") == 50 && owned_by(db, "b") == 50; });
  kill(children[1], SIGKILL);
  waitpid(children[1], nullptr, 0);
  const auto took = wait_until([&] { return owned_by(db, "a") == 100; });
  std::printf("failover after SIGKILL: %.0f ms (target: lease 2000 ms + one pass 200 ms)\n",
              std::chrono::duration<double, std::milli>(took).count());
  kill(children[0], SIGKILL);
  waitpid(children[0], nullptr, 0);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string_view(argv[1]) == "--quick";
  std::optional<pgtest::PgServer> server;
  try {
    server.emplace(pgtest::PgServer::start());
  } catch (const pgtest::Unavailable& why) {
    std::cout << "SKIPPED: no PostgreSQL server could be started: " << why.what() << '\n';
    return 77;
  }
  try {
    failover(server->conninfo());  // first: the children are forked before any thread exists
    claims_and_pass_cost(server->conninfo(), quick ? 2000 : 10000, quick ? 5 : 21);
  } catch (const std::exception& error) {
    std::cerr << "supervisor_bench_postgres: " << error.what() << '\n';
    return 1;
  }
  return 0;
}
