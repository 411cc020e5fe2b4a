// postgres_workers: several instances of one service share a `jobs` table in PostgreSQL; each job
// runs on exactly one instance at a time, and moves to another when its instance dies.
//
//   postgres_workers CONNINFO [NAME]   one instance (NAME defaults to host-pid) until SIGINT or
//                                      SIGTERM; creates and fills `jobs` (12 jobs) if empty.
//                                      Run three in three terminals, kill one (kill -9), and
//                                      watch its jobs start on the others within the lease (3 s).
//   postgres_workers --demo            the same with three instances as child processes, against
//                                      $SUPERVISOR_PG_CONNINFO or a throwaway server (initdb +
//                                      pg_ctl); kills one with SIGKILL, checks that its jobs moved,
//                                      and prints "postgres_workers: done" last. Exit 77 when no
//                                      server can be started (CTest: skipped).
//
// Each job ticks, and every tick is a fenced write: UPDATE jobs ... only while this instance holds
// the job's current lease. A rejected write means the lease was lost (a pause, a partition): the
// job stops at once, without touching the row again.
//
// Linux/POSIX only (signals, fork/exec); the supervisor itself is portable.

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "example_support.hpp"
#include "pg_server.hpp"  // the demo's throwaway server (tests/postgres)
#include "supervisor/postgres/lease_table.hpp"
#include "supervisor/supervisor.hpp"

namespace {

namespace pg = supervisor::postgres;
using example::say;
using namespace std::chrono_literals;

constexpr auto lease_time = 3s;
constexpr auto pass_time = 500ms;

// A job: its key is the row's id. It learns its lease (key + fence) through run's third argument.
struct Job {
  std::string conninfo;
  std::string instance;

  void run(const std::stop_token& force, supervisor::Ready& ready, const pg::Lease& lease) {
    pg::Connection db(conninfo);  // one per job keeps the example simple; a pool in real life
    say(instance, ": job ", lease.key, " started (fence ", lease.fence, ")");
    std::stop_source lost;
    std::jthread ticker([&](const std::stop_token& stop) {
      while (example::wait_for(200ms, stop)) {
        const bool accepted = pg::fenced_write(
            db, lease, "UPDATE jobs SET ticks = ticks + 1, worker = $2, fence = $3 WHERE id = $1",
            {lease.key, instance, std::to_string(lease.fence)});
        if (!accepted) {
          say(instance, ": job ", lease.key, " lost its lease (fence ", lease.fence, "), stopping");
          lost.request_stop();
          return;
        }
      }
    });
    ready(lost.get_token());
    ticker.request_stop();
    ticker.join();
    say(instance, ": job ", lease.key, " stopped", force.stop_requested() ? " (forced)" : "");
  }
};

// The user's table: the rows of `jobs`, read at every pass.
class JobsTable {
 public:
  JobsTable(std::string conninfo, std::string instance)
      : conninfo_(std::move(conninfo)), instance_(std::move(instance)) {}

  std::optional<Job> get(const std::string& /*key*/) const { return Job{conninfo_, instance_}; }

  [[nodiscard]] supervisor::MapTable<std::string, Job>::Cursor iterate() const {
    pg::Connection db(conninfo_);
    const auto result = db.exec("SELECT id FROM jobs ORDER BY id");
    std::vector<std::pair<std::string, Job>> rows;
    rows.reserve(static_cast<std::size_t>(result.rows()));
    for (int row = 0; row < result.rows(); ++row) {
      rows.emplace_back(result.text(row, 0), Job{conninfo_, instance_});
    }
    return supervisor::MapTable<std::string, Job>::Cursor(std::move(rows));
  }

 private:
  std::string conninfo_;
  std::string instance_;
};

void create_jobs(const std::string& conninfo) {
  pg::Connection db(conninfo);
  db.exec(
      "CREATE TABLE IF NOT EXISTS jobs (id text PRIMARY KEY, ticks bigint NOT NULL DEFAULT 0, "
      "worker text, fence bigint)");
  db.exec(
      "INSERT INTO jobs (id) SELECT 'job-' || lpad(i::text, 2, '0') FROM generate_series(1, "
      "12) i ON CONFLICT DO NOTHING");
}

int run_instance(const std::string& conninfo, std::string name) {
  example::SignalStop signals;  // first: before any thread exists
  create_jobs(conninfo);
  pg::LeaseOptions lease_options;
  lease_options.conninfo = conninfo;
  lease_options.instance = std::move(name);
  lease_options.lease = lease_time;
  lease_options.safety_margin = 1s;
  const std::string instance =
      lease_options.instance.empty() ? pg::detail::default_instance() : lease_options.instance;
  lease_options.instance = instance;
  auto leases = std::make_shared<pg::LeaseTable<JobsTable, Job>>(
      std::make_shared<JobsTable>(conninfo, instance), lease_options);

  supervisor::Options<std::string> options;
  options.prune = true;  // a key whose lease is gone has its process stopped by the same pass
  options.restart_interval = pass_time;
  options.on_error = [&](const supervisor::ErrorReport<std::string>& report) {
    say(instance, ": ", supervisor::to_string(report.source),
        " error: ", supervisor::describe(report.error));
  };
  supervisor::Supervisor<std::string, pg::Leased<Job>> sup(leases, options);
  say(instance, ": running (lease ", lease_time.count(), " s)");
  sup.run_until(signals.graceful(), 5s,
                [&](const std::stop_token& stopping) { example::wait_for_stop(stopping); });
  leases->release_all();  // the others take our jobs at their next pass
  say(instance, ": released its leases, bye");
  return 0;
}

// ---- The demo ----------------------------------------------------------------------------------

pid_t spawn(const std::string& conninfo, const std::string& name) {
  const pid_t child = fork();
  if (child == 0) {
    execl("/proc/self/exe", "postgres_workers", conninfo.c_str(), name.c_str(), nullptr);
    _exit(127);
  }
  return child;
}

// Polls `condition` (every 100 ms) for up to `deadline`.
template <class F>
bool eventually(F condition, std::chrono::seconds deadline) {
  const auto start = std::chrono::steady_clock::now();
  while (!condition()) {
    if (std::chrono::steady_clock::now() - start > deadline) {
      return false;
    }
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

int demo() {
  std::optional<pgtest::PgServer> server;
  std::string conninfo;
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read before any thread exists
  if (const char* given = std::getenv("SUPERVISOR_PG_CONNINFO")) {
    conninfo = given;
  } else {
    try {
      server.emplace(pgtest::PgServer::start());
    } catch (const pgtest::Unavailable& why) {
      say("postgres_workers: skipped, no PostgreSQL server could be started: ", why.what());
      return 77;
    }
    conninfo = server->conninfo();
  }
  create_jobs(conninfo);
  pg::Connection db(conninfo);
  const auto count = [&](const std::string& sql) { return db.exec(sql).integer(0, 0); };
  const std::vector<std::string> names = {"alpha", "beta", "gamma"};
  std::vector<pid_t> children;
  children.reserve(names.size());
  for (const auto& name : names) {
    children.push_back(spawn(conninfo, name));
  }
  bool ok = eventually(
      [&] {
        return count("SELECT count(DISTINCT worker) FROM jobs WHERE worker IS NOT NULL") == 3 &&
               count("SELECT count(*) FROM supervisor_leases WHERE owner IS NOT NULL") == 12;
      },
      30s);
  say("postgres_workers: every job runs, on three instances; killing beta (SIGKILL)");
  kill(children[1], SIGKILL);
  waitpid(children[1], nullptr, 0);
  const auto beta_jobs = count("SELECT count(*) FROM supervisor_leases WHERE owner = 'beta'");
  ok = ok && beta_jobs > 0 &&
       eventually(
           [&] {
             return count(
                        "SELECT count(*) FROM supervisor_leases WHERE owner IN ('alpha', 'gamma') "
                        "AND expires_at > now()") == 12 &&
                    count("SELECT count(*) FROM jobs WHERE worker = 'beta'") == 0;
           },
           30s);
  say("postgres_workers: beta's ", beta_jobs,
      " jobs moved to alpha and gamma: ", ok ? "yes" : "NO");
  for (const pid_t child : {children[0], children[2]}) {
    kill(child, SIGTERM);
    int status = 0;
    waitpid(child, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  if (!ok) {
    say("postgres_workers: FAILED");
    return 1;
  }
  say("postgres_workers: done");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "--demo") {
    return demo();
  }
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: postgres_workers CONNINFO [NAME] | postgres_workers --demo\n";
    return 2;
  }
  return run_instance(argv[1], argc == 3 ? argv[2] : "");
}
