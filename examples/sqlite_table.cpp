// sqlite_table: a Table in SQLite. Each row of `jobs` is a job; the table the supervisor sees is
// the rows not done yet.
//
//   sqlite_table DB            runs the pending jobs of the database file DB (created if missing)
//                              until SIGINT or SIGTERM (twice: forced). Add a job while it runs:
//                                sqlite3 DB "INSERT INTO jobs (name, steps) VALUES ('resize', 5)"
//   sqlite_table --demo [DB]   inserts a few jobs into DB (default: a temporary database, removed
//                              at the end), inserts one more while they run, and prints
//                              "sqlite_table: done" last once every job is done
//
// A worker marks its own row done (UPDATE ... SET done = 1) when it has finished. That takes the
// row out of the table's view (it selects WHERE done = 0), so the supervisor never starts it
// again: a process removes itself for good by deleting its own entry, then returning. A row
// inserted at run time is picked up by the next restart pass.
//
// Linux/POSIX only because of the signal handling (sigwait) and mkdtemp; the supervisor itself is
// portable.

#include <pthread.h>
#include <sqlite3.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "example_support.hpp"
#include "supervisor/supervisor.hpp"

namespace {

using example::say;
using example::SignalStop;
using example::wait_for;
using example::wait_for_stop;

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Milliseconds = std::chrono::milliseconds;

// ---- SQLite, the little we need ----------------------------------------------------------------

// sqlite3_close_v2, not sqlite3_close: it waits for statements still open instead of failing.
struct CloseConnection {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct FinalizeStatement {
  void operator()(sqlite3_stmt* statement) const noexcept { sqlite3_finalize(statement); }
};
using Connection = std::unique_ptr<sqlite3, CloseConnection>;
using Statement = std::unique_ptr<sqlite3_stmt, FinalizeStatement>;

[[noreturn]] void fail(sqlite3* db, const std::string& what) {
  throw std::runtime_error(what + ": " + sqlite3_errmsg(db));
}

Statement prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &statement, nullptr) != SQLITE_OK) {
    fail(db, sql);
  }
  return Statement(statement);
}

// Steps a statement that returns no rows (or whose rows we do not need).
void step_to_end(sqlite3* db, sqlite3_stmt* statement, const char* what) {
  int rc = SQLITE_ROW;
  while (rc == SQLITE_ROW) {
    rc = sqlite3_step(statement);
  }
  if (rc != SQLITE_DONE) {
    fail(db, what);
  }
}

// The database file and its one table, `jobs`.
//
// Connections: one per operation, and one per cursor for its whole life. Why not a single
// connection behind a mutex? A cursor keeps a statement open on its connection between the
// supervisor's next() calls, and the supervisor starts processes in between, whose workers write
// to the database: with one connection, the mutex would be held from iterate() to close(), and
// every worker would wait for every pass. With a connection each, no connection is ever used by
// two threads at once (so SQLITE_OPEN_NOMUTEX is enough), WAL mode lets a pass read while
// workers write, and a busy timeout absorbs the short write locks. Opening a connection costs
// tens of microseconds: nothing next to a job.
class Database {
 public:
  explicit Database(std::string path) : path_(std::move(path)) {}

  [[nodiscard]] Connection open() const {
    sqlite3* raw = nullptr;
    const int rc =
        sqlite3_open_v2(path_.c_str(), &raw,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    Connection db(raw);  // Even a failed open gives a handle to close.
    if (rc != SQLITE_OK) {
      throw std::runtime_error(path_ + ": " + (raw != nullptr ? sqlite3_errmsg(raw) : "no memory"));
    }
    sqlite3_busy_timeout(db.get(), 5000);
    return db;
  }

  void create_schema() const {
    const auto db = open();
    // WAL is a property of the file: set once, it stays for every later connection.
    for (const char* sql : {"PRAGMA journal_mode = WAL",
                            "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, name TEXT "
                            "NOT NULL, steps INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0)"}) {
      const auto statement = prepare(db.get(), sql);
      step_to_end(db.get(), statement.get(), sql);
    }
  }

  std::int64_t insert(const std::string& name, int steps) const {
    const auto db = open();
    const auto statement = prepare(db.get(), "INSERT INTO jobs (name, steps) VALUES (?1, ?2)");
    sqlite3_bind_text(statement.get(), 1, name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(statement.get(), 2, steps);
    step_to_end(db.get(), statement.get(), "inserting a job");
    return sqlite3_last_insert_rowid(db.get());
  }

  [[nodiscard]] bool pending(std::int64_t id) const {
    const auto db = open();
    const auto statement = prepare(db.get(), "SELECT 1 FROM jobs WHERE id = ?1 AND done = 0");
    sqlite3_bind_int64(statement.get(), 1, id);
    const int rc = sqlite3_step(statement.get());
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      fail(db.get(), "reading a job");
    }
    return rc == SQLITE_ROW;
  }

  void mark_done(std::int64_t id) const {
    const auto db = open();
    const auto statement = prepare(db.get(), "UPDATE jobs SET done = 1 WHERE id = ?1");
    sqlite3_bind_int64(statement.get(), 1, id);
    step_to_end(db.get(), statement.get(), "marking a job done");
  }

  // The number of jobs with `done` = `done`.
  [[nodiscard]] int count(bool done) const {
    const auto db = open();
    const auto statement = prepare(db.get(), "SELECT count(*) FROM jobs WHERE done = ?1");
    sqlite3_bind_int(statement.get(), 1, done ? 1 : 0);
    if (sqlite3_step(statement.get()) != SQLITE_ROW) {
      fail(db.get(), "counting jobs");
    }
    return sqlite3_column_int(statement.get(), 0);
  }

 private:
  std::string path_;
};

using DatabasePtr = std::shared_ptr<const Database>;

// ---- The worker --------------------------------------------------------------------------------

// A job as the table hands it out. A plain copyable value with a run() member is a Runnable, no
// shared_ptr needed: each process runs its own copy.
class Job {
 public:
  Job(DatabasePtr db, std::int64_t id, std::string name, int steps, Milliseconds step)
      : db_(std::move(db)), id_(id), name_(std::move(name)), steps_(steps), step_(step) {}

  // Loop-style work, so supervisor::leaf gives it the Runnable shape (see composition.cpp); the
  // stop_source is made per run because a restarted job must start afresh.
  void run(const std::stop_token& force, supervisor::Ready& ready) {
    std::stop_source quit;
    auto loop = supervisor::leaf([&] { work(quit.get_token()); }, [&] { quit.request_stop(); });
    loop.run(force, ready);
  }

 private:
  void work(const std::stop_token& quit) {
    // The row this job was made from may be stale: a pass can read it just before the previous
    // run marks it done, and start us once that run has returned. Check, or it runs twice.
    if (!db_->pending(id_)) {
      return;
    }
    const std::string label = "job " + std::to_string(id_) + " (" + name_ + ")";
    say(label, ": started, ", steps_, " steps");
    for (int step = 1; step <= steps_; ++step) {
      if (!wait_for(step_, quit)) {
        say(label, ": stopped at step ", step, " of ", steps_, ", starts over next time");
        return;
      }
      say(label, ": step ", step, " of ", steps_);
    }
    // Done: take our row out of the table's view, then return. In the other order, the next
    // restart pass would start us again.
    db_->mark_done(id_);
    say(label, ": done, row marked done");
  }

  DatabasePtr db_;
  std::int64_t id_;
  std::string name_;
  int steps_;
  Milliseconds step_;
};

// ---- The table ---------------------------------------------------------------------------------

// A job from the columns (name, steps) of `statement`, starting at `column`. Throws for a row
// that does not make sense: through a cursor, the supervisor reports it and skips it.
Job job_from_row(const DatabasePtr& db, std::int64_t id, sqlite3_stmt* statement, int column,
                 Milliseconds step) {
  const unsigned char* name = sqlite3_column_text(statement, column);
  if (name == nullptr || sqlite3_column_type(statement, column + 1) != SQLITE_INTEGER ||
      sqlite3_column_int(statement, column + 1) < 0) {
    throw std::runtime_error("job " + std::to_string(id) +
                             " is malformed: it needs a name and a whole number of steps");
  }
  return {db, id, reinterpret_cast<const char*>(name), sqlite3_column_int(statement, column + 1),
          step};
}

// The supervisor's Table: the pending rows of `jobs`, keyed by id.
class JobTable {
 public:
  JobTable(DatabasePtr db, Milliseconds step) : db_(std::move(db)), step_(step) {}

  // A prepared SELECT of one row. Empty if it is absent or done; throws on a database error.
  [[nodiscard]] std::optional<Job> get(const std::int64_t& id) const {
    const auto db = db_->open();
    const auto statement =
        prepare(db.get(), "SELECT name, steps FROM jobs WHERE id = ?1 AND done = 0");
    sqlite3_bind_int64(statement.get(), 1, id);
    const int rc = sqlite3_step(statement.get());
    if (rc == SQLITE_DONE) {
      return std::nullopt;
    }
    if (rc != SQLITE_ROW) {
      fail(db.get(), "reading job " + std::to_string(id));
    }
    return job_from_row(db_, id, statement.get(), 0, step_);
  }

  // A real database cursor: sqlite3_step in next(), column reads in get(), finalize in close().
  class Cursor {
   public:
    Cursor(DatabasePtr db, Milliseconds step)
        : db_(std::move(db)),
          step_(step),
          connection_(db_->open()),
          statement_(prepare(connection_.get(),
                             "SELECT id, name, steps FROM jobs WHERE done = 0 ORDER BY id")) {}

    // A throw here (the database failed mid-iteration) ends the pass; the supervisor reports it.
    bool next() {
      const int rc = sqlite3_step(statement_.get());
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        fail(connection_.get(), "listing jobs");
      }
      return rc == SQLITE_ROW;
    }

    [[nodiscard]] std::pair<std::int64_t, Job> get() const {
      const std::int64_t id = sqlite3_column_int64(statement_.get(), 0);
      return {id, job_from_row(db_, id, statement_.get(), 1, step_)};
    }

    // The statement first, then its connection.
    void close() {
      statement_.reset();
      connection_.reset();
    }

   private:
    DatabasePtr db_;
    Milliseconds step_;
    Connection connection_;
    Statement statement_;  // After connection_: destroyed first.
  };

  [[nodiscard]] Cursor iterate() const { return {db_, step_}; }

 private:
  DatabasePtr db_;
  Milliseconds step_;
};

// Checked here, where a mistake gives one clear message instead of a page of template errors.
static_assert(supervisor::Runnable<Job>);
static_assert(supervisor::Table<JobTable, std::int64_t, Job>);
using Supervisor = supervisor::Supervisor<std::int64_t, Job>;

supervisor::Options<std::int64_t> make_options(Milliseconds restart_interval) {
  supervisor::Options<std::int64_t> options;
  options.restart_interval = restart_interval;
  options.on_error = [](const supervisor::ErrorReport<std::int64_t>& report) {
    say(supervisor::to_string(report.source), " error",
        report.key != nullptr ? " for job " + std::to_string(*report.key) : std::string(), ": ",
        supervisor::describe(report.error));
  };
  return options;
}

// The demo: a few jobs, one more inserted while they run, and a check that all are done.
int demo(const DatabasePtr& db, const SignalStop& signals) {
  const Milliseconds step = 100ms;
  db->insert("thumbnails", 3);
  db->insert("invoices", 2);
  db->insert("reindex", 5);
  say("sqlite_table: ", db->count(false), " jobs pending");

  Supervisor sup(std::make_shared<JobTable>(db, step), make_options(200ms));
  sup.run(signals.force(), [&] {
    if (!wait_for(300ms, signals.graceful())) {
      return;
    }
    const auto id = db->insert("digest", 2);
    say("sqlite_table: inserted job ", id, " (digest); the next pass starts it");
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (db->count(false) > 0 && std::chrono::steady_clock::now() < give_up) {
      if (!wait_for(50ms, signals.graceful())) {
        return;
      }
    }
  });

  const int done = db->count(true);
  const int pending = db->count(false);
  say("sqlite_table: ", done, " jobs done, ", pending, " pending");
  if (pending != 0 || done < 4) {
    say("sqlite_table: FAILED: not every job is done");
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
  bool demo_mode = false;
  std::optional<std::string> path;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--demo") {
      demo_mode = true;
    } else {
      path = argv[i];
    }
  }
  if (!demo_mode && !path) {
    std::cerr << "usage: sqlite_table DB | sqlite_table --demo [DB]\n";
    return 2;
  }
  SignalStop signals;  // Before any other thread exists.

  try {
    std::optional<fs::path> temp;
    if (!path) {
      // A directory of our own for the database and its -wal and -shm files.
      std::string pattern = (fs::temp_directory_path() / "sqlite_table.XXXXXX").string();
      if (mkdtemp(pattern.data()) == nullptr) {
        throw std::system_error(errno, std::generic_category(), "mkdtemp");
      }
      temp = pattern;
      path = (*temp / "jobs.db").string();
    }
    const auto db = std::make_shared<const Database>(*path);
    db->create_schema();

    int status = EXIT_SUCCESS;
    if (demo_mode) {
      status = demo(db, signals);
    } else {
      Supervisor sup(std::make_shared<JobTable>(db, 1000ms), make_options(2s));
      sup.run(signals.force(), [&] {
        say("sqlite_table: running the pending jobs of ", *path, " until SIGINT or SIGTERM");
        wait_for_stop(signals.graceful());
      });
    }
    if (temp) {
      fs::remove_all(*temp);
    }
    if (status != EXIT_SUCCESS) {
      return status;
    }
  } catch (const std::exception& e) {
    say("sqlite_table: FAILED: ", e.what());
    return EXIT_FAILURE;
  }
  say("sqlite_table: done");
  return EXIT_SUCCESS;
}
