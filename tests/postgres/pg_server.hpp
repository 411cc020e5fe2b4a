#pragma once

// A real PostgreSQL server for the tests, in a temporary directory: initdb + pg_ctl from Debian's
// postgresql package (/usr/lib/postgresql/<version>/bin, or $SUPERVISOR_PG_BIN), listening on a
// free port of 127.0.0.1 only, with fsync off. As root (CI), the server runs as `nobody`
// (PostgreSQL refuses to run as root) through setpriv. Stopped (immediate) and removed on
// destruction. `PgServer::start` throws `Unavailable` when no server can be started: the tests
// then exit with 77, which CTest reports as skipped.

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pgtest {

namespace fs = std::filesystem;

struct Unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs argv to completion, its output appended to `log`; returns its exit status (-1: no exec).
inline int run_command(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t child = fork();
  if (child < 0) {
    return -1;
  }
  if (child == 0) {
    std::vector<char*> args;
    for (const auto& arg : argv) {
      args.push_back(const_cast<char*>(arg.c_str()));  // NOLINT: execv's signature
    }
    args.push_back(nullptr);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);  // NOLINT
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  // NOLINTNEXTLINE: the sockets API takes sockaddr*
  auto* raw = reinterpret_cast<sockaddr*>(&address);
  if (fd < 0 || bind(fd, raw, length) != 0 || getsockname(fd, raw, &length) != 0) {
    if (fd >= 0) {
      close(fd);
    }
    throw Unavailable("no free port on 127.0.0.1");
  }
  close(fd);
  return ntohs(address.sin_port);
}

inline fs::path find_bin() {
  if (const char* bin = std::getenv("SUPERVISOR_PG_BIN")) {
    return bin;
  }
  for (const char* version : {"15", "16", "17", "14", "13"}) {
    const fs::path bin = fs::path("/usr/lib/postgresql") / version / "bin";
    if (fs::exists(bin / "initdb") && fs::exists(bin / "pg_ctl")) {
      return bin;
    }
  }
  throw Unavailable("no initdb/pg_ctl in /usr/lib/postgresql/*/bin (apt-get install postgresql)");
}

class PgServer {
 public:
  static PgServer start() { return PgServer(); }

  PgServer(PgServer&& other) noexcept
      : bin_(std::move(other.bin_)), dir_(std::exchange(other.dir_, {})), port_(other.port_) {}
  PgServer& operator=(PgServer&&) = delete;
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  ~PgServer() {
    if (dir_.empty()) {
      return;
    }
    (void)pg_ctl({"stop", "-m", "immediate", "-w"});
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  [[nodiscard]] std::string conninfo(const std::string& db = "postgres") const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=" + db;
  }
  [[nodiscard]] int port() const { return port_; }

  // Stops the server (fast: clients are disconnected) and starts it again on the same port.
  void restart() {
    stop();
    start_again();
  }
  void stop() {
    if (pg_ctl({"stop", "-m", "fast", "-w"}) != 0) {
      throw std::runtime_error("pg_ctl stop failed:\n" + log());
    }
  }
  void start_again() {
    if (!start_server()) {
      throw std::runtime_error("pg_ctl start failed:\n" + log());
    }
  }

  [[nodiscard]] std::string log() const {
    std::ifstream in(dir_ / "commands.log");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  PgServer() : bin_(find_bin()) {
    std::string pattern = (fs::temp_directory_path() / "supervisor-pg-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      throw Unavailable("mkdtemp failed");
    }
    dir_ = pattern;
    if (geteuid() == 0 && chown(dir_.c_str(), 65534, 65534) != 0) {  // nobody:nogroup
      throw Unavailable("cannot hand " + dir_.string() + " to nobody");
    }
    port_ = free_port();
    if (run(bin_ / "initdb", {"-D", data(), "-U", "postgres", "-A", "trust", "--no-sync", "-E",
                              "UTF8", "--no-instructions"}) != 0) {
      throw Unavailable("initdb failed:\n" + log());
    }
    if (!start_server()) {
      throw Unavailable("pg_ctl start failed:\n" + log());
    }
  }

  [[nodiscard]] std::string data() const { return (dir_ / "data").string(); }

  bool start_server() {
    const std::string options = "-p " + std::to_string(port_) + " -k " + dir_.string() +
                                " -c listen_addresses=127.0.0.1 -c fsync=off"
                                " -c synchronous_commit=off -c full_page_writes=off"
                                " -c max_connections=200";
    return pg_ctl({"start", "-w", "-t", "60", "-l", (dir_ / "server.log").string(), "-o",
                   options}) == 0;
  }

  int pg_ctl(std::vector<std::string> args) const {
    args.insert(args.begin(), {"-D", data()});
    return run(bin_ / "pg_ctl", args);
  }

  // As `nobody` when we are root.
  int run(const fs::path& program, const std::vector<std::string>& args) const {
    std::vector<std::string> argv;
    if (geteuid() == 0) {
      argv = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"};
    }
    argv.push_back(program.string());
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, (dir_ / "commands.log").string());
  }

  fs::path bin_;
  fs::path dir_;
  int port_ = 0;
};

}  // namespace pgtest
