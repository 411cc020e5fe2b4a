// Supervisor over a table that throws: from get, iterate, a cursor's next, get or close. Each
// failure reaches the caller or the error hook, and nothing else stops.

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "catch_shim.hpp"
#include "supervisor_class_harness.hpp"
#include "support.hpp"

using supervisor::errc;
using supervisor::ErrorSource;
using test::Probe;
using test::Startup;
using Sup = test::ProbeSupervisor;

namespace {

/// A table whose every operation can be told to throw.
struct FaultyTable {
  struct Faults {
    bool get = false;
    bool iterate = false;
    int next_throws_at = -1;  // the row index whose next() throws
    int bad_row = -1;         // the row index whose get() throws
    bool close = false;
    bool size = false;  // the cursor's size hint throws
    std::atomic<int> closes{0};
    std::atomic<int> sizes{0};
  };
  std::shared_ptr<Faults> faults = std::make_shared<Faults>();
  std::vector<std::pair<std::string, Probe>> rows;

  struct Cursor {
    std::shared_ptr<Faults> faults;
    std::vector<std::pair<std::string, Probe>> rows;
    int at = -1;
    bool next() {
      ++at;
      if (at == faults->next_throws_at) {
        throw std::runtime_error("cursor broke");
      }
      return at < static_cast<int>(rows.size());
    }
    std::pair<std::string, Probe> get() {
      if (at == faults->bad_row) {
        throw std::runtime_error("bad row");
      }
      return rows[static_cast<std::size_t>(at)];
    }
    std::size_t size() {  // the optional hint
      ++faults->sizes;
      if (faults->size) {
        throw std::runtime_error("size failed");
      }
      return rows.size();
    }
    void close() {
      ++faults->closes;
      if (faults->close) {
        throw std::runtime_error("close failed");
      }
    }
  };

  std::optional<Probe> get(const std::string& key) {
    if (faults->get) {
      throw std::runtime_error("get failed");
    }
    for (auto& [k, p] : rows) {
      if (k == key) {
        return p;
      }
    }
    return std::nullopt;
  }
  Cursor iterate() {
    if (faults->iterate) {
      throw std::runtime_error("iterate failed");
    }
    return Cursor{faults, rows, -1};
  }
};

}  // namespace

TEST_CASE("a table that throws is reported, and nothing else stops", "[supervisor]") {
  auto clock = std::make_shared<supervisor::ManualClock>();
  test::Reports<std::string> reports;
  FaultyTable table;
  std::vector<Probe> probes(3, Probe{});
  for (int i = 0; i < 3; ++i) {
    probes[static_cast<std::size_t>(i)] = Probe::with(Startup::ready);
    table.rows.emplace_back("k" + std::to_string(i), probes[static_cast<std::size_t>(i)]);
  }
  auto faults = table.faults;
  supervisor::Options<std::string> options;
  options.clock = clock;
  options.on_error = reports.hook();
  Sup sup(table, options);

  std::vector<std::string> keys_seen;
  std::error_code start_code;
  std::string get_failure;

  SECTION("get throws: start rethrows intact and frees the key") {
    faults->get = true;
    sup.run([&] {
      try {
        (void)sup.start("other");
      } catch (const std::runtime_error& e) {
        get_failure = e.what();
      }
      faults->get = false;
      (void)sup.start("other", start_code);
    });
    CHECK(get_failure == "get failed");
    CHECK(start_code == errc::not_in_table);  // Freed: the second start reached the table.
    CHECK(reports.entries().empty());
  }
  SECTION("the cursor's size hint is asked once a pass; when it throws, nothing is lost") {
    faults->size = true;
    sup.run([&] { keys_seen = sup.keys(); });
    std::sort(keys_seen.begin(), keys_seen.end());
    CHECK(keys_seen == std::vector<std::string>{"k0", "k1", "k2"});
    CHECK(reports.entries().empty());  // only a hint: not an error
    CHECK(faults->sizes == 1);
    CHECK(faults->closes == 1);
  }
  SECTION("past the pass's batches of rows: each row before a failing next starts, once") {
    // The pass reads rows a few at a time; twenty rows span batches, and the cursor breaks in
    // the middle of one: every row read before the break still starts, the bad one excepted.
    for (int i = 3; i < 20; ++i) {
      table.rows.emplace_back("k" + std::to_string(i), Probe::with(Startup::ready));
    }
    Sup many(table, options);
    faults->bad_row = 5;
    faults->next_throws_at = 13;
    many.run([&] { keys_seen = many.keys(); });
    std::sort(keys_seen.begin(), keys_seen.end());
    std::vector<std::string> expected;
    for (int i = 0; i < 13; ++i) {
      if (i != 5) {
        expected.push_back("k" + std::to_string(i));
      }
    }
    std::sort(expected.begin(), expected.end());
    CHECK(keys_seen == expected);
    CHECK(reports.count(ErrorSource::row) == 1);
    CHECK(reports.count(ErrorSource::iterate) == 1);
    CHECK(faults->closes == 1);
  }
  SECTION("iterate throws") {
    faults->iterate = true;
    sup.run([&] { keys_seen = sup.keys(); });
    CHECK(keys_seen.empty());
    CHECK(reports.count(ErrorSource::iterate) == 1);
    CHECK(faults->closes == 0);  // No cursor, nothing to close.
  }
  SECTION("next throws mid-way: earlier rows start, the cursor is closed") {
    faults->next_throws_at = 1;
    sup.run([&] { keys_seen = sup.keys(); });
    CHECK(keys_seen == std::vector<std::string>{"k0"});
    CHECK(reports.count(ErrorSource::iterate) == 1);
    CHECK(faults->closes == 1);
  }
  SECTION("one bad row is skipped") {
    faults->bad_row = 1;
    sup.run([&] { keys_seen = sup.keys(); });
    std::sort(keys_seen.begin(), keys_seen.end());
    CHECK(keys_seen == std::vector<std::string>{"k0", "k2"});
    REQUIRE(reports.count(ErrorSource::row) == 1);
    CHECK(reports.entries()[0].message == "bad row");
    CHECK_FALSE(reports.entries()[0].has_key);
    CHECK(faults->closes == 1);
  }
  SECTION("close throws") {
    faults->close = true;
    sup.run([&] { keys_seen = sup.keys(); });
    CHECK(keys_seen.size() == 3);
    CHECK(reports.count(ErrorSource::close) == 1);
  }
}

namespace {

/// A key whose hash throws while `fail` is set (a transient failure, like memory running out).
struct FlakyKey {
  int id = 0;
  bool operator==(const FlakyKey&) const = default;
};
std::atomic<bool> flaky_hash_fails{false};
struct FlakyHash {
  std::size_t operator()(const FlakyKey& key) const {
    if (flaky_hash_fails.load()) {
      throw std::runtime_error("hash failed");
    }
    return static_cast<std::size_t>(key.id);
  }
};

/// Ready at once; counts its return (a stop) when `ready()` lets it go.
struct Idle {
  std::shared_ptr<std::atomic<int>> stopped = std::make_shared<std::atomic<int>>(0);
  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) const {
    ready();
    stopped->fetch_add(1);
  }
};

}  // namespace

TEST_CASE("with prune, a pass whose hash of a running key throws prunes nothing", "[supervisor]") {
  auto clock = std::make_shared<supervisor::ManualClock>();
  test::Reports<FlakyKey> reports;
  auto table = std::make_shared<supervisor::MapTable<FlakyKey, Idle, FlakyHash>>();
  const Idle idle;
  table->insert_or_assign(FlakyKey{1}, idle);
  supervisor::Options<FlakyKey> options;
  options.clock = clock;
  options.prune = true;
  options.on_error = reports.hook();
  std::atomic<int> stop_requests{0};  // a prune's request is sent within its pass
  options.on_event = [&stop_requests](const supervisor::Event<FlakyKey>& event) {
    if (event.kind == supervisor::EventKind::stop_requested) {
      stop_requests.fetch_add(1);
    }
  };
  supervisor::Supervisor<FlakyKey, Idle, FlakyHash> sup(table, options);
  int stop_requests_after_pass = -1;
  int stopped_after_pass = -1;
  sup.run([&] {
    REQUIRE(clock->wait_for_sleepers(1));
    const auto arms = clock->arms();
    flaky_hash_fails = true;  // the pass cannot tell whether key 1 runs
    clock->advance(options.restart_interval);
    REQUIRE(clock->wait_for_arms(arms + 1));
    flaky_hash_fails = false;
    stop_requests_after_pass = stop_requests.load();
    stopped_after_pass = idle.stopped->load();
  });
  CHECK(stop_requests_after_pass == 0);  // a pruning pass would have asked it to stop
  CHECK(stopped_after_pass == 0);
  CHECK(idle.stopped->load() == 1);  // by the shutdown
  CHECK(reports.count(ErrorSource::start) == 1);
}
