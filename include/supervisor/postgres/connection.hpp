#pragma once

/// \file
/// `Connection`: one libpq connection, its results as RAII values (`Result`), and every failure as
/// a `postgres::Error`. The lease adapter and `fenced_write` use nothing else of libpq.
///
/// Thread-safety: a connection may be used by one thread at a time (libpq's own rule); distinct
/// connections are independent. Nothing here shares a connection behind the caller's back.

#include <libpq-fe.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace supervisor::postgres {

/// A failed connection, query or result: the server's or libpq's message, with what we were doing.
/// `connection_lost()` says whether the connection was found broken (it is then reconnected).
class Error : public std::runtime_error {
 public:
  Error(const std::string& what, bool connection_lost)
      : std::runtime_error(what), connection_lost_(connection_lost) {}
  [[nodiscard]] bool connection_lost() const noexcept { return connection_lost_; }

 private:
  bool connection_lost_;
};

namespace detail {

struct ClearResult {
  void operator()(PGresult* result) const noexcept { PQclear(result); }
};
struct FinishConnection {
  void operator()(PGconn* connection) const noexcept { PQfinish(connection); }
};

}  // namespace detail

/// A query's result: rows of text values (libpq's text format).
class Result {
 public:
  explicit Result(PGresult* result) : result_(result) {}
  [[nodiscard]] int rows() const { return PQntuples(result_.get()); }
  [[nodiscard]] std::string text(int row, int column) const {
    return {PQgetvalue(result_.get(), row, column),
            static_cast<std::size_t>(PQgetlength(result_.get(), row, column))};
  }
  [[nodiscard]] std::int64_t integer(int row, int column) const {
    return std::stoll(text(row, column));
  }
  [[nodiscard]] bool is_null(int row, int column) const {
    return PQgetisnull(result_.get(), row, column) != 0;
  }
  /// What the server said; a null result (no memory, lost connection) is a fatal error.
  [[nodiscard]] ExecStatusType status() const {
    return result_ ? PQresultStatus(result_.get()) : PGRES_FATAL_ERROR;
  }
  /// The number of rows an INSERT, UPDATE or DELETE touched.
  [[nodiscard]] std::int64_t affected() const {
    const char* count = PQcmdTuples(result_.get());
    return count[0] == '\0' ? 0 : std::stoll(count);
  }

 private:
  std::unique_ptr<PGresult, detail::ClearResult> result_;
};

/// One connection. Connecting sets a statement timeout and an idle-in-transaction timeout (both
/// `timeout_ms`), so that neither a hung server nor a paused client (SIGSTOP in the middle of a
/// fenced write) can hold a lease row's lock for longer than that.
class Connection {
 public:
  /// Connects; throws `Error` if it cannot. Blocks for at most about `timeout_ms` (rounded up to
  /// whole seconds, libpq's unit for connect_timeout).
  explicit Connection(const std::string& conninfo, int timeout_ms = 5000) {
    const std::string options =
        "-c statement_timeout=" + std::to_string(timeout_ms) +
        " -c idle_in_transaction_session_timeout=" + std::to_string(timeout_ms);
    const std::string connect_timeout = std::to_string(std::max(2, (timeout_ms + 999) / 1000));
    // expand_dbname = 1: `dbname` may be a whole conninfo string or URI; the later keywords
    // override what it says about them.
    const char* const keywords[] = {"dbname", "options", "connect_timeout", nullptr};
    const char* const values[] = {conninfo.c_str(), options.c_str(), connect_timeout.c_str(),
                                  nullptr};
    connection_.reset(PQconnectdbParams(keywords, values, 1));
    if (!connection_) {
      throw Error("postgres: out of memory while connecting", true);
    }
    if (PQstatus(connection_.get()) != CONNECTION_OK) {
      throw Error(std::string("postgres: cannot connect: ") + PQerrorMessage(connection_.get()),
                  true);
    }
    // The server's notices (NOTICE: relation ... already exists, skipping) are not errors, and
    // libpq would print them to stderr: drop them.
    PQsetNoticeProcessor(
        connection_.get(), [](void*, const char*) {}, nullptr);
  }

  /// Runs one statement with text parameters (`$1`, `$2`...); throws `Error` unless it succeeds.
  /// Blocks until the server answers (at most the statement timeout, unless the network hangs).
  Result exec(const std::string& sql, const std::vector<std::string>& parameters = {}) {
    std::vector<const char*> values;
    values.reserve(parameters.size());
    for (const auto& parameter : parameters) {
      values.push_back(parameter.c_str());
    }
    Result result(PQexecParams(connection_.get(), sql.c_str(), static_cast<int>(values.size()),
                               nullptr, values.data(), nullptr, nullptr, 0));
    check(result, sql);
    return result;
  }

  /// Whether libpq still believes the connection works (it notices a loss on the next query).
  [[nodiscard]] bool ok() const { return PQstatus(connection_.get()) == CONNECTION_OK; }
  [[nodiscard]] PGconn* native() const noexcept { return connection_.get(); }

 private:
  void check(const Result& result, const std::string& sql) {
    const ExecStatusType status = result.status();  // PGRES_FATAL_ERROR for a null result
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      return;
    }
    throw Error("postgres: " + first_line(sql) + ": " + PQerrorMessage(connection_.get()), !ok());
  }

  static std::string first_line(const std::string& sql) {
    return sql.substr(0, std::min(sql.find('\n'), std::size_t{60}));
  }

  std::unique_ptr<PGconn, detail::FinishConnection> connection_;
};

}  // namespace supervisor::postgres
