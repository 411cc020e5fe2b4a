#include "catch_shim.hpp"  // first: it picks the Catch2 v2 or v3 header
#include "support.hpp"

// Standard headers after the test support.
#include <array>
#include <set>
#include <string>
#include <system_error>
#include <type_traits>

// supervisor::errc and its error category.

using supervisor::errc;

namespace {

constexpr std::array kAll = {
    errc::not_running,    errc::process_not_found, errc::process_not_running,
    errc::process_exists, errc::invalid_state,     errc::exited_before_ready,
    errc::canceled,       errc::deadline_exceeded, errc::not_in_table,
};

}  // namespace

static_assert(std::is_error_code_enum_v<errc>);
static_assert(!std::is_error_condition_enum_v<errc>);
static_assert(std::is_convertible_v<errc, std::error_code>);

TEST_CASE("Errors: the category is named \"supervisor\" and unique", "[errors]") {
  CHECK(std::string(supervisor::error_category().name()) == "supervisor");
  CHECK(&supervisor::error_category() == &supervisor::error_category());
  CHECK(&supervisor::make_error_code(errc::canceled).category() == &supervisor::error_category());
  CHECK(supervisor::error_category() != std::generic_category());
}

TEST_CASE("Errors: every errc value has its own message", "[errors]") {
  const std::string unknown = supervisor::error_category().message(0);
  CHECK(unknown == "unknown supervisor error");
  CHECK(supervisor::error_category().message(1000) == unknown);

  std::set<std::string> messages;
  for (const errc value : kAll) {
    const std::string message = supervisor::make_error_code(value).message();
    INFO("errc value " << static_cast<int>(value) << ": \"" << message << '"');
    CHECK_FALSE(message.empty());
    CHECK(message != unknown);
    CHECK(message == supervisor::error_category().message(static_cast<int>(value)));
    messages.insert(message);
  }
  CHECK(messages.size() == kAll.size());
}

TEST_CASE("Errors: make_error_code and comparisons", "[errors]") {
  // Values start at 1: a default error_code is success and never equals one of ours.
  CHECK(static_cast<int>(errc::not_running) == 1);
  CHECK_FALSE(std::error_code{});

  for (const errc value : kAll) {
    const std::error_code ec = supervisor::make_error_code(value);
    INFO("errc value " << static_cast<int>(value));
    CHECK(ec);
    CHECK(ec.value() == static_cast<int>(value));
    CHECK(ec == value);
    CHECK(ec != std::error_code{});
    // Same number, another category: different.
    CHECK(std::error_code(static_cast<int>(value), std::generic_category()) != value);
  }

  const std::error_code implicit = errc::canceled;  // through is_error_code_enum
  CHECK(implicit == errc::canceled);
  CHECK(implicit != errc::deadline_exceeded);
  CHECK(implicit.category().name() == supervisor::error_category().name());
}

TEST_CASE("Errors: std::system_error carries the code", "[errors]") {
  const std::system_error error(errc::invalid_state, "supervisor::Process::stop");
  CHECK(error.code() == errc::invalid_state);
  const std::string what = error.what();
  CHECK(what.find("supervisor::Process::stop") != std::string::npos);
  CHECK(what.find(supervisor::make_error_code(errc::invalid_state).message()) != std::string::npos);

  CHECK(test::code_of([] { throw std::system_error(errc::not_in_table); }) == errc::not_in_table);
  CHECK(test::code_of([] {}) == std::error_code{});
}
