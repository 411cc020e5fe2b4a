// directory_table: a Table over a directory, one file per job.
//
//   directory_table DIR            runs the jobs in DIR until SIGINT or SIGTERM (twice: forced).
//                                  Add a job while it runs, written whole then renamed in:
//                                    echo 5 > DIR/.new && mv DIR/.new DIR/my-job
//   directory_table --demo [DIR]   seeds a few jobs and one malformed file into DIR (default: a
//                                  temporary directory, removed at the end), runs twice, and prints
//                                  "directory_table: done" last if every good job completed
//
// A job is a file: its name is the key, its content the number of steps left. The directory is
// the source of truth, so it survives the program: a worker saves its progress after each step
// and deletes its own file when it is done, and a second run picks up whatever was left. A file
// added at run time is picked up by the next restart pass; a malformed one is reported through
// the error hook and skipped, every pass, until someone fixes it.
//
// Linux/POSIX only because of the signal handling (sigwait); the supervisor itself is portable.

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

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

// ---- Job files ---------------------------------------------------------------------------------

// Hidden files are not jobs: that is where writers put a job while they write it.
bool is_job_name(const std::string& name) {
  return !name.empty() && name.front() != '.' && name.find('/') == std::string::npos;
}

// The whole file, or nothing if it does not exist (any more). Throws if it cannot be read.
std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(path, ec) && !ec) {
      return std::nullopt;
    }
    throw std::runtime_error(path.filename().string() + ": cannot be read");
  }
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

// Replaces the file's content. A pass may read the file at any moment, so the content goes into
// a hidden file first and is renamed over the job: a reader sees the old or the new content,
// never half of one (which it would report as a malformed job).
void write_atomically(const fs::path& path, const std::string& content) {
  std::string temp_name = ".";  // Appended, not "." + name: GCC 12 -O3 gives a false -Wrestrict.
  temp_name += path.filename().string();
  temp_name += ".tmp";
  const fs::path temp = path.parent_path() / temp_name;
  std::ofstream out(temp, std::ios::trunc);
  out << content << '\n';
  out.close();
  if (!out) {
    throw std::runtime_error(temp.string() + ": cannot be written");
  }
  fs::rename(temp, path);
}

// The number of steps left in a job file. Throws for anything else.
int parse_steps(const std::string& name, const std::string& text) {
  std::istringstream in(text);
  int steps = -1;
  if (!(in >> steps) || !(in >> std::ws).eof() || steps < 0) {
    const auto shown = text.substr(0, std::min(text.find('\n'), std::size_t{40}));
    throw std::runtime_error("job " + name + " is malformed: \"" + shown +
                             "\" is not a number of steps");
  }
  return steps;
}

// ---- The worker --------------------------------------------------------------------------------

// One job: a loop over its steps. The file, not this object, holds the job's state.
class Job {
 public:
  Job(fs::path file, Milliseconds step) : file_(std::move(file)), step_(step) {}

  // Loop-style code, so supervisor::leaf gives it the Runnable shape: the loop runs on a thread
  // of its own and the process is ready at once; a stop request calls the second function, and
  // when the loop ends by itself the process ends too. The stop_source is made per run: `quit`
  // stays requested once requested, and a restart must start afresh.
  void run(const std::stop_token& force, supervisor::Ready& ready) {
    std::stop_source quit;
    auto loop = supervisor::leaf([&] { work(quit.get_token()); }, [&] { quit.request_stop(); });
    loop.run(force, ready);
  }

 private:
  [[nodiscard]] std::string name() const { return file_.filename().string(); }

  void work(const std::stop_token& quit) {
    // Reload: the row this job was made from may be stale. A pass can read the file just before
    // the previous run deletes it, and start us once that run has returned.
    const auto text = read_file(file_);
    if (!text) {
      return;  // Already done: nothing to do, and a clean return is not an error.
    }
    int left = parse_steps(name(), *text);
    say(name(), ": started with ", left, " steps left");
    while (left > 0) {
      if (!wait_for(step_, quit)) {
        say(name(), ": stopped with ", left, " steps left (saved)");
        return;
      }
      --left;
      if (left > 0) {
        write_atomically(file_, std::to_string(left));  // A later run resumes from here.
        say(name(), ": step done, ", left, " left");
      }
    }
    // Done: delete our own row, then return. In the other order, the next restart pass would
    // start us again.
    fs::remove(file_);
    say(name(), ": finished, file removed");
  }

  fs::path file_;
  Milliseconds step_;
};

using JobPtr = std::shared_ptr<Job>;

// ---- The table ---------------------------------------------------------------------------------

// The supervisor's Table over a directory: `get` reads one file, `iterate` walks the directory.
// Nothing is cached, so it is safe to use from several threads at once, as the supervisor does.
class DirectoryTable {
 public:
  using Row = std::pair<std::string, JobPtr>;

  DirectoryTable(fs::path dir, Milliseconds step) : dir_(std::move(dir)), step_(step) {}

  // Empty if there is no such job; throws if the file cannot be read or is malformed.
  [[nodiscard]] std::optional<JobPtr> get(const std::string& key) const {
    if (!is_job_name(key)) {
      return std::nullopt;
    }
    const auto text = read_file(dir_ / key);
    if (!text) {
      return std::nullopt;
    }
    return make_job(key, *text);
  }

  // A cursor over the directory, one job file per row.
  class Cursor {
   public:
    explicit Cursor(const DirectoryTable& table)
        : table_(&table), it_(table.dir_) {}  // Throws if the directory cannot be listed.

    // Moves to the next job file and reads it. Reading here, not in get(), tells a file that
    // vanished since it was listed (a job that just finished: not a row) from a bad one (a row
    // whose get() throws, so that the supervisor reports it and skips it). A throw from the
    // directory iterator itself ends the pass: the supervisor reports it.
    bool next() {
      if (positioned_) {
        ++it_;
      }
      positioned_ = true;
      for (; it_ != fs::directory_iterator(); ++it_) {
        name_ = it_->path().filename().string();
        std::error_code ec;
        if (!is_job_name(name_) || !it_->is_regular_file(ec)) {
          continue;
        }
        error_ = nullptr;
        try {
          text_ = read_file(it_->path());
        } catch (...) {
          error_ = std::current_exception();
          return true;
        }
        if (text_) {
          return true;
        }
      }
      return false;
    }

    [[nodiscard]] Row get() const {
      if (error_) {
        std::rethrow_exception(error_);
      }
      return {name_, table_->make_job(name_, *text_)};
    }

    void close() { it_ = fs::directory_iterator(); }

   private:
    const DirectoryTable* table_;
    fs::directory_iterator it_;
    bool positioned_ = false;
    std::string name_;
    std::optional<std::string> text_;
    std::exception_ptr error_;
  };

  [[nodiscard]] Cursor iterate() const { return Cursor(*this); }

 private:
  [[nodiscard]] JobPtr make_job(const std::string& name, const std::string& text) const {
    parse_steps(name, text);  // Only to reject a malformed file here, as a bad row.
    return std::make_shared<Job>(dir_ / name, step_);
  }

  fs::path dir_;
  Milliseconds step_;
};

// Checked here, where a mistake gives one clear message instead of a page of template errors.
static_assert(supervisor::Table<DirectoryTable, std::string, JobPtr>);
using Supervisor = supervisor::Supervisor<std::string, JobPtr>;

// Every pass reads every file again, so a malformed one would be reported every interval. Tell
// each distinct error once.
supervisor::Options<std::string> make_options(Milliseconds restart_interval) {
  supervisor::Options<std::string> options;
  options.restart_interval = restart_interval;
  options.on_error = [seen = std::make_shared<std::pair<std::mutex, std::set<std::string>>>()](
                         const supervisor::ErrorReport<std::string>& report) {
    const std::string message = supervisor::describe(report.error);
    {
      const std::lock_guard lock(seen->first);
      if (!seen->second.insert(message).second) {
        return;
      }
    }
    say(supervisor::to_string(report.source), " error",
        report.key != nullptr ? " for " + *report.key : std::string(), ": ", message,
        " (reported once)");
  };
  return options;
}

std::string list_jobs(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (is_job_name(name)) {
      const auto text = read_file(entry.path()).value_or("?");
      names.push_back(name + " (" + text.substr(0, text.find('\n')) + ")");
    }
  }
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& name : names) {
    out += (out.empty() ? "" : ", ") + name;
  }
  return out.empty() ? "nothing" : out;
}

// The demo: jobs in `dir`, a first run cut short, a second run that finishes them.
int demo(const fs::path& dir, const SignalStop& signals) {
  const Milliseconds step = 100ms;
  const auto options = make_options(200ms);
  const std::vector<std::string> good = {"backup", "email", "report", "cleanup"};
  write_atomically(dir / "backup", "6");
  write_atomically(dir / "email", "2");
  write_atomically(dir / "report", "3");
  write_atomically(dir / "broken", "lots");
  say("directory_table: jobs in ", dir.string(), ": ", list_jobs(dir));

  // First run, stopped early as if the program were interrupted: progress stays in the files.
  {
    Supervisor sup(std::make_shared<DirectoryTable>(dir, step), options);
    sup.run(signals.force(), [&] { wait_for(350ms, signals.graceful()); });
  }
  say("directory_table: first run over, left: ", list_jobs(dir));

  // Second run, as if the program were started again: it restores whatever is left, and a job
  // added while it runs is picked up by the next restart pass.
  {
    Supervisor sup(std::make_shared<DirectoryTable>(dir, step), options);
    sup.run(signals.force(), [&] {
      if (!wait_for(250ms, signals.graceful())) {
        return;
      }
      write_atomically(dir / "cleanup", "2");
      say("directory_table: added job cleanup");
      const auto give_up = std::chrono::steady_clock::now() + 10s;
      while (std::any_of(good.begin(), good.end(),
                         [&](const auto& job) { return fs::exists(dir / job); }) &&
             std::chrono::steady_clock::now() < give_up) {
        if (!wait_for(50ms, signals.graceful())) {
          return;
        }
      }
    });
  }
  say("directory_table: second run over, left: ", list_jobs(dir));

  for (const auto& job : good) {
    if (fs::exists(dir / job)) {
      say("directory_table: FAILED: job ", job, " did not complete");
      return EXIT_FAILURE;
    }
  }
  if (!fs::exists(dir / "broken")) {
    say("directory_table: FAILED: the malformed job was removed");
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
  bool demo_mode = false;
  std::optional<fs::path> dir;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--demo") {
      demo_mode = true;
    } else {
      dir = argv[i];
    }
  }
  if (!demo_mode && !dir) {
    std::cerr << "usage: directory_table DIR | directory_table --demo [DIR]\n";
    return 2;
  }
  SignalStop signals;  // Before any other thread exists.

  try {
    if (demo_mode) {
      // Our own temporary directory, unless given one: a fixed name could collide with another run.
      std::optional<fs::path> temp;
      if (!dir) {
        std::string pattern = (fs::temp_directory_path() / "directory_table.XXXXXX").string();
        if (mkdtemp(pattern.data()) == nullptr) {
          throw std::system_error(errno, std::generic_category(), "mkdtemp");
        }
        dir = temp = pattern;
      }
      fs::create_directories(*dir);
      const int status = demo(*dir, signals);
      if (temp) {
        fs::remove_all(*temp);
      }
      if (status != EXIT_SUCCESS) {
        return status;
      }
    } else {
      fs::create_directories(*dir);
      Supervisor sup(std::make_shared<DirectoryTable>(*dir, 1000ms), make_options(2s));
      sup.run(signals.force(), [&] {
        say("directory_table: running the jobs in ", dir->string(), " until SIGINT or SIGTERM");
        wait_for_stop(signals.graceful());
      });
    }
  } catch (const std::exception& e) {
    say("directory_table: FAILED: ", e.what());
    return EXIT_FAILURE;
  }
  say("directory_table: done");
  return EXIT_SUCCESS;
}
