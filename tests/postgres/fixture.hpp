#pragma once

// What the test cases of supervisor_postgres_tests share: the server that main (lease_test.cpp)
// starts before any test case runs, and the directory where the instances write status files.

#include <optional>
#include <string>

#include "pg_server.hpp"

namespace pgtest {

inline std::optional<PgServer> server;  // NOLINT: one per test binary, started by main
inline std::string status_dir;          // NOLINT

}  // namespace pgtest
