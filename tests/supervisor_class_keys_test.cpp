// Keys whose copies throw, at each point of a start in turn: whichever copy fails, the failure
// reaches the caller or the error hook, the key is left free (never stuck "reserved"), and no
// thread of the library lets the exception escape (which would end the test program).

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "catch_shim.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::Probe;
using test::Startup;

namespace {

/// Counts down copies; the copy that takes it from 0 throws. Negative: copies never throw.
std::atomic<int> g_copies_left{-1};

struct FlakyKey {
  std::string name;

  explicit FlakyKey(std::string n) : name(std::move(n)) {}
  FlakyKey(const FlakyKey& other) : name(other.name) {
    if (g_copies_left.load() >= 0 && g_copies_left.fetch_sub(1) == 0) {
      throw std::runtime_error("key copy failed");
    }
  }
  FlakyKey(FlakyKey&&) noexcept = default;
  FlakyKey& operator=(const FlakyKey&) = default;
  FlakyKey& operator=(FlakyKey&&) noexcept = default;
  ~FlakyKey() = default;
  bool operator==(const FlakyKey& other) const { return name == other.name; }
};

struct FlakyHash {
  std::size_t operator()(const FlakyKey& key) const { return std::hash<std::string>{}(key.name); }
};

using Table = supervisor::MapTable<FlakyKey, Probe, FlakyHash>;
using Sup = supervisor::Supervisor<FlakyKey, Probe, FlakyHash>;

/// A supervisor on a manual clock whose error hook only counts (it copies no key).
struct Rig {
  std::shared_ptr<supervisor::ManualClock> clock = std::make_shared<supervisor::ManualClock>();
  std::shared_ptr<Table> table = std::make_shared<Table>();
  std::shared_ptr<std::atomic<int>> reports = std::make_shared<std::atomic<int>>(0);
  std::unique_ptr<Sup> sup;

  Rig() {
    supervisor::Options<FlakyKey> options;
    options.clock = clock;
    options.on_error = [count = reports](const supervisor::ErrorReport<FlakyKey>&) { ++*count; };
    sup = std::make_unique<Sup>(table, std::move(options));
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;
  ~Rig() { g_copies_left = -1; }

  /// Lets the restart loop run one pass, and waits until it has armed its next wait.
  void pass() {
    REQUIRE(clock->wait_for_sleepers(1));
    const auto arms = clock->arms();
    clock->advance(1min);
    REQUIRE(clock->wait_for_arms(arms + 1));
  }
};

}  // namespace

TEST_CASE("a key copy that throws anywhere in start leaves the key free", "[supervisor]") {
  Rig rig;
  const FlakyKey key("k");
  int failed_starts = 0;
  bool clean_start = false;
  bool stuck = false;
  rig.sup->run([&] {
    rig.table->insert_or_assign(key, Probe::with(Startup::ready));
    // Throw at the first copy of the key, then at the second, ... until a whole start makes
    // fewer copies than the countdown allows.
    for (int at = 0; at < 64 && !clean_start && !stuck; ++at) {
      g_copies_left = at;
      try {
        (void)rig.sup->start(key);
        clean_start = true;
      } catch (const std::system_error&) {
        stuck = true;  // process_exists: a previous failure left the key taken
      } catch (const std::runtime_error&) {
        ++failed_starts;
      }
      g_copies_left = -1;
      std::error_code ec;
      rig.sup->stop(key, ec);
      // The key is free again: a plain start works.
      (void)rig.sup->start(key, ec);
      stuck = stuck || static_cast<bool>(ec);
      rig.sup->stop(key, ec);
    }
  });
  CHECK_FALSE(stuck);
  CHECK(failed_starts > 1);  // Several copy points were hit...
  CHECK(clean_start);        // ...and then the countdown outlasted a whole start.
}

TEST_CASE(
    "a key copy that throws anywhere in a restart pass is reported, and a later pass "
    "starts the key",
    "[supervisor]") {
  Rig rig;
  const FlakyKey key("k");
  auto probe = Probe::with(Startup::ready);
  int failed_passes = 0;
  bool clean_pass = false;
  bool unreported = false;
  rig.sup->run([&] {
    rig.table->insert_or_assign(key, probe);  // After the initial pass: the passes below start it.
    for (int at = 0; at < 64 && !clean_pass && !unreported; ++at) {
      const int readied = probe.state->readied.count();
      const int reported = rig.reports->load();
      g_copies_left = at;
      rig.pass();
      const bool threw = g_copies_left.load() < 0;
      g_copies_left = -1;
      if (!threw) {
        clean_pass = true;
        REQUIRE(probe.state->readied.wait(readied + 1));
      } else {
        ++failed_passes;
        // A start that failed has reported it by the time the pass is over.
        unreported = rig.reports->load() == reported;
        // Not stuck: the next pass, with copies that work, starts it.
        rig.pass();
        REQUIRE(probe.state->readied.wait(readied + 1));
      }
      std::error_code ec;
      rig.sup->stop(key, ec);
      REQUIRE_FALSE(ec);
    }
  });
  CHECK_FALSE(unreported);
  CHECK(failed_passes > 1);
  CHECK(clean_pass);
}
