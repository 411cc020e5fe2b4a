#pragma once

// What the tests of Process<R> (process_*_test.cpp) share: the process of a `Probe`, the names
// they use unqualified, and a check that the runnable's own exception comes back intact.

#include <chrono>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "catch_shim.hpp"
#include "support.hpp"

namespace test {

using ProbeProcess = supervisor::Process<Probe>;

/// The message of the `std::runtime_error` that `f` throws, "" if none. A `std::system_error`
/// (one of our codes) does not count: the runnable's own exception must come back intact.
template <class F>
std::string runtime_error_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const std::system_error& e) {
    return std::string("system_error: ") + e.what();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace test

// Test files only: every process_*_test.cpp uses these names, so they are brought in here once.
using namespace std::chrono_literals;
using supervisor::errc;
using supervisor::ProcessState;
using test::Background;
using test::code_of;
using test::Probe;
using test::ProbeProcess;
using test::runtime_error_of;
using test::Shutdown;
using test::Startup;
