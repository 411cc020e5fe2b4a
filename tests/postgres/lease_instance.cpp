// lease_instance: one service instance of the PostgreSQL lease tests, run as a separate OS process
// by lease_test.cpp (fork/exec), so that it can be killed, paused and resumed for real.
//
//   lease_instance CONNINFO INSTANCE ROWS LEASE_MS MARGIN_MS PASS_MS TICK_MS STATUS_DIR
//
// It supervises keys k0000..k<ROWS-1> through a LeaseTable (prune on). Each process writes to the
// `audit` table through fenced_write: 'start' when it starts, 'tick' every TICK_MS while it runs
// (0: never), 'stop' when it has been stopped. Every 100 ms the main thread writes this instance's
// `status` row: the keys it runs (Supervisor::keys()), its lease passes, and how many fenced
// writes were accepted and rejected, and how many errors it saw. SIGTERM: graceful stop, then the
// leases are released, exit 0. It also writes the number of processes it runs to
// STATUS_DIR/INSTANCE, a file, so that a test can see it while the database is down. Database
// failures are counted, never fatal.

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "supervisor/postgres/lease_table.hpp"
#include "supervisor/supervisor.hpp"

namespace {

namespace pg = supervisor::postgres;
using namespace std::chrono_literals;

// Connections shared by the processes of this instance (one each would be hundreds).
class Pool {
 public:
  Pool(std::string conninfo, std::size_t size) : conninfo_(std::move(conninfo)), slots_(size) {}

  // Runs a fenced write on one of the connections; nullopt if the database failed.
  std::optional<bool> fenced(const pg::Lease& lease, const std::string& sql,
                             const std::vector<std::string>& parameters) {
    Slot& slot = slots_[std::hash<std::string>{}(lease.key) % slots_.size()];
    const std::lock_guard lock(slot.mutex);
    try {
      if (!slot.db) {
        slot.db.emplace(conninfo_, 2000);
      }
      return pg::fenced_write(*slot.db, lease, sql, parameters);
    } catch (const pg::Error&) {
      slot.db.reset();
      return std::nullopt;
    }
  }

 private:
  struct Slot {
    std::mutex mutex;
    std::optional<pg::Connection> db;
  };
  std::string conninfo_;
  std::vector<Slot> slots_;
};

struct Context {
  Context(std::string name, const std::string& conninfo)
      : instance(std::move(name)), pool(conninfo, 4) {}
  std::string instance;
  Pool pool;
  std::atomic<std::int64_t> accepted{0};
  std::atomic<std::int64_t> rejected{0};
  std::atomic<std::int64_t> errors{0};
  std::mutex mutex;
  std::unordered_map<std::string, pg::Lease> running;  // what the ticker writes for

  void audit(const pg::Lease& lease, const char* kind) {
    const auto result =
        pool.fenced(lease, "INSERT INTO audit (key, fence, instance, kind) VALUES ($1, $2, $3, $4)",
                    {lease.key, std::to_string(lease.fence), instance, kind});
    if (!result) {
      ++errors;
    } else if (*result) {
      ++accepted;
    } else {
      ++rejected;
    }
  }
};

// The user's runnable: it learns its lease through run's third parameter.
struct Job {
  Context* context;
  void run(const std::stop_token& /*force*/, supervisor::Ready& ready, const pg::Lease& lease) {
    context->audit(lease, "start");
    {
      const std::lock_guard lock(context->mutex);
      context->running.insert_or_assign(lease.key, lease);
    }
    ready();
    {
      const std::lock_guard lock(context->mutex);
      context->running.erase(lease.key);
    }
    context->audit(lease, "stop");
  }
};

using Table = supervisor::MapTable<std::string, Job>;
using Leases = pg::LeaseTable<Table, Job>;
using Supervisor = supervisor::Supervisor<std::string, pg::Leased<Job>>;

std::string text_array(const std::vector<std::string>& keys) {
  std::string out = "{";
  for (const auto& key : keys) {
    out += (out.size() > 1 ? "," : "") + key;
  }
  return out + "}";
}

void write_status(std::optional<pg::Connection>& db, const std::string& conninfo, Context& context,
                  Supervisor& sup, const Leases& leases) {
  try {
    if (!db) {
      db.emplace(conninfo, 2000);
    }
    const auto stats = leases.stats();
    db->exec(
        "INSERT INTO status (instance, running, passes, accepted, rejected, errors, "
        "updated) VALUES ($1, $2, $3, $4, $5, $6, now()) ON CONFLICT (instance) DO UPDATE "
        "SET running = $2, passes = $3, accepted = $4, rejected = $5, errors = $6, "
        "updated = now()",
        {context.instance, text_array(sup.keys()), std::to_string(stats.passes),
         std::to_string(context.accepted.load()), std::to_string(context.rejected.load()),
         std::to_string(context.errors.load())});
  } catch (const pg::Error&) {
    db.reset();
    ++context.errors;
  }
}

// Replaces `path` with `running` (write, then rename: a reader never sees half a file).
void write_file(const std::filesystem::path& path, std::size_t running) {
  const auto temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary);
    out << running << '\n';
  }
  std::error_code ignored;
  std::filesystem::rename(temporary, path, ignored);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 9) {
    std::cerr << "usage: lease_instance CONNINFO INSTANCE ROWS LEASE_MS MARGIN_MS PASS_MS "
                 "TICK_MS STATUS_DIR\n";
    return 2;
  }
  const std::string conninfo = argv[1];
  const int rows = std::atoi(argv[3]);
  const std::chrono::milliseconds lease(std::atoi(argv[4]));
  const std::chrono::milliseconds margin(std::atoi(argv[5]));
  const std::chrono::milliseconds pass(std::atoi(argv[6]));
  const std::chrono::milliseconds tick(std::atoi(argv[7]));
  const std::filesystem::path status_file = std::filesystem::path(argv[8]) / argv[2];

  // SIGTERM and SIGINT are taken by sigwait on a thread of our own (blocked everywhere else).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::stop_source stop;
  std::thread([&signals, &stop] {
    int signal = 0;
    sigwait(&signals, &signal);
    stop.request_stop();
  }).detach();

  Context context(argv[2], conninfo);
  auto table = std::make_shared<Table>();
  for (int i = 0; i < rows; ++i) {
    char key[16];
    std::snprintf(key, sizeof key, "k%04d", i);  // NOLINT: fixed format
    table->insert_or_assign(key, Job{&context});
  }
  pg::LeaseOptions lease_options;
  lease_options.conninfo = conninfo;
  lease_options.instance = context.instance;
  lease_options.lease = lease;
  lease_options.safety_margin = margin;
  auto leases = std::make_shared<Leases>(table, lease_options);

  supervisor::Options<std::string> options;
  options.prune = true;
  options.restart_interval = pass;
  options.initial_wait = 100ms;
  options.on_error = [&context](const supervisor::ErrorReport<std::string>& report) {
    ++context.errors;
    std::cerr << context.instance << ": " << supervisor::to_string(report.source) << ": "
              << supervisor::describe(report.error) << '\n';
  };
  Supervisor sup(leases, options);

  std::jthread ticker;
  if (tick.count() > 0) {
    ticker = std::jthread([&context, tick](const std::stop_token& token) {
      while (!token.stop_requested()) {
        // The pace of the real-time ticker; correctness never depends on it.
        std::this_thread::sleep_for(tick);  // NOLINT-sleep: pacing only
        std::vector<pg::Lease> running;
        {
          const std::lock_guard lock(context.mutex);
          for (const auto& [key, held] : context.running) {
            running.push_back(held);
          }
        }
        for (const auto& held : running) {
          context.audit(held, "tick");
        }
      }
    });
  }

  std::optional<pg::Connection> status_db;
  sup.run_until(stop.get_token(), 5s, [&](const std::stop_token& stopping) {
    while (!stopping.stop_requested()) {
      write_status(status_db, conninfo, context, sup, *leases);
      write_file(status_file, sup.keys().size());
      std::this_thread::sleep_for(100ms);  // NOLINT-sleep: the status file's pace, not a wait
    }
  });
  if (ticker.joinable()) {
    ticker.request_stop();
    ticker.join();
  }
  try {
    leases->release_all();
  } catch (const pg::Error& error) {
    std::cerr << context.instance << ": release_all: " << error.what() << '\n';
  }
  write_status(status_db, conninfo, context, sup, *leases);
  return 0;
}
